"""The caching model: any ChatModel answered from a :class:`ResponseCache` (record/replay).

Modes (:data:`CACHE_MODES`): ``off`` passes every call through; ``read_write`` answers from the
cache and stores misses; ``record`` always calls the model and stores; ``replay`` answers from
the cache and raises :class:`ReplayMissError` on a miss.
"""

from __future__ import annotations

import json
import threading
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import asdict, dataclass, fields
from typing import Any, TypeVar

from .. import _secrets
from ..errors import UserError
from ._base import ChatModel, ChatResponse, CompletionResponse, EmbeddingResponse, Usage
from ._cache_keys import CACHE_ENV_VAR, _check_mode, cache_key, is_nondeterministic
from ._cache_store import ResponseCache
from ._observed import note_cache_hit
from ._text import content_text

_EXCERPT_CHARS = 60


class ReplayMissError(UserError):
    """Replay mode found no recorded response for a call."""

    default_code = "CacheReplayMiss"
    key: str | None = None
    kind: str | None = None

    @classmethod
    def for_call(cls, identity: dict[str, Any], kind: str, key: str,
                 request: dict[str, Any]) -> ReplayMissError:
        """The error for a missing ``kind`` call with ``request`` (key ``key``)."""
        message = (f"No recorded {kind} response for model {_model_label(identity, request)} "
                   f"(cache key {key[:12]}) in replay mode; request: "
                   f"{json.dumps(_secrets.scrub(_excerpt(kind, request)), ensure_ascii=False)}.")
        hint = ("Record the responses first: run once with `--cache record` (or set "
                f"{CACHE_ENV_VAR}=record), then replay. If the prompt, parameters or model "
                "changed on purpose, record again.")
        error = cls(message, hint=hint)
        error.key, error.kind = key, kind
        return error


def _model_label(identity: dict[str, Any], request: dict[str, Any]) -> str:
    name = (request.get("model") or identity.get("deployment")
            or identity.get("deployment_name") or identity.get("model"))
    provider = identity.get("provider")
    if name and provider:
        return f"'{name}' ({provider})"
    return f"'{name or provider or 'unknown'}'"


def _excerpt(kind: str, request: dict[str, Any]) -> str:
    """A short single-line excerpt of the last message, the prompt or the embedding input."""
    if kind == "chat":
        messages = request.get("messages") or [{}]
        value = messages[-1].get("content") if isinstance(messages[-1], dict) else messages[-1]
    else:
        value = request.get("prompt" if kind == "completion" else "input")
    text = " ".join(content_text(value).split())
    return text if len(text) <= _EXCERPT_CHARS else text[:_EXCERPT_CHARS - 1] + "…"




def _hit_fields(cls: type) -> dict[str, Any]:
    """``cached=True`` for response classes that have a ``cached`` field (marks a cache hit
    without changing equality, when the field is declared with ``compare=False``)."""
    return {"cached": True} if "cached" in {f.name for f in fields(cls)} else {}




def chat_to_dict(response: ChatResponse) -> dict[str, Any]:
    data = {"message": response.message, "usage": response.usage.to_dict(),
            "model": response.model}
    if response.logprobs is not None:
        data["logprobs"] = response.logprobs
    return data


def chat_from_dict(data: dict[str, Any]) -> ChatResponse:
    return ChatResponse(message=data["message"], usage=Usage.parse(data.get("usage")),
                        model=data.get("model"), logprobs=data.get("logprobs"),
                        **_hit_fields(ChatResponse))


def completion_to_dict(response: CompletionResponse) -> dict[str, Any]:
    return {"text": response.text, "usage": response.usage.to_dict(), "model": response.model}


def completion_from_dict(data: dict[str, Any]) -> CompletionResponse:
    return CompletionResponse(text=data["text"], usage=Usage.parse(data.get("usage")),
                              model=data.get("model"), **_hit_fields(CompletionResponse))


def embedding_to_dict(response: EmbeddingResponse) -> dict[str, Any]:
    return {"embeddings": response.embeddings, "usage": response.usage.to_dict(),
            "model": response.model}


def embedding_from_dict(data: dict[str, Any]) -> EmbeddingResponse:
    return EmbeddingResponse(embeddings=data["embeddings"], usage=Usage.parse(data.get("usage")),
                             model=data.get("model"), **_hit_fields(EmbeddingResponse))


def stream_to_dict(chunks: list[str], usage: Usage | None) -> dict[str, Any]:
    """A streamed chat as a chat entry that also keeps the chunks and whether the stream ended
    with a ``Usage`` item (the model name is not known from a stream)."""
    return {"message": {"role": "assistant", "content": "".join(chunks)},
            "usage": (usage or Usage()).to_dict(), "model": None, "chunks": chunks,
            "stream_usage": usage is not None}


def stream_items(data: dict[str, Any]) -> list[str | Usage]:
    """What ``chat_stream`` replays for a stored chat entry.

    A recorded stream gives its chunks, then its ``Usage`` item if it had one. A non-streamed
    chat gives its whole text as one chunk, then its usage (so token accounting matches).
    """
    if isinstance(data.get("chunks"), list):
        items: list[str | Usage] = [str(chunk) for chunk in data["chunks"]]
        if data.get("stream_usage"):
            items.append(Usage.parse(data.get("usage")))
        return items
    content = (data.get("message") or {}).get("content")
    text: list[str | Usage] = [content] if isinstance(content, str) and content else []
    return [*text, Usage.parse(data.get("usage"))]


# -------------------------------------------------------------------------------------- model

@dataclass(frozen=True, slots=True)
class CachingModelStats:
    """Counters of one :class:`CachingModel`.

    ``calls`` counts every call made to it, ``hits``/``misses`` the cache look-ups and their
    outcome, ``inner_calls`` the calls forwarded to the wrapped model.
    """

    calls: int = 0
    hits: int = 0
    misses: int = 0
    inner_calls: int = 0

    def to_dict(self) -> dict[str, int]:
        return asdict(self)


R = TypeVar("R")


class CachingModel:
    """A :class:`~pfkit.providers.ChatModel` answering from a :class:`ResponseCache`.

    ``mode`` is one of :data:`CACHE_MODES`. Sampled requests (temperature > 0 without ``seed``)
    bypass the cache in ``read_write`` unless ``cache_nondeterministic`` is set; ``record`` and
    ``replay`` always cache them, since the user asked for it explicitly.
    """

    def __init__(self, inner: ChatModel, cache: ResponseCache | None, mode: str, *,
                 cache_nondeterministic: bool = False) -> None:
        self.mode = _check_mode(mode, "CachingModel")
        if cache is None and self.mode != "off":
            raise ValueError(f"cache mode {self.mode!r} needs a ResponseCache")
        self.inner = inner
        self.cache = cache
        self.cache_nondeterministic = cache_nondeterministic
        self._lock = threading.Lock()
        self._stats = CachingModelStats()

    @property
    def api_style(self) -> str:
        return self.inner.api_style

    @property
    def identity(self) -> dict[str, Any]:
        return self.inner.identity

    def __getattr__(self, name: str) -> Any:  # connection_type, limiter ... of the inner model
        if name in ("inner", "cache", "mode"):  # not set yet (copy, pickle)
            raise AttributeError(name)
        return getattr(self.inner, name)

    @property
    def stats(self) -> CachingModelStats:
        """A snapshot of this wrapper's calls, hits, misses and inner calls."""
        with self._lock:
            return self._stats

    # -- the ChatModel interface

    async def chat(self, request: dict[str, Any]) -> ChatResponse:
        return await self._call("chat", request, self.inner.chat, chat_to_dict, chat_from_dict)

    async def complete(self, request: dict[str, Any]) -> CompletionResponse:
        return await self._call("completion", request, self.inner.complete,
                                completion_to_dict, completion_from_dict)

    async def embed(self, request: dict[str, Any]) -> EmbeddingResponse:
        return await self._call("embedding", request, self.inner.embed,
                                embedding_to_dict, embedding_from_dict)

    async def chat_stream(self, request: dict[str, Any]) -> AsyncIterator[str | Usage]:
        """Stream content deltas (and the inner model's final ``Usage`` item, if any); a hit
        replays them. A miss is stored only once the inner stream completed (not when it failed
        or the consumer stopped early)."""
        self._count(calls=1)
        key = self._key_for("chat", request)
        if key is not None and self.mode != "record":
            stored = self._lookup(key, "chat", request)
            if stored is not None:
                note_cache_hit()
                for item in stream_items(stored):
                    yield item
                return
        self._count(inner_calls=1)
        chunks: list[str] = []
        usage: Usage | None = None
        stream = self.inner.chat_stream(request)
        try:
            async for item in stream:
                if isinstance(item, Usage):
                    usage = item
                else:
                    chunks.append(item)
                yield item
        finally:
            aclose = getattr(stream, "aclose", None)
            if aclose is not None:  # stop the inner stream now if our consumer stopped early
                await aclose()
        if key is not None:
            self._store(key, "chat", request, stream_to_dict(chunks, usage))

    # -- internals

    async def _call(self, kind: str, request: dict[str, Any],
                    call: Callable[[dict[str, Any]], Awaitable[R]],
                    to_dict: Callable[[R], dict[str, Any]],
                    from_dict: Callable[[dict[str, Any]], R]) -> R:
        self._count(calls=1)
        key = self._key_for(kind, request)
        if key is not None and self.mode != "record":
            stored = self._lookup(key, kind, request)
            if stored is not None:
                return from_dict(stored)
        self._count(inner_calls=1)
        response = await call(request)
        if key is not None:
            self._store(key, kind, request, to_dict(response))
        return response

    def _key_for(self, kind: str, request: dict[str, Any]) -> str | None:
        """The cache key, or None when this call goes straight to the inner model."""
        if self.mode == "off":
            return None
        if (self.mode == "read_write" and not self.cache_nondeterministic
                and is_nondeterministic(kind, request)):
            return None
        return cache_key(self.identity, kind, request)

    def _lookup(self, key: str, kind: str, request: dict[str, Any]) -> dict[str, Any] | None:
        """The stored response, or None on a read_write miss; raises on a replay miss."""
        assert self.cache is not None
        stored = self.cache.get(key)
        if stored is not None:
            self._count(hits=1)
            return stored
        self._count(misses=1)
        if self.mode == "replay":
            self.cache.note_replay_miss()
            raise ReplayMissError.for_call(self.identity, kind, key, request)
        return None

    def _store(self, key: str, kind: str, request: dict[str, Any],
               response: dict[str, Any]) -> None:
        assert self.cache is not None
        self.cache.put(key, kind, self.identity, request, response)

    def _count(self, **deltas: int) -> None:
        with self._lock:
            current = asdict(self._stats)
            self._stats = CachingModelStats(
                **{k: v + deltas.get(k, 0) for k, v in current.items()})

    def __repr__(self) -> str:
        return f"CachingModel({self.inner!r}, mode={self.mode!r})"
