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
    OutsidePath,
    SourceSpec,
)
from ._outside import (
    OutsideFlowFolderWarning,
    describe_outside_paths,
    refuse_outside_paths,
    warn_outside_paths,
)
from ._references import FlowInputRef, Literal, NodeRef, Reference, parse_value
from ._types import coerce_flow_input, parse_value_type

__all__ = [
    "MISSING", "ActivateSpec", "FlowInputRef", "FlowSpec", "InputDef", "Literal", "NodeRef",
    "NodeSpec", "NodeVariants", "OutputDef", "OutsideFlowFolderWarning", "OutsidePath",
    "Reference", "SourceSpec", "coerce_flow_input", "describe_outside_paths", "load_flow_spec",
    "parse_value", "parse_value_type", "refuse_outside_paths", "resolve_flow_file",
    "warn_outside_paths",
]
