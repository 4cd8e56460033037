"""The one place model calls are reported to observers.

Every model an llm node, a package tool or a session uses is wrapped once by :func:`observed`
(outermost, around the cache), and each call emits exactly one
:class:`~pfkit.observe.ModelCall` to the observers of the code running now
(``current_observers``), with the node and line from ``current_node``. With no observer
attached a call costs one context-variable read.

A streamed chat is reported when its stream ends (with the stream's usage), followed by one
:class:`~pfkit.observe.StreamFinished`.
"""

from __future__ import annotations

import contextvars
import time
from collections.abc import AsyncIterator
from typing import Any

from .. import _secrets
from ..errors import error_dict
from ..observe import ModelCall, StreamFinished, current_node, current_observers
from ._base import Usage

# [retries, cache hit] of the call being observed now: providers and the cache add to it.
_retries: contextvars.ContextVar[list[int] | None] = contextvars.ContextVar(
    "pfkit_model_call_retries", default=None)


def note_retry() -> None:
    """Called by a provider each time it retries a request."""
    counter = _retries.get()
    if counter is not None:
        counter[0] += 1


def note_cache_hit() -> None:
    """Called by the cache when it answers the call being observed (streams included)."""
    counter = _retries.get()
    if counter is not None:
        counter[1] = 1


def observed(model: Any) -> Any:
    """``model`` wrapped so its calls are reported (idempotent)."""
    if model is None or isinstance(model, ObservedModel):
        return model
    return ObservedModel(model)


def _error(exc: BaseException) -> dict[str, Any]:
    return _secrets.scrub_value(error_dict(exc))


class ObservedModel:
    """A ChatModel that reports each call of the model it wraps."""

    __slots__ = ("inner",)

    def __init__(self, inner: Any) -> None:
        self.inner = inner

    @property
    def api_style(self) -> str:
        return self.inner.api_style

    @property
    def identity(self) -> dict[str, Any]:
        return self.inner.identity

    def __getattr__(self, name: str) -> Any:  # stats, requests, limiter ... of the inner model
        if name == "inner":  # not set yet (copy, pickle)
            raise AttributeError(name)
        return getattr(self.inner, name)

    def __repr__(self) -> str:
        return repr(self.inner)

    async def chat(self, request: dict[str, Any]) -> Any:
        observers = current_observers.get()
        if not observers:
            return await self.inner.chat(request)
        return await self._observe("chat", self.inner.chat, request, observers)

    async def complete(self, request: dict[str, Any]) -> Any:
        observers = current_observers.get()
        if not observers:
            return await self.inner.complete(request)
        return await self._observe("completion", self.inner.complete, request, observers)

    async def embed(self, request: dict[str, Any]) -> Any:
        observers = current_observers.get()
        if not observers:
            return await self.inner.embed(request)
        return await self._observe("embedding", self.inner.embed, request, observers)

    async def _observe(self, api: str, call: Any, request: dict[str, Any], observers: Any) -> Any:
        counter = [0, 0]
        token = _retries.set(counter)
        start = time.perf_counter()
        try:
            response = await call(request)
        except BaseException as exc:
            _retries.reset(token)
            self._emit(observers, api, request, None, False, counter[0], start, _error(exc))
            raise
        _retries.reset(token)
        self._emit(observers, api, request, response.usage, bool(getattr(response, "cached", False)),
                   counter[0], start, None, getattr(response, "model", None))
        return response

    def _emit(self, observers: Any, api: str, request: dict[str, Any], usage: Any, cached: bool,
              retries: int, start: float, error: dict[str, Any] | None,
              model: str | None = None) -> None:
        identity = self.inner.identity or {}
        node, line = current_node.get()
        observers.on_model_call(ModelCall(
            connection=identity.get("connection"), provider=identity.get("provider"), api=api,
            model=request.get("model") or model, request=request, usage=usage,
            cache_hit=cached, retries=retries, latency=time.perf_counter() - start, error=error,
            node=node, line_number=line))

    def chat_stream(self, request: dict[str, Any]) -> AsyncIterator[Any]:
        observers = current_observers.get()
        if not observers:
            return self.inner.chat_stream(request)
        return self._observe_stream(request, observers, current_node.get())

    async def _observe_stream(self, request: dict[str, Any], observers: Any,
                              where: tuple[str | None, int | None]) -> AsyncIterator[Any]:
        counter = [0, 0]
        _retries.set(counter)  # the stream runs in its consumer's context: not reset here
        start = time.perf_counter()
        usage: Usage | None = None
        items = 0
        error: dict[str, Any] | None = None
        stream = self.inner.chat_stream(request)
        try:
            async for item in stream:
                if isinstance(item, Usage):
                    usage = item
                else:
                    items += 1
                yield item
        except GeneratorExit:
            error = {"category": "ExecutionError", "code": "StreamClosed",
                     "message": "the stream was closed before it ended"}
            raise
        except BaseException as exc:
            error = _error(exc)
            raise
        finally:
            aclose = getattr(stream, "aclose", None)
            if aclose is not None and error is not None:
                try:
                    await aclose()
                except Exception:  # noqa: BLE001 - closing is best effort
                    pass
            identity = self.inner.identity or {}
            node, line = where
            observers.on_model_call(ModelCall(
                connection=identity.get("connection"), provider=identity.get("provider"),
                api="chat_stream", model=request.get("model"), request=request, usage=usage,
                cache_hit=bool(counter[1]), retries=counter[0],
                latency=time.perf_counter() - start,
                error=error, node=node, line_number=line))
            observers.on_stream_end(StreamFinished(node=node, line_number=line, items=items,
                                                   usage=usage, error=error))
