"""The async executor: one line of a flow, and the aggregation over many lines.

Scheduling follows promptflow (flow-format.md §2.2-2.4): bypassable nodes are settled first,
then every ready node starts; independent nodes run concurrently; the first node failure fails
the line and cancels what is still running.

Where pfkit differs, it is in cost. A ready sync tool that is alone in its round is called on the
loop (no thread hop); several ready sync tools run in worker threads so they overlap; a sync tool
whose call once took longer than ``BLOCKING_THRESHOLD`` moves to threads for good, so slow or
I/O-bound tools never hold the loop again. Async tools are awaited on the loop.
"""

from __future__ import annotations

import asyncio
import contextvars
import heapq
import time
import types
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from ..errors import InputError, LineTimeoutError, Location, NodeExecutionError, PfkitError
from ..nodes._tool import metric_sink
from ..providers._usage import UsageRecorder, current_usage
from ..spec import MISSING, FlowInputRef, Literal, NodeRef, coerce_flow_input
from ._bind import BoundFlow, BoundNode
from ._results import BYPASSED, CANCELED, COMPLETED, FAILED, AggregationResult, LineResult, NodeRun

BLOCKING_THRESHOLD = 0.002  # seconds
BLOCKING_STRIKES = 3
DEFAULT_LINE_TIMEOUT = 600.0

_executor: ThreadPoolExecutor | None = None


def _threads() -> ThreadPoolExecutor:
    global _executor
    if _executor is None:
        _executor = ThreadPoolExecutor(max_workers=64, thread_name_prefix="pfkit-tool")
    return _executor


class InvalidReferenceProperty(PfkitError):
    category = "UserError"
    default_code = "InvalidReferenceProperty"


def resolve_path(value: Any, ref: NodeRef) -> Any:
    """Follow ``ref.path`` into a node output: dict keys, list indexes, object attributes."""
    try:
        for key in ref.path:
            if isinstance(value, dict) or (isinstance(key, int) and isinstance(value, (list, tuple))):
                value = value[key]
            elif isinstance(key, str) and hasattr(value, key):
                value = getattr(value, key)
            else:
                value = value[key]
    except (KeyError, IndexError, TypeError) as exc:
        raise InvalidReferenceProperty(
            f"Flow execution failed. Invalid property '{ref.property_text}' when accessing the "
            f"node '{ref.node}'. Please check the property and try again.",
            hint=f"The output of '{ref.node}' has no {ref.path!r} path; check {ref}.",
        ) from exc
    return value


def resolve_inputs(flow: BoundFlow, inputs: dict[str, Any], line_number: int | None) -> dict[str, Any]:
    """Defaults for missing inputs, then type coercion. Extra keys are kept, as in promptflow."""
    resolved = dict(inputs)
    for name, definition in flow.spec.inputs.items():
        if name in resolved:
            value = resolved[name]
        elif definition.default is not MISSING:
            value = definition.default
        else:
            where = "in input data" if line_number is None else f"in line {line_number} of input data"
            raise InputError(
                f"The input for flow is incorrect. The value for flow input '{name}' is not "
                f"provided {where}. Please review your input data or remove this input in your "
                "flow if it's no longer needed.",
                code="InputNotFound", location=Location(field=f"inputs.{name}", row=line_number),
                hint=f"Add '{name}' to the inputs (or map a data column to it), or give it a "
                     "default in flow.dag.yaml.",
            )
        if definition.type == "image":
            resolved[name] = _image_input(name, value, line_number)
        else:
            resolved[name] = coerce_flow_input(name, definition.type, value, line=line_number)
    return resolved


def _image_input(name: str, value: Any, line_number: int | None) -> Any:
    from pathlib import Path

    from ..nodes._images import to_image

    try:
        return to_image(value, Path.cwd())
    except (ValueError, OSError) as exc:
        raise InputError(f"flow input '{name}' is not an image: {exc}", code="InputTypeError",
                         location=Location(field=f"inputs.{name}", row=line_number),
                         hint='Give {"data:image/png;path": "file.png"}, a data: URL or an '
                              "http(s) URL.") from None


class _NodeFailed(Exception):
    def __init__(self, node: str, cause: BaseException) -> None:
        super().__init__(node)
        self.node = node
        self.cause = cause


@dataclass(frozen=True, slots=True)
class Schedule:
    """A node set prepared for execution: topological order, dependents, dependency counts
    (dependencies outside the set, like line nodes seen from aggregation, are settled)."""

    nodes: tuple[BoundNode, ...]
    dependents: tuple[tuple[int, ...], ...]
    dep_counts: tuple[int, ...]

    @classmethod
    def of(cls, nodes: tuple[BoundNode, ...]) -> Schedule:
        index = {n.name: i for i, n in enumerate(nodes)}
        dependents: list[list[int]] = [[] for _ in nodes]
        counts = []
        for i, node in enumerate(nodes):
            inside = [index[d] for d in node.deps if d in index]
            for d in inside:
                dependents[d].append(i)
            counts.append(len(inside))
        return cls(nodes, tuple(tuple(d) for d in dependents), tuple(counts))


class _Graph:
    """Runs a set of bound nodes once. ``value_of`` turns a reference into a value; used for a
    line (values) and for aggregation (lists over lines)."""

    __slots__ = ("schedule", "value_of", "runs", "outputs", "bypassed", "running")

    def __init__(self, schedule: Schedule, value_of: Callable[[Any], Any],
                 runs: dict[str, NodeRun], outputs: dict[str, Any]) -> None:
        self.schedule = schedule
        self.value_of = value_of
        self.runs = runs
        self.outputs = outputs
        self.bypassed: set[str] = set()
        self.running: dict[asyncio.Future, tuple[int, NodeRun, bool]] = {}  # bool: in a thread

    def _should_bypass(self, node: BoundNode) -> bool:
        act = node.activate
        if act is not None:
            when = act.when
            if isinstance(when, NodeRef) and when.node in self.bypassed:
                return True
            try:
                value = self.value_of(when)
            except PfkitError as exc:
                raise _NodeFailed(node.name, exc) from None
            return not (value == act.is_value)
        deps = node.input_deps
        return bool(deps) and all(d in self.bypassed for d in deps)

    def _kwargs(self, node: BoundNode) -> dict[str, Any]:
        kwargs = dict(node.literal_kwargs)
        for key, ref in node.ref_inputs:
            if isinstance(ref, NodeRef) and ref.node in self.bypassed:
                if key not in node.has_default:
                    kwargs[key] = None
                continue
            try:
                kwargs[key] = self.value_of(ref)
            except PfkitError as exc:
                raise _NodeFailed(node.name, exc) from None
        return kwargs

    async def run(self) -> None:
        """promptflow's rounds: settle every bypassable ready node (repeatedly), then start every
        ready node; a lone ready node runs without a task, several run concurrently."""
        nodes = self.schedule.nodes
        dependents = self.schedule.dependents
        remaining = list(self.schedule.dep_counts)
        ready = [i for i, count in enumerate(remaining) if count == 0]
        settled = 0
        running = self.running

        def settle(i: int) -> None:
            for j in dependents[i]:
                remaining[j] -= 1
                if remaining[j] == 0:
                    heapq.heappush(ready, j)

        while True:
            batch: list[int] = []
            while ready:
                i = heapq.heappop(ready)
                node = nodes[i]
                if self._should_bypass(node):
                    now = time.time()
                    self.runs[node.name] = NodeRun(node.name, BYPASSED, start_time=now, end_time=now)
                    self.bypassed.add(node.name)
                    settled += 1
                    settle(i)
                else:
                    batch.append(i)
            if not batch and not running:
                if settled < len(nodes):  # cannot happen after planning; never hang silently
                    raise RuntimeError("some nodes can never run")
                return
            if len(batch) == 1 and not running:
                i = batch[0]
                node = nodes[i]
                run = self._start(node)
                if node.is_async or node.is_async_gen or not node.blocking:
                    await self._call_inline(node, run)
                    settled += 1
                    settle(i)
                    continue
                running[self._spawn(node, run, threaded=True)] = (i, run, True)
            else:
                threaded = len(batch) > 1
                for i in batch:
                    node = nodes[i]
                    run = self._start(node)
                    in_thread = (threaded or node.blocking) and not (node.is_async or node.is_async_gen)
                    running[self._spawn(node, run, threaded=in_thread)] = (i, run, in_thread)
            if running:
                done, _ = await asyncio.wait(running, return_when=asyncio.FIRST_COMPLETED)
                for future in done:
                    i, run, _ = running.pop(future)
                    exc = future.exception()
                    if exc is not None:
                        self._fail(nodes[i], run, exc)
                    self._finish(nodes[i], run, future.result())
                    settled += 1
                    settle(i)

    def _start(self, node: BoundNode) -> NodeRun:
        kwargs = self._kwargs(node)
        run = NodeRun(node.name, "Running", kwargs, start_time=time.time(), usage=UsageRecorder())
        self.runs[node.name] = run
        return run

    def _finish(self, node: BoundNode, run: NodeRun, output: Any) -> None:
        run.output = output
        run.status = COMPLETED
        run.end_time = time.time()
        self.outputs[node.name] = output

    def _fail(self, node: BoundNode, run: NodeRun, exc: BaseException) -> None:
        run.status = FAILED
        run.end_time = time.time()
        raise _NodeFailed(node.name, exc)

    async def _call_inline(self, node: BoundNode, run: NodeRun) -> None:
        kwargs = run.inputs or {}
        token = current_usage.set(run.usage)
        try:
            if node.is_async:
                output = await node.call(**kwargs)
            elif node.is_async_gen:
                output = node.call(**kwargs)
            else:
                output = _call_sync(node, kwargs)
        except Exception as exc:
            self._fail(node, run, exc)
        finally:
            current_usage.reset(token)
        self._finish(node, run, output)

    def _spawn(self, node: BoundNode, run: NodeRun, threaded: bool) -> asyncio.Future:
        """Node outputs are passed on as they are (a generator stays a generator, as in
        promptflow); only flow outputs are joined."""
        token = current_usage.set(run.usage)  # the task copies the context as it is now
        try:
            return self._spawn_in_context(node, run.inputs or {}, threaded)
        finally:
            current_usage.reset(token)

    def _spawn_in_context(self, node: BoundNode, kwargs: dict[str, Any],
                          threaded: bool) -> asyncio.Future:
        if node.is_async:
            return asyncio.ensure_future(node.call(**kwargs))
        if node.is_async_gen:
            return asyncio.ensure_future(_value(node.call(**kwargs)))
        if not threaded:
            return asyncio.ensure_future(_sync_on_loop(node, kwargs))
        ctx = contextvars.copy_context()
        return asyncio.get_running_loop().run_in_executor(_threads(), ctx.run, _call_sync,
                                                          node, kwargs)

    async def settle_running(self) -> None:
        """After a failure: record nodes that already finished, let tools running in worker
        threads finish (a thread cannot be stopped) and record what they really did, and cancel
        async nodes still running."""
        for future, (i, run, in_thread) in list(self.running.items()):
            node = self.schedule.nodes[i]
            if not future.done() and not in_thread:
                future.cancel()
                run.status, run.end_time = CANCELED, time.time()
                continue
            try:
                output = future.result() if future.done() else await asyncio.shield(future)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - recorded on the node run
                run.status, run.error, run.end_time = FAILED, _failure(node.name, exc)[0], time.time()
            else:
                self._finish(node, run, output)
        self.running.clear()

    def cancel_running(self) -> None:
        now = time.time()
        for future, (_, run, _) in self.running.items():
            future.cancel()
            run.status, run.end_time = CANCELED, now
        self.running.clear()


def _call_sync(node: BoundNode, kwargs: dict[str, Any]) -> Any:
    """A sync tool, timed. Slow calls raise the node's score and quick ones lower it; at
    BLOCKING_STRIKES the node runs in worker threads from then on. One call held up by a busy
    machine does not move a quick tool; a tool that keeps blocking moves after a few lines."""
    t0 = time.perf_counter()
    output = node.call(**kwargs)
    if time.perf_counter() - t0 > BLOCKING_THRESHOLD:
        node.slow_calls += 1
        if node.slow_calls >= BLOCKING_STRIKES:
            node.blocking = True
    elif node.slow_calls:
        node.slow_calls -= 1
    return output


async def _sync_on_loop(node: BoundNode, kwargs: dict[str, Any]) -> Any:
    return _call_sync(node, kwargs)


async def _value(value: Any) -> Any:
    return value


async def _flow_outputs(flow: BoundFlow, inputs: dict[str, Any], graph: _Graph) -> dict[str, Any]:
    """Resolve the flow outputs; generators are joined here (and only here), then every value must
    be JSON-serialisable, as promptflow requires."""
    outputs: dict[str, Any] = {}
    for name, out in flow.spec.outputs.items():
        ref = out.reference
        if isinstance(ref, Literal):
            value = ref.value
        elif isinstance(ref, FlowInputRef):
            value = inputs.get(ref.name)
        elif ref.node in graph.bypassed:
            value = None
        elif ref.node in graph.outputs:
            value = resolve_path(graph.outputs[ref.node], ref)
        else:
            continue  # an aggregation node: dropped from line outputs, as in promptflow
        if isinstance(value, types.GeneratorType):
            value = "".join(str(item) for item in value)
        elif isinstance(value, types.AsyncGeneratorType):
            value = "".join([str(item) async for item in value])
        outputs[name] = value
    for name, value in outputs.items():
        if not _json_safe(value):
            _check_serialisable(name, value)
    return outputs


def _json_safe(value: Any) -> bool:
    """A fast walk for the common case; anything unusual goes to json.dumps."""
    if value is None or type(value) in (str, int, float, bool):
        return True
    if type(value) is dict:
        return all(type(k) is str and _json_safe(v) for k, v in value.items())
    if type(value) is list:
        return all(_json_safe(v) for v in value)
    return False


def _check_serialisable(name: str, value: Any) -> None:
    import json

    try:
        json.dumps(value)
    except (TypeError, ValueError) as exc:
        raise FlowOutputError(
            f"The output '{name}' for flow is incorrect. The output value is not JSON "
            f"serializable. JSON dump failed: ({type(exc).__name__}) {exc}. Please verify your "
            "flow output and make sure the value serializable.",
            hint="Return JSON types (str, numbers, bool, None, lists, dicts) from the node that "
                 f"feeds output '{name}'.",
        ) from exc


class FlowOutputError(PfkitError):
    category = "UserError"
    default_code = "FlowOutputValueInvalid"


def _line_value_of(inputs: dict[str, Any], outputs: dict[str, Any]) -> Callable[[Any], Any]:
    def value_of(ref: Any) -> Any:
        if isinstance(ref, FlowInputRef):
            return inputs[ref.name]
        if isinstance(ref, NodeRef):
            return resolve_path(outputs[ref.node], ref) if ref.path else outputs[ref.node]
        return ref.value

    return value_of


def _failure(node: str, cause: BaseException) -> tuple[dict[str, Any], BaseException]:
    """A tool's own exception is wrapped ("Execution failure in 'node': (Type) message"); an
    error pfkit raised on purpose (a template, a reference, a model call) keeps its message, as
    promptflow does for its own errors."""
    if isinstance(cause, PfkitError):
        data = cause.to_dict()
        data.setdefault("location", {})["node"] = node
        return data, cause
    error = NodeExecutionError(node, cause)
    return error.to_dict(), error


async def execute_line(flow: BoundFlow, inputs: dict[str, Any], *, line_number: int = 0,
                       timeout: float | None = DEFAULT_LINE_TIMEOUT) -> LineResult:
    """Run the line nodes of a flow on one set of inputs. Never raises for a node failure:
    the result carries status ``Failed`` and the error."""
    start = time.time()
    runs: dict[str, NodeRun] = {}
    try:
        resolved = resolve_inputs(flow, inputs, line_number)
    except InputError as exc:
        return LineResult(line_number, FAILED, dict(inputs), {}, runs, exc.to_dict(), start,
                          time.time(), exc)
    node_outputs: dict[str, Any] = {}
    graph = _Graph(flow.line_schedule, _line_value_of(resolved, node_outputs), runs, node_outputs)
    timer = None
    timed_out = False
    task = asyncio.current_task()
    if timeout:

        def on_timeout() -> None:
            nonlocal timed_out
            timed_out = True
            task.cancel()

        timer = asyncio.get_running_loop().call_later(timeout, on_timeout)
    try:
        await graph.run()
        outputs = await _flow_outputs(flow, resolved, graph)
    except _NodeFailed as failed:
        await graph.settle_running()
        error, exc = _failure(failed.node, failed.cause)
        return LineResult(line_number, FAILED, resolved, {}, runs, error, start, time.time(), exc)
    except PfkitError as exc:  # a flow output whose reference cannot be resolved
        await graph.settle_running()
        return LineResult(line_number, FAILED, resolved, {}, runs, exc.to_dict(), start,
                          time.time(), exc)
    except asyncio.CancelledError:
        graph.cancel_running()
        for run in runs.values():
            if run.status == "Running":
                run.status = CANCELED
        if not timed_out:
            raise
        if hasattr(task, "uncancel"):  # Python 3.11+: the cancellation was ours, and is handled
            task.uncancel()
        exc = LineTimeoutError(f"Line {line_number} execution timeout for exceeding {timeout} seconds",
                               hint="Raise the line timeout or make the slow node faster.")
        return LineResult(line_number, FAILED, resolved, {}, runs, exc.to_dict(), start,
                          time.time(), exc)
    finally:
        if timer is not None:
            timer.cancel()
    return LineResult(line_number, COMPLETED, resolved, outputs, runs, None, start, time.time())


class AggregationInputs:
    """What aggregation nodes read from each successful line, kept per line: small, JSON-able
    values (not whole line results), so a batch of any size keeps only this much, and a resumed
    run can restore it from its records."""

    def __init__(self, flow: BoundFlow) -> None:
        line_nodes = {n.name for n in flow.line_nodes}
        self.refs: dict[str, FlowInputRef | NodeRef] = {}
        for node in flow.aggregation_nodes:
            refs = [ref for _, ref in node.ref_inputs]
            if node.activate is not None:
                refs.append(node.activate.when)
            for ref in refs:
                if isinstance(ref, FlowInputRef) or (isinstance(ref, NodeRef) and ref.node in line_nodes):
                    self.refs[str(ref)] = ref
        self._keys = tuple(self.refs)
        self._rows: list[tuple[int, tuple[Any, ...]]] = []  # tuples: small for long runs

    def extract(self, line: LineResult) -> dict[str, Any]:
        """The values of one line (None where the node was bypassed or the path is missing)."""
        values: dict[str, Any] = {}
        for key, ref in self.refs.items():
            if isinstance(ref, FlowInputRef):
                values[key] = line.inputs.get(ref.name)
                continue
            run = line.node_runs.get(ref.node)
            if run is None or run.status != COMPLETED:
                values[key] = None
                continue
            try:
                values[key] = resolve_path(run.output, ref) if ref.path else run.output
            except PfkitError:
                values[key] = None
        return values

    def add(self, line_number: int, values: dict[str, Any]) -> None:
        self._rows.append((line_number, tuple(values.get(key) for key in self._keys)))

    def add_line(self, line: LineResult) -> None:
        if line.status == COMPLETED:
            self.add(line.line_number, self.extract(line))

    def __len__(self) -> int:
        return len(self._rows)

    def lists(self) -> dict[str, list[Any]]:
        rows = sorted(self._rows, key=lambda row: row[0])
        return {key: [values[i] for _, values in rows] for i, key in enumerate(self._keys)}


def _aggregation_value_of(lists: dict[str, list[Any]], outputs: dict[str, Any],
                          aggregation_names: frozenset[str]) -> Callable[[Any], Any]:
    def value_of(ref: Any) -> Any:
        if isinstance(ref, NodeRef) and ref.node in aggregation_names:
            value = outputs[ref.node]
            return resolve_path(value, ref) if ref.path else value
        if isinstance(ref, (FlowInputRef, NodeRef)):
            return lists[str(ref)]
        return ref.value

    return value_of


async def execute_aggregation(flow: BoundFlow, lines: list[LineResult] | AggregationInputs
                              ) -> AggregationResult:
    """Run the aggregation nodes once over the successful lines (in line order). A failure is
    recorded in the result; it never fails the lines."""
    metrics: dict[str, Any] = {}
    runs: dict[str, NodeRun] = {}
    if not flow.aggregation_nodes:
        return AggregationResult(COMPLETED, metrics, runs)
    if isinstance(lines, AggregationInputs):
        collected = lines
    else:
        collected = AggregationInputs(flow)
        for line in lines:
            collected.add_line(line)
    outputs: dict[str, Any] = {}
    names = frozenset(n.name for n in flow.aggregation_nodes)
    graph = _Graph(flow.aggregation_schedule,
                   _aggregation_value_of(collected.lists(), outputs, names), runs, outputs)
    token = metric_sink.set(metrics)
    unhook = _hook_promptflow_metrics()
    try:
        await graph.run()
    except _NodeFailed as failed:
        await graph.settle_running()
        error, exc = _failure(failed.node, failed.cause)
        return AggregationResult(FAILED, metrics, runs, error, exc)
    finally:
        metric_sink.reset(token)
        unhook()
    return AggregationResult(COMPLETED, metrics, runs)


def _hook_promptflow_metrics() -> Callable[[], None]:
    """When a user script imported the real promptflow, its ``log_metric`` goes to promptflow's
    logger manager: forward it to pfkit's sink for the duration of the aggregation."""
    import sys

    module = sys.modules.get("promptflow._core.metric_logger")
    if module is None:
        return lambda: None
    from ..nodes._tool import log_metric

    def forward(key: Any, value: Any, variant_id: Any = None) -> None:
        log_metric(key, value, variant_id)

    manager = module.MetricLoggerManager.get_instance()
    manager.add_metric_logger(forward)
    return lambda: manager.remove_metric_logger(forward)


__all__ = ["AggregationInputs", "execute_aggregation", "execute_line", "resolve_inputs"]
