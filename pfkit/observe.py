"""Observing execution: one protocol for progress bars, the run writer, tracing and UIs.

The engine emits each event from exactly one place; nothing in the engine knows who listens.
An observer implements any subset of the methods of :class:`ExecutionObserver` (subclass
:class:`Observer` for no-op defaults). :class:`Observers` fans one event out to several.

Events, in the order one line produces them::

    on_run_start ─┬─ on_line_start ── on_node_start ── on_model_call* ── on_node_end ...
                  │                   (bypassed nodes: on_node_end only)
                  │                   on_stream_item* on_stream_end (a streamed output consumed)
                  │  ── on_line_end
                  ├─ ... more lines, concurrently ...
                  ├─ on_aggregation_end
                  └─ on_run_end

``on_run_start``/``on_run_end`` come from the batch orchestrator (``pfkit.runs``); single calls
(``flow.test``) have no run events. Observers are called on the event loop thread and must be
quick; one that raises stops what emitted the event (the run writer relies on this: a full disk
fails the run instead of losing lines silently).
"""

from __future__ import annotations

import contextvars
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable


@dataclass(frozen=True, slots=True)
class RunStarted:
    name: str
    flow: str  # the flow folder
    total: int | None  # lines to run, when known
    reused: int = 0  # lines taken from --resume-from


@dataclass(frozen=True, slots=True)
class RunFinished:
    name: str
    status: str
    completed: int
    failed: int
    error: dict[str, Any] | None = None


@dataclass(frozen=True, slots=True)
class NodeStarted:
    line_number: int | None  # None for aggregation nodes
    node: str
    inputs: dict[str, Any]
    start_time: float


@dataclass(frozen=True, slots=True)
class ModelCall:
    """One call to a model, as the provider layer saw it (after the cache)."""

    connection: str | None
    provider: str | None  # openai, azure_openai, local, echo, ...
    api: str  # chat, completion, embedding, chat_stream
    model: str | None
    request: dict[str, Any]  # secrets never appear here: requests carry none
    usage: Any = None  # providers' Usage, or None when unknown
    cache_hit: bool = False
    retries: int = 0
    latency: float = 0.0  # seconds
    error: dict[str, Any] | None = None
    node: str | None = None
    line_number: int | None = None


@dataclass(frozen=True, slots=True)
class StreamFinished:
    node: str | None
    line_number: int | None
    items: int
    usage: Any = None
    error: dict[str, Any] | None = None


@runtime_checkable
class ExecutionObserver(Protocol):
    def on_run_start(self, event: RunStarted) -> None: ...
    def on_line_start(self, line_number: int, inputs: dict[str, Any]) -> None: ...
    def on_node_start(self, event: NodeStarted) -> None: ...
    def on_node_end(self, line_number: int | None, run: Any) -> None: ...  # engine NodeRun
    def on_model_call(self, event: ModelCall) -> None: ...
    def on_stream_item(self, node: str, line_number: int | None, item: Any) -> None: ...
    def on_stream_end(self, event: StreamFinished) -> None: ...
    def on_line_end(self, result: Any) -> None: ...  # engine LineResult
    def on_aggregation_end(self, result: Any) -> None: ...  # engine AggregationResult
    def on_run_end(self, event: RunFinished) -> None: ...


class Observer:
    """No-op defaults: override what you need."""

    def on_run_start(self, event: RunStarted) -> None:
        pass

    def on_line_start(self, line_number: int, inputs: dict[str, Any]) -> None:
        pass

    def on_node_start(self, event: NodeStarted) -> None:
        pass

    def on_node_end(self, line_number: int | None, run: Any) -> None:
        pass

    def on_model_call(self, event: ModelCall) -> None:
        pass

    def on_stream_item(self, node: str, line_number: int | None, item: Any) -> None:
        pass

    def on_stream_end(self, event: StreamFinished) -> None:
        pass

    def on_line_end(self, result: Any) -> None:
        pass

    def on_aggregation_end(self, result: Any) -> None:
        pass

    def on_run_end(self, event: RunFinished) -> None:
        pass


_METHODS = ("on_run_start", "on_line_start", "on_node_start", "on_node_end", "on_model_call",
            "on_stream_item", "on_stream_end", "on_line_end", "on_aggregation_end", "on_run_end")


@dataclass(slots=True)
class Observers:
    """Several observers as one. Falsy when empty, so the engine pays one truth test per event
    site when nobody listens. Each method calls only the observers that define it."""

    members: tuple[Any, ...] = ()
    _by_method: dict[str, tuple[Any, ...]] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        self._by_method = {
            name: tuple(getattr(o, name) for o in self.members if callable(getattr(o, name, None)))
            for name in _METHODS
        }

    def __bool__(self) -> bool:
        return bool(self.members)

    def with_(self, *more: Any) -> Observers:
        return Observers((*self.members, *(m for m in more if m is not None)))

    def _emit(self, method: str, *args: Any) -> None:
        for call in self._by_method[method]:
            call(*args)

    def on_run_start(self, event: RunStarted) -> None:
        self._emit("on_run_start", event)

    def on_line_start(self, line_number: int, inputs: dict[str, Any]) -> None:
        self._emit("on_line_start", line_number, inputs)

    def on_node_start(self, event: NodeStarted) -> None:
        self._emit("on_node_start", event)

    def on_node_end(self, line_number: int | None, run: Any) -> None:
        self._emit("on_node_end", line_number, run)

    def on_model_call(self, event: ModelCall) -> None:
        self._emit("on_model_call", event)

    def on_stream_item(self, node: str, line_number: int | None, item: Any) -> None:
        self._emit("on_stream_item", node, line_number, item)

    def on_stream_end(self, event: StreamFinished) -> None:
        self._emit("on_stream_end", event)

    def on_line_end(self, result: Any) -> None:
        self._emit("on_line_end", result)

    def on_aggregation_end(self, result: Any) -> None:
        self._emit("on_aggregation_end", result)

    def on_run_end(self, event: RunFinished) -> None:
        self._emit("on_run_end", event)


NO_OBSERVERS = Observers()

# The observers of the code running now (set by the engine around each line and node), so that
# the provider layer can report model calls without being handed them.
current_observers: contextvars.ContextVar[Observers] = contextvars.ContextVar(
    "pfkit_observers", default=NO_OBSERVERS)
# The node and line a model call belongs to (set by the engine around each node).
current_node: contextvars.ContextVar[tuple[str | None, int | None]] = contextvars.ContextVar(
    "pfkit_node", default=(None, None))


__all__ = ["ExecutionObserver", "ModelCall", "NodeStarted", "Observer", "Observers", "RunFinished",
           "RunStarted", "StreamFinished", "current_node", "current_observers"]
