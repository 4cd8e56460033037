"""The Python API for one flow: load it once, call it like a function, test single nodes."""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from ..engine import (
    COMPLETED,
    GATE,
    AggregationResult,
    BoundFlow,
    DagFlow,
    LineResult,
    execute_aggregation,
    execute_line,
)
from ..engine._execute import Schedule, _failure, _Graph, _NodeFailed, resolve_path
from ..errors import ExecutionError, InputError, Location, NodeExecutionError, PfkitError, UserError
from ..observe import Observers
from ..spec import FlowInputRef, NodeRef, coerce_flow_input


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


async def atest(flow: BoundFlow | DagFlow, inputs: Mapping[str, Any], *,
                timeout: float | None = None, observers: Observers | None = None) -> TestResult:
    """One line, then the aggregation nodes over it (as ``pf flow test`` does)."""
    flow = flow.bound if isinstance(flow, DagFlow) else flow
    GATE.begin_call()
    try:
        line = await execute_line(flow, dict(inputs), line_number=0, timeout=timeout,
                                  observers=observers)
        aggregation = None
        if flow.aggregation_nodes and line.status == COMPLETED:
            aggregation = await execute_aggregation(flow, [line], observers=observers)
    finally:
        GATE.end_call()
    return TestResult(line, aggregation)


async def atest_node(flow: BoundFlow | DagFlow, node_name: str, inputs: Mapping[str, Any],
                     *, warn: Any = None) -> LineResult:
    """Run one node alone (its ``activate`` is not applied). Its references are taken from
    ``inputs``: ``${inputs.x}`` from key ``x`` (converted to the flow input's type),
    ``${dep.output...}`` from key ``dep.output`` (or ``dep``; text holding a JSON object or list
    is parsed, as the command line gives text); an input named like one of the node's own inputs
    is used as it is. ``warn(message)`` is told about inputs the node does not use."""
    flow = flow.bound if isinstance(flow, DagFlow) else flow
    bound = next((n for n in flow.nodes if n.name == node_name), None)
    if bound is None:
        raise UserError(f"node '{node_name}' is not in the flow", code="NodeNotFound",
                        location=Location(file=flow.spec.file),
                        hint=f"Nodes: {[n.name for n in flow.nodes]}.")
    given = dict(inputs)
    missing: list[str] = []
    used: set[str] = set()

    def value_of(ref: Any) -> Any:
        if isinstance(ref, FlowInputRef):
            definition = flow.spec.inputs[ref.name]
            if ref.name in given:
                used.add(ref.name)
                return coerce_flow_input(ref.name, definition.type, given[ref.name])
            if definition.has_default:
                return definition.default
            missing.append(ref.name)
            return None
        if isinstance(ref, NodeRef):
            for key in (f"{ref.node}.output", ref.node):
                if key in given:
                    used.add(key)
                    value = _json_text(given[key])
                    try:
                        return resolve_path(value, ref)
                    except PfkitError as exc:
                        raise InputError(f"--inputs {key}: {exc.message}", code=exc.code,
                                         location=Location(node=node_name),
                                         hint=f"Give {key} the value {ref.node} returns, as JSON "
                                              "when it is an object or a list.") from None
            missing.append(f"{ref.node}.output")
            return None
        return ref.value

    refs = dict(bound.ref_inputs)
    direct: dict[str, Any] = {}
    for key, value in given.items():
        if key not in bound.spec.inputs:
            continue
        used.add(key)
        ref = refs.get(key)
        if isinstance(ref, FlowInputRef) and ref.name in flow.spec.inputs:
            direct[key] = coerce_flow_input(key, flow.spec.inputs[ref.name].type, value)
        elif isinstance(ref, NodeRef):
            direct[key] = _json_text(value)
        else:
            direct[key] = value
    alone = replace(bound, literal_kwargs={**bound.literal_kwargs, **direct},
                    ref_inputs=tuple((k, r) for k, r in bound.ref_inputs if k not in direct),
                    deps=frozenset(), input_deps=frozenset(), activate=None)
    runs: dict[str, Any] = {}
    outputs: dict[str, Any] = {}
    graph = _Graph(Schedule.of((alone,)), value_of, runs, outputs, ctx=flow.context)
    try:
        graph._kwargs(alone)  # find what is missing before running anything
    except _NodeFailed as failed:
        if isinstance(failed.cause, PfkitError):
            raise failed.cause from None
        raise
    if missing:
        names = sorted(set(missing))
        raise InputError(f"node '{node_name}' needs {names}, which were not given",
                         code="InputNotFound", location=Location(node=node_name),
                         hint="Pass them with --inputs, e.g. --inputs "
                              + " ".join(f"{m}=..." for m in names))
    unused = sorted(set(given) - used)
    if unused and warn is not None:
        wanted = sorted({r.name if isinstance(r, FlowInputRef) else f"{r.node}.output"
                         for _, r in bound.ref_inputs} | set(bound.spec.inputs))
        warn(f"node '{node_name}' does not use {', '.join(unused)} (ignored); it takes: "
             f"{', '.join(wanted) or 'nothing'}")
    start = time.time()
    GATE.begin_call()
    try:
        await graph.run()
    except _NodeFailed as failed:
        error, exc = _failure(failed.node, failed.cause, flow.context)
        return LineResult(0, "Failed", given, {}, runs, error, start, time.time(), exc)
    finally:
        GATE.end_call()
    return LineResult(0, COMPLETED, given, {node_name: outputs.get(node_name)}, runs, None, start,
                      time.time())


def _json_text(value: Any) -> Any:
    """Text that holds a JSON object or list, parsed; anything else as it is."""
    if isinstance(value, str) and value.lstrip()[:1] in ("{", "["):
        import json

        try:
            return json.loads(value)
        except ValueError:
            return value
    return value


class Flow:
    """A loaded flow, callable like a function: ``Flow("flows/x")(text="hi")`` -> outputs.

    Loading imports the tools and compiles templates once; each call runs one line. A failing
    line raises :class:`~pfkit.errors.ExecutionError` with promptflow's message. Safe to call
    from many tasks and threads at once; ``await flow.arun(**inputs)`` in async code.
    Models, cache and limits come from ``session`` (default: ``pfkit.Session.default()``)."""

    def __init__(self, path: str | Path, *, variant: str | None = None, models: Any = None,
                 connections: Any = None, session: Any = None, cache: str | None = None,
                 cassette: str | Path | None = None,
                 connection_overrides: Mapping[str, str] | None = None,
                 init: Mapping[str, Any] | None = None) -> None:
        from ..session import Session

        self.session = session or Session.default()
        self.executable: DagFlow = self.session.load_executable(
            path, variant=variant, models=models, connections=connections, cache=cache,
            cassette=cassette, connection_overrides=connection_overrides,
            **({"init": init} if init else {}))
        self.bound = self.executable.bound
        self.load_options = {"variant": variant, "models": models, "cache": cache,
                             "cassette": cassette, "connections": connection_overrides}

    @property
    def spec(self):
        return self.bound.spec

    # notebook helpers, thin over pfkit.run / pfkit.evaluate / pfkit.compare (pfkit.authoring)
    def run(self, data: Any, **kwargs: Any) -> Any:
        """``pfkit.run`` of this flow over ``data`` (a file, or a list of input dicts)."""
        from ..authoring._methods import run_flow

        return run_flow(self, data, **kwargs)

    def evaluate(self, run: Any = None, **kwargs: Any) -> Any:
        """``pfkit.evaluate(run=..., evaluators={...})``; with ``data=`` and no run, runs first."""
        from ..authoring._methods import evaluate_flow

        return evaluate_flow(self, run, **kwargs)

    def compare(self, runs: Any = None, **kwargs: Any) -> Any:
        """``pfkit.compare(runs)``; with ``data=`` (and ``evaluators=``), runs every variant."""
        from ..authoring._methods import compare_flow

        return compare_flow(self, runs, **kwargs)

    def graph(self) -> Any:
        """The DAG, shown as SVG in Jupyter (``.svg``, ``.mermaid``)."""
        from ..authoring._svg import FlowGraphView

        return FlowGraphView(self.bound.graph)

    async def atest(self, inputs: Mapping[str, Any] | None = None, **kwargs: Any) -> TestResult:
        return await atest(self.bound, {**(inputs or {}), **kwargs},
                           observers=self.session.observers)

    def test(self, inputs: Mapping[str, Any] | None = None, **kwargs: Any) -> TestResult:
        """One line and the aggregation over it; the result has ``outputs``, ``metrics`` and
        the line record. Never raises for a node failure (see ``result.line.error``)."""
        return self.session.run_sync(self.atest(inputs, **kwargs))

    async def arun(self, **inputs: Any) -> dict[str, Any]:
        """``await flow.arun(x=1)`` -> the outputs; a failing line raises."""
        return _outputs_or_raise(await self.atest(inputs))

    def __call__(self, **inputs: Any) -> dict[str, Any]:
        return _outputs_or_raise(self.test(inputs))

    def __repr__(self) -> str:
        return f"Flow({str(self.executable.code_dir)!r})"


def _outputs_or_raise(result: TestResult) -> dict[str, Any]:
    if result.line.status != COMPLETED:
        exc = result.line.exception
        if isinstance(exc, PfkitError) and not isinstance(exc, NodeExecutionError):
            raise exc
        error = result.line.error or {}
        raise ExecutionError(error.get("message", "failed"), code=error.get("code"),
                             location=_location(error)) from exc
    return result.outputs


def _location(error: Mapping[str, Any]) -> Location | None:
    where = error.get("location")
    if not isinstance(where, dict):
        return None
    return Location(**{k: v for k, v in where.items() if k in Location.__slots__})


def load_flow(path: str | Path, **kwargs: Any) -> Flow:
    """Load a flow: a DAG or flex flow folder (or its YAML file), or a ``.prompty`` file
    (``init=`` gives a flex class entry its values). See :class:`Flow`."""
    return Flow(path, **kwargs)
