"""Planning a flow: variants, reference checks, topological order, Mermaid rendering."""

from ._mermaid import to_mermaid
from ._plan import FlowGraph, VariantChoice, parse_variant, plan, variant_combinations

__all__ = [
    "FlowGraph", "VariantChoice", "parse_variant", "plan", "to_mermaid", "variant_combinations",
]
