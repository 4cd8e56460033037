"""Flow files as data: ``flow.dag.yaml`` parsed once, every ``${...}`` a typed reference."""

from ._load import load_flow_spec, resolve_flow_file
from ._models import (
    MISSING,
    ActivateSpec,
    FlowSpec,
    InputDef,
    NodeSpec,
    NodeVariants,
    OutputDef,
    SourceSpec,
)
from ._references import FlowInputRef, Literal, NodeRef, Reference, parse_value
from ._types import coerce_flow_input, parse_value_type

__all__ = [
    "MISSING", "ActivateSpec", "FlowInputRef", "FlowSpec", "InputDef", "Literal", "NodeRef",
    "NodeSpec", "NodeVariants", "OutputDef", "Reference", "SourceSpec", "coerce_flow_input",
    "load_flow_spec", "parse_value", "parse_value_type", "resolve_flow_file",
]
