"""The Python API for one flow: load it once, call it like a function, test single nodes."""

from __future__ import annotations

import os
import time
from collections.abc import Mapping
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from ._aio import run_sync
from .engine import (
    COMPLETED,
    AggregationResult,
    BoundFlow,
    LineResult,
    bind,
    execute_aggregation,
    execute_line,
    working_directory,
)
from .engine._execute import Schedule, _failure, _Graph, _NodeFailed, resolve_path
from .errors import ExecutionError, InputError, Location, NodeExecutionError, PfkitError, UserError
from .graph import plan
from .spec import FlowInputRef, FlowSpec, Literal, NodeRef, NodeSpec, load_flow_spec
from .spec._includes import with_includes


@dataclass(slots=True)
class TestResult:
    line: LineResult
    aggregation: AggregationResult | None

    @property
    def outputs(self) -> dict[str, Any]:
        return self.line.outputs

    @property
    def metrics(self) -> dict[str, Any]:
        return self.aggregation.metrics if self.aggregation else {}


@contextmanager
def flow_environment(flow: BoundFlow):
    """The flow's environment_variables set for the duration, then restored."""
    saved = {k: os.environ.get(k) for k in flow.environment}
    os.environ.update(flow.environment)
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


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
        from .providers._registry import ModelRegistry

        registry = ModelRegistry()
        models = registry if models is None else models
        connections = registry.connection if connections is None else connections
    return bind(plan(spec, variant), models=models, connections=connections)


async def atest(flow: BoundFlow, inputs: Mapping[str, Any], *,
                timeout: float | None = None) -> TestResult:
    """One line, then the aggregation nodes over it (as ``pf flow test`` does)."""
    with working_directory(flow.working_dir), flow_environment(flow):
        line = await execute_line(flow, dict(inputs), line_number=0, timeout=timeout)
        aggregation = None
        if flow.aggregation_nodes and line.status == COMPLETED:
            aggregation = await execute_aggregation(flow, [line])
    return TestResult(line, aggregation)


async def atest_node(flow: BoundFlow, node_name: str, inputs: Mapping[str, Any]) -> LineResult:
    """Run one node alone (its ``activate`` is not applied). Its references are taken from
    ``inputs``: ``${inputs.x}`` from key ``x``, ``${dep.output...}`` from key ``dep.output`` (or
    ``dep``); an input named like one of the node's own inputs is used as it is."""
    bound = next((n for n in flow.nodes if n.name == node_name), None)
    if bound is None:
        raise UserError(f"node '{node_name}' is not in the flow", code="NodeNotFound",
                        location=Location(file=flow.spec.file),
                        hint=f"Nodes: {[n.name for n in flow.nodes]}.")
    given = dict(inputs)
    missing: list[str] = []

    def value_of(ref: Any) -> Any:
        if isinstance(ref, FlowInputRef):
            if ref.name in given:
                return given[ref.name]
            definition = flow.spec.inputs[ref.name]
            if definition.has_default:
                return definition.default
            missing.append(ref.name)
            return None
        if isinstance(ref, NodeRef):
            for key in (f"{ref.node}.output", ref.node):
                if key in given:
                    return resolve_path(given[key], ref)
            missing.append(f"{ref.node}.output")
            return None
        return ref.value

    direct = {k: v for k, v in given.items() if k in bound.spec.inputs}
    alone = replace(bound, literal_kwargs={**bound.literal_kwargs, **direct},
                    ref_inputs=tuple((k, r) for k, r in bound.ref_inputs if k not in direct),
                    deps=frozenset(), input_deps=frozenset(), activate=None)
    runs: dict[str, Any] = {}
    outputs: dict[str, Any] = {}
    graph = _Graph(Schedule.of((alone,)), value_of, runs, outputs)
    graph._kwargs(alone)  # find what is missing before running anything
    if missing:
        names = sorted(set(missing))
        raise InputError(f"node '{node_name}' needs {names}, which were not given",
                         code="InputNotFound", location=Location(node=node_name),
                         hint="Pass them with --inputs, e.g. --inputs "
                              + " ".join(f"{m}=..." for m in names))
    start = time.time()
    with working_directory(flow.working_dir), flow_environment(flow):
        try:
            await graph.run()
        except _NodeFailed as failed:
            error, exc = _failure(failed.node, failed.cause)
            return LineResult(0, "Failed", given, {}, runs, error, start, time.time(), exc)
    return LineResult(0, COMPLETED, given, {node_name: outputs.get(node_name)}, runs, None, start,
                      time.time())


class Flow:
    """A loaded flow, callable like a function: ``Flow("flows/x")(text="hi")`` -> outputs.

    Loading imports the tools and compiles templates once; each call runs one line. A failing
    line raises :class:`~pfkit.errors.ExecutionError` with promptflow's message."""

    def __init__(self, path: str | Path, *, variant: str | None = None, models: Any = None,
                 connections: Any = None) -> None:
        self.bound = load_bound_flow(path, variant=variant, models=models,
                                     connections=connections)

    @property
    def spec(self):
        return self.bound.spec

    def test(self, inputs: Mapping[str, Any] | None = None, **kwargs: Any) -> TestResult:
        return run_sync(atest(self.bound, {**(inputs or {}), **kwargs}))

    def __call__(self, **inputs: Any) -> dict[str, Any]:
        result = self.test(inputs)
        if result.line.status != COMPLETED:
            exc = result.line.exception
            if isinstance(exc, PfkitError) and not isinstance(exc, NodeExecutionError):
                raise exc
            raise ExecutionError(result.line.error["message"] if result.line.error else "failed",
                                 code=(result.line.error or {}).get("code")) from exc
        return result.outputs


def load_flow(path: str | Path, **kwargs: Any) -> Flow:
    """Load a DAG flow folder (or its YAML file). See :class:`Flow`."""
    return Flow(path, **kwargs)
