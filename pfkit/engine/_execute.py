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
import threading
import time
import types
from collections.abc import Callable
from dataclasses import dataclass
from time import perf_counter
from typing import Any

from .._secrets import scrub_value
from ..errors import (
    FlowOutputError,
    InputError,
    InternalLineError,
    InvalidReferenceProperty,
    LineTimeoutError,
    Location,
    NodeExecutionError,
    PfkitError,
)
from ..nodes._tool import metric_sink
from ..observe import NodeStarted, Observers, StreamFinished, current_node, current_observers
from ..providers._usage import UsageRecorder, current_usage
from ..spec import MISSING, FlowInputRef, Literal, NodeRef, coerce_flow_input
from ._bind import BoundFlow, BoundNode
from ._isolation import GATE, FlowContext, calling_flows
from ._results import BYPASSED, CANCELED, COMPLETED, FAILED, AggregationResult, LineResult, NodeRun
from ._threads import threads

BLOCKING_THRESHOLD = 0.002  # seconds
BLOCKING_STRIKES = 3
# With a line timeout, a sync tool runs in a worker thread (where the line can time out while it
# runs) until this many calls were quick, and while a slow call is not lived down by a quick
# one; only then may it run inline on the loop.
QUICK_PROOF = 8
DEFAULT_LINE_TIMEOUT = 600.0

_threads = threads


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
            resolved[name] = _image_input(name, value, line_number, flow.working_dir)
        else:
            resolved[name] = coerce_flow_input(name, definition.type, value, line=line_number)
            if definition.type in ("list", "object") and _has_images(resolved[name]):
                # image dicts inside list/object inputs become Images too (promptflow's rule)
                resolved[name] = _image_input(name, resolved[name], line_number, flow.working_dir,
                                              nested=True)
    return resolved


def _has_images(value: Any) -> bool:
    if not value or not isinstance(value, (list, dict)):
        return False
    from ..nodes._images import contains_image_dict

    return contains_image_dict(value)


def _image_input(name: str, value: Any, line_number: int | None, folder: Any,
                 nested: bool = False) -> Any:
    from ..nodes._images import load_nested_images, to_image

    try:
        return load_nested_images(value, folder) if nested else to_image(value, folder)
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


class _ThreadCall:
    """A sync tool running in a worker thread: which thread (so a timed-out line can try to
    interrupt it) and how long the call took."""

    __slots__ = ("elapsed", "gate_loop", "lock", "thread_id")

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.thread_id: int | None = None
        self.elapsed = 0.0
        self.gate_loop: asyncio.AbstractEventLoop | None = None  # set while it holds the gate

    def release_gate(self) -> None:
        """Leave the gate for this call, once: when the call ends, or when its line gives up
        on it (a hung tool must not hold every other flow back)."""
        with self.lock:
            loop, self.gate_loop = self.gate_loop, None
        if loop is not None:
            GATE.leave(loop)


class _Interrupted(BaseException):
    """Raised inside a worker thread whose line timed out (pure-Python code only)."""


def _in_thread(box: _ThreadCall, call: Callable[..., Any], kwargs: dict[str, Any],
               ctx: FlowContext | None, loop: asyncio.AbstractEventLoop) -> Any:
    try:
        return _timed_call(box, call, kwargs)
    except _Interrupted:
        raise LineTimeoutError("the tool was interrupted after its line timed out") from None
    finally:
        box.thread_id = None
        box.release_gate()


def _timed_call(box: _ThreadCall, call: Callable[..., Any], kwargs: dict[str, Any]) -> Any:
    with box.lock:
        box.thread_id = threading.get_ident()
    t0 = time.perf_counter()
    try:
        return call(**kwargs)
    finally:
        box.elapsed = time.perf_counter() - t0
        with box.lock:  # an interrupt is only sent while thread_id is set, under this lock
            box.thread_id = None
        _absorb()  # one sent just before is delivered here at the latest, inside the try


def _absorb() -> None:
    pass


def _interrupt(box: _ThreadCall) -> None:
    """Ask a worker thread still running a timed-out tool to stop: works for pure-Python code
    (loops); a call blocked in C (sleep, I/O) finishes on its own, its result discarded."""
    import ctypes

    with box.lock:
        if box.thread_id is not None:
            ctypes.pythonapi.PyThreadState_SetAsyncExc(ctypes.c_ulong(box.thread_id),
                                                       ctypes.py_object(_Interrupted))


def _record_speed(node: BoundNode, elapsed: float, timed: bool) -> None:
    """Slow calls raise the node's score and quick ones lower it; at BLOCKING_STRIKES the node
    runs in worker threads from then on. In lines with a timeout a tool runs inline only while
    it has no slow call to live down (so one hiccup of a busy machine costs one thread hop, not
    the inline path for good). Called on the event loop thread only."""
    speed = node.speed
    if elapsed > BLOCKING_THRESHOLD:
        speed.slow_calls += 1
        if speed.slow_calls >= BLOCKING_STRIKES:
            speed.blocking = True
    else:
        speed.quick_calls += 1
        if speed.slow_calls:
            speed.slow_calls -= 1


class ObserverFailed(BaseException):
    """An observer raised: it stops what emitted the event (not a node failure, not a line
    failure); the observer's own exception is re-raised to the caller."""

    def __init__(self, cause: BaseException) -> None:
        super().__init__(cause)
        self.cause = cause


class _Graph:
    """Runs a set of bound nodes once. ``value_of`` turns a reference into a value; used for a
    line (values) and for aggregation (lists over lines).

    Every change of a node's state goes through :meth:`_started` and :meth:`_ended`, which are
    also the only places node events are emitted."""

    __slots__ = ("schedule", "value_of", "runs", "outputs", "bypassed", "running", "ctx",
                 "line_number", "obs", "timed", "held")

    def __init__(self, schedule: Schedule, value_of: Callable[[Any], Any],
                 runs: dict[str, NodeRun], outputs: dict[str, Any],
                 ctx: FlowContext | None = None, line_number: int | None = None,
                 observers: Observers | None = None, timed: bool = False) -> None:
        self.schedule = schedule
        self.value_of = value_of
        self.runs = runs
        self.outputs = outputs
        self.bypassed: set[str] = set()
        # future -> (node index, run, thread call or None)
        self.running: dict[asyncio.Future, tuple[int, NodeRun, _ThreadCall | None]] = {}
        self.ctx = ctx
        self.line_number = line_number
        self.obs = observers if observers else None
        self.timed = timed
        # Inline sync user tools of one line run back to back without yielding: the gate is
        # entered once for such a stretch and left before anything awaits (see run()).
        self.held = False

    # ------------------------------------------------------------------ node states

    def _started(self, node: BoundNode) -> NodeRun:
        kwargs = self._kwargs(node)
        run = NodeRun(node.name, "Running", kwargs, start_time=time.time(), usage=UsageRecorder())
        self.runs[node.name] = run
        if self.obs is not None:
            try:
                self.obs.on_node_start(NodeStarted(self.line_number, node.name, kwargs,
                                                   run.start_time))
            except Exception as exc:
                raise ObserverFailed(exc) from exc
        return run

    def _ended(self, node: str, run: NodeRun | None, status: str, output: Any = None,
               error: dict[str, Any] | None = None) -> NodeRun:
        """The one place a node reaches its final state (Completed, Failed, Bypassed,
        Canceled)."""
        now = time.time()
        if run is None:
            run = NodeRun(node, status, start_time=now, end_time=now)
            self.runs[node] = run
        else:
            run.status = status
            run.end_time = now
        if status == COMPLETED:
            run.output = output
            self.outputs[node] = output
        elif error is not None:
            run.error = error
        if status == BYPASSED:
            self.bypassed.add(node)
        if self.obs is not None:
            try:
                self.obs.on_node_end(self.line_number, run)
            except Exception as exc:
                raise ObserverFailed(exc) from exc
        return run

    def _fail(self, node: BoundNode, run: NodeRun, exc: BaseException) -> None:
        self._ended(node.name, run, FAILED, error=_failure(node.name, exc, self.ctx)[0])
        raise _NodeFailed(node.name, exc)

    # ------------------------------------------------------------------ scheduling

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

    def _inline_ok(self, node: BoundNode) -> bool:
        """May this node run on the loop, without a task? (Inlined in :meth:`run`.)"""
        if node.is_async or node.is_async_gen:
            return True
        speed = node.speed
        if speed.blocking:
            return False
        return not self.timed or speed.quick_calls >= QUICK_PROOF and not speed.slow_calls

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

        try:
            while True:
                batch: list[int] = []
                while ready:
                    i = heapq.heappop(ready)
                    node = nodes[i]
                    if self._should_bypass(node):
                        self._ended(node.name, None, BYPASSED)
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
                    run = self._started(node)
                    speed = node.speed
                    if node.is_async or node.is_async_gen or not speed.blocking and (
                            not self.timed
                            or speed.quick_calls >= QUICK_PROOF and not speed.slow_calls):
                        await self._call_inline(node, run)
                        settled += 1
                        settle(i)
                        continue
                    self._spawn(i, node, run, threaded=True)
                else:
                    threaded = len(batch) > 1
                    for i in batch:
                        node = nodes[i]
                        run = self._started(node)
                        self._spawn(i, node, run, threaded=threaded or not self._inline_ok(node))
                if running:
                    if self.held:  # never hold the gate while waiting
                        self._release_held()
                    done, _ = await asyncio.wait(running, return_when=asyncio.FIRST_COMPLETED)
                    for future in done:
                        i, run, _ = running.pop(future)
                        exc = future.exception()
                        if exc is not None:
                            self._fail(nodes[i], run, exc)
                        self._ended(nodes[i].name, run, COMPLETED, future.result())
                        settled += 1
                        settle(i)
        finally:
            if self.held:
                self._release_held()

    def _release_held(self) -> None:
        self.held = False
        GATE.leave_on_loop()

    # ------------------------------------------------------------------ calling nodes

    def _context_for(self, node: BoundNode, run: NodeRun) -> list[tuple[Any, Any]]:
        tokens = [(current_usage, current_usage.set(run.usage))]
        if self.obs is not None:
            tokens.append((current_observers, current_observers.set(self.obs)))
            tokens.append((current_node, current_node.set((node.name, self.line_number))))
        return tokens

    async def _call_inline(self, node: BoundNode, run: NodeRun) -> None:
        kwargs = run.inputs or {}
        if self.obs is None:
            tokens = None
            token = current_usage.set(run.usage)
        else:
            tokens = self._context_for(node, run)
        ctx = self.ctx if node.user_code else None
        try:
            if node.is_async or node.is_async_gen:
                if self.held:
                    self._release_held()
                if ctx is not None and not GATE.try_enter(ctx):
                    await GATE.enter(ctx)
                try:
                    output = await node.call(**kwargs) if node.is_async else node.call(**kwargs)
                finally:
                    if ctx is not None:
                        GATE.leave_on_loop()
            else:
                if ctx is not None and not self.held:
                    # GATE.try_enter's fast path, inlined (this runs for every line)
                    lock = GATE._lock
                    lock.acquire()
                    if GATE._owner is ctx and not GATE._waiters:
                        GATE._holders += 1
                        lock.release()
                    else:
                        lock.release()
                        if not GATE.try_enter(ctx):
                            await GATE.enter(ctx)
                    self.held = True  # left by run() before it awaits or ends
                t0 = perf_counter()
                output = node.call(**kwargs)
                elapsed = perf_counter() - t0
                speed = node.speed
                if elapsed > BLOCKING_THRESHOLD or speed.slow_calls:
                    _record_speed(node, elapsed, self.timed)
                else:  # the common case of _record_speed, without the call
                    speed.quick_calls += 1
        except Exception as exc:
            self._fail(node, run, exc)
        finally:
            if tokens is None:
                current_usage.reset(token)
            else:
                for var, value in reversed(tokens):
                    var.reset(value)
        self._ended(node.name, run, COMPLETED, output)

    def _spawn(self, i: int, node: BoundNode, run: NodeRun, threaded: bool) -> None:
        """Node outputs are passed on as they are (a generator stays a generator, as in
        promptflow); only flow outputs are joined."""
        tokens = self._context_for(node, run)  # the task copies the context as it is now
        try:
            kwargs = run.inputs or {}
            ctx = self.ctx if node.user_code else None
            box = None
            if node.is_async:
                coro = node.call(**kwargs) if ctx is None else _gated(ctx, node.call, kwargs)
            elif node.is_async_gen:
                coro = _value(node.call(**kwargs))
            elif threaded:
                box = _ThreadCall()
                coro = _threaded(node, kwargs, ctx, box, self.timed)
            else:
                coro = _sync_on_loop(node, kwargs, ctx, self.timed)
            self.running[asyncio.ensure_future(coro)] = (i, run, box)
        finally:
            for var, token in reversed(tokens):
                var.reset(token)

    async def settle_running(self) -> None:
        """After a failure: record nodes that already finished, let tools running in worker
        threads finish (a thread cannot be stopped) and record what they really did, and cancel
        async nodes still running."""
        for future, (i, run, box) in list(self.running.items()):
            node = self.schedule.nodes[i]
            if not future.done() and box is None:
                future.cancel()
                self._ended(node.name, run, CANCELED)
                continue
            try:
                output = future.result() if future.done() else await asyncio.shield(future)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - recorded on the node run
                self._ended(node.name, run, FAILED, error=_failure(node.name, exc, self.ctx)[0])
            else:
                self._ended(node.name, run, COMPLETED, output)
        self.running.clear()

    def cancel_running(self) -> None:
        """The line was cancelled or timed out: every running node is Canceled now; a tool in a
        worker thread is asked to stop (see :func:`_interrupt`) and its result discarded."""
        for future, (i, run, box) in self.running.items():
            future.cancel()
            if box is not None:
                _interrupt(box)
            self._ended(self.schedule.nodes[i].name, run, CANCELED)
        self.running.clear()
        for name, run in self.runs.items():
            if run.status == "Running":  # an inline call interrupted by the cancellation
                self._ended(name, run, CANCELED)


async def _gated(ctx: FlowContext, call: Callable[..., Any], kwargs: dict[str, Any]) -> Any:
    """An async user tool, with its flow's folder and environment applied while it runs."""
    if not GATE.try_enter(ctx):
        await GATE.enter(ctx)
    try:
        return await call(**kwargs)
    finally:
        GATE.leave_on_loop()


async def _threaded(node: BoundNode, kwargs: dict[str, Any], ctx: FlowContext | None,
                    box: _ThreadCall, timed: bool) -> Any:
    """A sync tool in a worker thread. The gate is entered here (without blocking the loop) and
    left by the thread when the call really ends, even after its line gave up on it."""
    loop = asyncio.get_running_loop()
    if ctx is not None:
        if not GATE.try_enter(ctx):
            await GATE.enter(ctx)
        box.gate_loop = loop
    try:
        future = _threads().submit(contextvars.copy_context().run, _in_thread, box, node.call,
                                   kwargs, ctx, loop)
    except BaseException:
        box.release_gate()
        raise
    try:
        output = await asyncio.wrap_future(future)
    except asyncio.CancelledError:
        box.release_gate()  # the line gave up on the call (or it never started)
        raise
    _record_speed(node, box.elapsed, False)
    return output


async def _sync_on_loop(node: BoundNode, kwargs: dict[str, Any], ctx: FlowContext | None,
                        timed: bool) -> Any:
    if ctx is not None and not GATE.try_enter(ctx):
        await GATE.enter(ctx)
    try:
        t0 = time.perf_counter()
        output = node.call(**kwargs)
        _record_speed(node, time.perf_counter() - t0, timed)
        return output
    finally:
        if ctx is not None:
            GATE.leave_on_loop()


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
            # None, as promptflow; a property of a bypassed node's None fails the line, as there
            value = resolve_path(None, ref) if ref.path else None
        elif ref.node in graph.outputs:
            value = resolve_path(graph.outputs[ref.node], ref)
        else:
            continue  # an aggregation node: dropped from line outputs, as in promptflow
        if isinstance(value, (types.GeneratorType, types.AsyncGeneratorType)):
            value = await _join_stream(flow, graph, ref.node, value)
        outputs[name] = value
    if flow.shape_outputs is not None:
        outputs = flow.shape_outputs(outputs)
    for name, value in outputs.items():
        if not _json_safe(value):
            _check_serialisable(name, value)
    return outputs


def _check_aggregation_paths(flow: BoundFlow, graph: _Graph) -> None:
    """An aggregation input ``${node.output.<path>}`` must resolve on every completed line (a
    bypassed node's None has no path): otherwise the line fails, as in promptflow."""
    for node in flow.aggregation_nodes:
        for _, ref in node.ref_inputs:
            if isinstance(ref, NodeRef) and ref.path and (ref.node in graph.bypassed
                                                          or ref.node in graph.outputs):
                resolve_path(None if ref.node in graph.bypassed else graph.outputs[ref.node], ref)


async def _join_stream(flow: BoundFlow, graph: _Graph, node: str, stream: Any) -> str:
    """Consume a streamed output (a generator from a tool or a model): its text, joined. The
    generator's code runs now, so a user tool's stream runs with its flow's context applied."""
    ctx = flow.context if _is_user_node(flow, node) else None
    run = graph.runs.get(node)
    usage = run.usage if run is not None else None
    token = current_usage.set(usage) if usage is not None else None
    observing = []
    if graph.obs is not None:
        observing = [(current_observers, current_observers.set(graph.obs)),
                     (current_node, current_node.set((node, graph.line_number)))]
    parts: list[str] = []
    error = None
    try:
        if ctx is not None and not GATE.try_enter(ctx):
            await GATE.enter(ctx)
        try:
            emit = graph.obs.on_stream_item if graph.obs is not None else None
            if isinstance(stream, types.GeneratorType):
                for item in stream:
                    parts.append(str(item))
                    if emit is not None:  # each chunk as it comes (served as server-sent events)
                        emit(node, graph.line_number, item)
            else:
                async for item in stream:
                    parts.append(str(item))
                    if emit is not None:
                        emit(node, graph.line_number, item)
        finally:
            if ctx is not None:
                GATE.leave_on_loop()
    except Exception as exc:
        error = _failure(node, exc, flow.context)[0]
        raise _NodeFailed(node, exc) from None
    finally:
        if token is not None:
            current_usage.reset(token)
        for var, value in reversed(observing):
            var.reset(value)
        if graph.obs is not None and ctx is not None:
            # a model's stream is reported by the provider layer when it ends (it runs in this
            # context, so it knows the node and line); a python tool's stream here
            try:
                graph.obs.on_stream_end(StreamFinished(node, graph.line_number, len(parts),
                                                       usage or None, error))
            except Exception as exc:
                raise ObserverFailed(exc) from exc
    return "".join(parts)


def _is_user_node(flow: BoundFlow, name: str) -> bool:
    for node in flow.nodes:
        if node.name == name:
            return node.user_code
    return False


_BIG_INT_BITS = 14_000  # json refuses integers of more than 4300 digits (~14,284 bits)


def _json_safe(value: Any) -> bool:
    """A fast walk for the common case; anything unusual goes to json.dumps."""
    kind = type(value)
    if kind is str or value is None or kind is float or kind is bool:
        return True
    try:
        return _safe(value)
    except RecursionError:  # deep or self-containing: let json.dumps say which
        return False


def _safe(value: Any) -> bool:
    kind = type(value)
    if value is None or kind is str or kind is float or kind is bool:
        return True
    if kind is int:
        return value.bit_length() < _BIG_INT_BITS
    if kind is dict:
        return all(type(k) is str and _safe(v) for k, v in value.items())
    if kind is list:
        return all(_safe(v) for v in value)
    return False


def _check_serialisable(name: str, value: Any) -> None:
    import json

    try:
        json.dumps(value, default=_image_as_text)
    except (TypeError, ValueError, RecursionError) as exc:
        reason = ("it is nested too deeply (or contains itself)" if isinstance(exc, RecursionError)
                  else str(exc))
        raise FlowOutputError(
            f"The output '{name}' for flow is incorrect. The output value is not JSON "
            f"serializable. JSON dump failed: ({type(exc).__name__}) {reason}. Please verify your "
            "flow output and make sure the value serializable.",
            hint="Return JSON types (str, numbers, bool, None, lists, dicts) from the node that "
                 f"feeds output '{name}'.",
        ) from None


def _image_as_text(value: Any) -> Any:
    """Images are valid flow outputs (promptflow saves them as files in run outputs)."""
    from ..nodes._images import PFBytes

    if isinstance(value, PFBytes):
        return str(value)
    raise TypeError(f"Object of type {type(value).__name__} is not JSON serializable")


def _line_value_of(inputs: dict[str, Any], outputs: dict[str, Any]) -> Callable[[Any], Any]:
    def value_of(ref: Any) -> Any:
        if isinstance(ref, FlowInputRef):
            return inputs[ref.name]
        if isinstance(ref, NodeRef):
            return resolve_path(outputs[ref.node], ref) if ref.path else outputs[ref.node]
        return ref.value

    return value_of


def _failure(node: str, cause: BaseException, ctx: FlowContext | None = None
             ) -> tuple[dict[str, Any], BaseException]:
    """A tool's own exception is wrapped ("Execution failure in 'node': (Type) message"); an
    error pfkit raised on purpose (a template, a reference, a model call) keeps its message, as
    promptflow does for its own errors. The record names the user's file and line where the
    tool raised, carries the user's part of the traceback, and holds no secret."""
    if isinstance(cause, PfkitError):
        data = cause.to_dict()
        data.setdefault("location", {})["node"] = node
        return scrub_value(data), cause
    error = NodeExecutionError(node, cause)
    place = user_frame(cause, ctx)
    if place is not None:
        error.location = Location(file=place[0], line=place[1], node=node)
    data = error.to_dict()
    trace = user_traceback(cause, ctx)
    if trace:
        data["traceback"] = trace
    return scrub_value(data), error


def _user_frames(exc: BaseException, ctx: FlowContext | None) -> list[Any]:
    """The frames of ``exc``'s traceback in the flow author's code: under the flow folder, or
    (without one) outside pfkit and the standard library."""
    import os
    import traceback

    frames = traceback.extract_tb(exc.__traceback__)
    if ctx is not None:
        root = ctx.directory.rstrip(os.sep) + os.sep
        return [f for f in frames if os.path.abspath(f.filename).startswith(root)]
    package = os.path.dirname(os.path.dirname(os.path.abspath(__file__))) + os.sep
    return [f for f in frames if not os.path.abspath(f.filename).startswith(package)]


def user_frame(exc: BaseException, ctx: FlowContext | None) -> tuple[str, int] | None:
    """(file relative to the flow folder, line) of the innermost user frame, or None."""
    import os

    frames = _user_frames(exc, ctx)
    if not frames:
        return None
    last = frames[-1]
    path = os.path.abspath(last.filename)
    if ctx is not None:
        path = os.path.relpath(path, ctx.directory)
    return path, last.lineno or 0


def user_traceback(exc: BaseException, ctx: FlowContext | None) -> str:
    """The user's part of the traceback, as Python prints it (without pfkit's frames)."""
    import traceback

    frames = _user_frames(exc, ctx)
    if not frames:
        return ""
    lines = ["Traceback (most recent call last):\n", *traceback.format_list(frames),
             *traceback.format_exception_only(type(exc), exc)]
    return "".join(lines).rstrip()


def _internal_error(line_number: int | None, exc: BaseException) -> InternalLineError:
    what = "nested too deeply (or contains itself)" if isinstance(exc, RecursionError) else str(exc)
    return InternalLineError(
        f"Line {line_number} failed with an internal error: ({type(exc).__name__}) {what}",
        location=Location(row=line_number),
        hint="The line's data or a node's output could not be handled; the other lines go on.")


async def execute_line(flow: BoundFlow, inputs: dict[str, Any], *, line_number: int = 0,
                       timeout: float | None = DEFAULT_LINE_TIMEOUT,
                       observers: Observers | None = None) -> LineResult:
    """Run the line nodes of a flow on one set of inputs. Never raises for a node failure, an
    internal error or a timeout: the result carries status ``Failed`` and the error."""
    obs = observers if observers else None
    if obs is not None:
        obs.on_line_start(line_number, inputs)
    start = time.time()
    runs: dict[str, NodeRun] = {}
    try:
        resolved = resolve_inputs(flow, inputs, line_number)
    except Exception as exc:  # noqa: BLE001 - bad or hostile data (deep nesting, huge values)
        error = exc if isinstance(exc, InputError) else _internal_error(line_number, exc)
        result = LineResult(line_number, FAILED, dict(inputs), {}, runs,
                            scrub_value(error.to_dict()), start, time.time(), error)
        if obs is not None:
            obs.on_line_end(result)
        return result
    node_outputs: dict[str, Any] = {}
    graph = _Graph(flow.line_schedule, _line_value_of(resolved, node_outputs), runs, node_outputs,
                   flow.context, line_number, obs, bool(timeout))
    calling = None
    if GATE.many and flow.context is not None:  # tools of this line may call another flow
        calling = calling_flows.set((*calling_flows.get(), flow.context))
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
        _check_aggregation_paths(flow, graph)
        result = LineResult(line_number, COMPLETED, resolved, outputs, runs, None, start,
                            time.time())
    except _NodeFailed as failed:
        await _settle(graph)
        error, exc = _failure(failed.node, failed.cause, flow.context)
        result = LineResult(line_number, FAILED, resolved, {}, runs, error, start, time.time(),
                            exc)
    except PfkitError as exc:  # a flow output whose reference cannot be resolved
        await _settle(graph)
        result = LineResult(line_number, FAILED, resolved, {}, runs, scrub_value(exc.to_dict()),
                            start, time.time(), exc)
    except ObserverFailed as failed:
        graph.cancel_running()
        raise failed.cause from None
    except asyncio.CancelledError:
        graph.cancel_running()
        if not timed_out:
            raise
        if hasattr(task, "uncancel"):  # Python 3.11+: the cancellation was ours, and is handled
            task.uncancel()
        exc = LineTimeoutError(f"Line {line_number} execution timeout for exceeding {timeout} seconds",
                               hint="Raise the line timeout or make the slow node faster.")
        result = LineResult(line_number, FAILED, resolved, {}, runs, exc.to_dict(), start,
                            time.time(), exc)
    except Exception as exc:  # noqa: BLE001 - an internal error is a failed line, never a crash
        graph.cancel_running()
        error = _internal_error(line_number, exc)
        result = LineResult(line_number, FAILED, resolved, {}, runs,
                            scrub_value(error.to_dict()), start, time.time(), error)
    finally:
        if timer is not None:
            timer.cancel()
        if calling is not None:
            calling_flows.reset(calling)
    if obs is not None:
        obs.on_line_end(result)
    return result


async def _settle(graph: _Graph) -> None:
    try:
        await graph.settle_running()
    except asyncio.CancelledError:
        graph.cancel_running()
        raise
    except Exception:  # noqa: BLE001 - recording what the others did must not fail the line
        graph.cancel_running()


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


async def execute_aggregation(flow: BoundFlow, lines: list[LineResult] | AggregationInputs, *,
                              observers: Observers | None = None) -> AggregationResult:
    """Run the aggregation nodes once over the successful lines (in line order). A failure is
    recorded in the result; it never fails the lines."""
    obs = observers if observers else None
    try:
        result = await _execute_aggregation(flow, lines, obs)
    except ObserverFailed as failed:
        raise failed.cause from None
    if obs is not None:
        obs.on_aggregation_end(result)
    return result


async def _execute_aggregation(flow: BoundFlow, lines: list[LineResult] | AggregationInputs,
                               obs: Observers | None) -> AggregationResult:
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
                   _aggregation_value_of(collected.lists(), outputs, names), runs, outputs,
                   ctx=flow.context, observers=obs)
    token = metric_sink.set(metrics)
    unhook = _hook_promptflow_metrics()
    calling = None
    if GATE.many and flow.context is not None:  # its tools may call another flow
        calling = calling_flows.set((*calling_flows.get(), flow.context))
    try:
        await graph.run()
    except _NodeFailed as failed:
        await _settle(graph)
        error, exc = _failure(failed.node, failed.cause, flow.context)
        return AggregationResult(FAILED, metrics, runs, error, exc)
    except ObserverFailed as failed:
        graph.cancel_running()
        raise failed.cause from None
    except asyncio.CancelledError:
        graph.cancel_running()
        raise
    except Exception as exc:  # noqa: BLE001 - an internal error fails the aggregation only
        graph.cancel_running()
        error = _internal_error(None, exc)
        return AggregationResult(FAILED, metrics, runs, scrub_value(error.to_dict()), error)
    finally:
        metric_sink.reset(token)
        unhook()
        if calling is not None:
            calling_flows.reset(calling)
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
