"""Executing flows: bind once, then run lines and aggregations."""

from ._bind import BoundFlow, BoundNode, bind, working_directory
from ._execute import (
    DEFAULT_LINE_TIMEOUT,
    AggregationInputs,
    execute_aggregation,
    execute_line,
    resolve_inputs,
)
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
    "AggregationInputs", "BYPASSED", "CANCELED", "COMPLETED", "DEFAULT_LINE_TIMEOUT", "FAILED", "AggregationResult",
    "BoundFlow", "BoundNode", "LineResult", "NodeRun", "bind", "execute_aggregation",
    "execute_line", "resolve_inputs", "working_directory",
]
