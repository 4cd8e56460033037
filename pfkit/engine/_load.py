"""Loading a DAG flow: parse, apply connection overrides, plan, bind."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

from ..errors import Location, UserError
from ..graph import plan
from ..spec import FlowSpec, Literal, NodeSpec, load_flow_spec
from ..spec._includes import with_includes
from ._bind import BoundFlow, bind

OVERRIDABLE = ("connection", "deployment_name", "model")


def apply_connection_overrides(spec: FlowSpec, overrides: Mapping[str, str]) -> FlowSpec:
    """``{"node.connection": "c", "node.deployment_name": "d", "node.model": "m"}`` applied to
    the node (and to each of its variants)."""
    if not overrides:
        return spec
    by_node: dict[str, dict[str, str]] = {}
    for key, value in overrides.items():
        node, _, field = key.rpartition(".")
        if not node or field not in OVERRIDABLE:
            raise UserError(f"cannot override {key!r}", code="InvalidConnectionOverride",
                            hint="Use node.connection=NAME, node.deployment_name=X or node.model=Y.")
        if spec.node(node) is None:
            raise UserError(f"--connections names node '{node}', which is not in the flow",
                            code="InvalidConnectionOverride", location=Location(file=spec.file),
                            hint=f"Nodes: {[n.name for n in spec.nodes]}.")
        by_node.setdefault(node, {})[field] = value

    def patch(node: NodeSpec) -> NodeSpec:
        fields = by_node.get(node.name)
        if not fields or node.use_variants:
            return node
        inputs = dict(node.inputs)
        for field in ("deployment_name", "model"):
            if field in fields:
                inputs[field] = Literal(fields[field])
        if "connection" in fields and "connection" in inputs:  # package and python tools
            inputs["connection"] = Literal(fields["connection"])
        return replace(node, connection=fields.get("connection", node.connection), inputs=inputs)

    variants = {
        name: replace(nv, variants={vid: patch(v) for vid, v in nv.variants.items()})
        for name, nv in spec.node_variants.items()
    }
    return replace(spec, nodes=tuple(patch(n) for n in spec.nodes), node_variants=variants)


def load_bound_flow(path: str | Path, *, variant: str | None = None, models: Any = None,
                    connections: Any = None,
                    connection_overrides: Mapping[str, str] | None = None) -> BoundFlow:
    """Load, plan and bind a flow. Without ``models``, llm nodes get their models from the
    connection store (``$PFKIT_HOME/connections``), one instance per connection."""
    spec = with_includes(load_flow_spec(path))
    spec = apply_connection_overrides(spec, connection_overrides or {})
    if models is None or connections is None:
        from ..providers._registry import ModelRegistry

        registry = ModelRegistry()
        models = registry if models is None else models
        connections = registry.connection if connections is None else connections
    return bind(plan(spec, variant), models=models, connections=connections)


__all__ = ["OVERRIDABLE", "apply_connection_overrides", "load_bound_flow"]
