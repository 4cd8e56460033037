"""Executing flows: load and bind once, then run lines and aggregations.

Runs, evaluation, serving and notebooks use :class:`ExecutableFlow` (from
:func:`load_executable`); the rest is the machinery beneath it.
"""

from ._bind import (
    NODE_KINDS,
    BoundCall,
    BoundFlow,
    BoundNode,
    bind,
    register_node_kind,
    working_directory,
)
from ._executable import (
    DagFlow,
    ExecutableFlow,
    FlowLoader,
    flow_loaders,
    load_executable,
    register_flow_loader,
    resident,
)
from ._execute import (
    DEFAULT_LINE_TIMEOUT,
    AggregationInputs,
    execute_aggregation,
    execute_line,
    resolve_inputs,
)
from ._isolation import GATE, FlowContext
from ._load import apply_connection_overrides, load_bound_flow
from ._results import (
    BYPASSED,
    CANCELED,
    COMPLETED,
    FAILED,
    AggregationResult,
    LineResult,
    NodeRun,
)

__all__ = [
    "AggregationInputs", "BYPASSED", "BoundCall", "BoundFlow", "BoundNode", "CANCELED",
    "COMPLETED", "DEFAULT_LINE_TIMEOUT", "DagFlow", "ExecutableFlow", "FAILED", "FlowContext",
    "FlowLoader", "GATE", "AggregationResult", "LineResult", "NODE_KINDS", "NodeRun",
    "apply_connection_overrides", "bind", "execute_aggregation", "execute_line", "flow_loaders",
    "load_bound_flow", "load_executable", "register_flow_loader", "register_node_kind", "resident",
    "resolve_inputs", "working_directory",
]
