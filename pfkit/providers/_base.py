"""The model interface every llm node, evaluator and user call goes through.

Requests are plain dicts shaped exactly like the OpenAI wire body (``model``, ``messages`` or
``prompt``, ``temperature`` ...), so every provider, the cache and the test server see one form.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable


@dataclass(frozen=True, slots=True)
class Usage:
    prompt_tokens: int = 0
    completion_tokens: int = 0
    total_tokens: int = 0

    def __add__(self, other: Usage) -> Usage:
        return Usage(self.prompt_tokens + other.prompt_tokens,
                     self.completion_tokens + other.completion_tokens,
                     self.total_tokens + other.total_tokens)

    def to_dict(self) -> dict[str, int]:
        return {"prompt_tokens": self.prompt_tokens, "completion_tokens": self.completion_tokens,
                "total_tokens": self.total_tokens}

    @classmethod
    def parse(cls, raw: Any) -> Usage:
        """The one usage reader: a response's JSON ``usage`` (a dict), an object with the same
        attributes (a stream chunk's), a Usage, or None. A missing total is the sum."""
        if raw is None:
            return cls()
        if isinstance(raw, Usage):
            return raw
        get = raw.get if isinstance(raw, dict) else (lambda k: getattr(raw, k, None))

        def number(key: str) -> int:
            value = get(key)
            try:
                return int(value or 0)
            except (TypeError, ValueError):
                return 0

        prompt, completion = number("prompt_tokens"), number("completion_tokens")
        return cls(prompt, completion, number("total_tokens") or prompt + completion)


@dataclass(frozen=True, slots=True)
class ChatResponse:
    message: dict[str, Any]
    usage: Usage = field(default_factory=Usage)
    model: str | None = None
    cached: bool = field(default=False, compare=False)  # served from the response cache
    logprobs: Any = None  # the first choice's ``logprobs`` when the request asked for them


@dataclass(frozen=True, slots=True)
class CompletionResponse:
    text: str
    usage: Usage = field(default_factory=Usage)
    model: str | None = None
    cached: bool = field(default=False, compare=False)


@dataclass(frozen=True, slots=True)
class EmbeddingResponse:
    embeddings: list[list[float]]
    usage: Usage = field(default_factory=Usage)
    model: str | None = None
    cached: bool = field(default=False, compare=False)


@runtime_checkable
class ChatModel(Protocol):
    """A chat/completion/embedding model.

    * ``api_style`` picks the llm-node parameter table: ``"openai"`` (``model``) or
      ``"azure_openai"`` (``deployment_name``, ``n``).
    * ``identity`` is a stable, secret-free description of the endpoint (provider kind, base URL,
      deployment) used in cache keys, logs and errors.
    * Requests are OpenAI wire bodies; ``chat_stream`` yields content deltas (str) for a request
      with ``stream: true`` and may end with one :class:`Usage` item for the whole stream.
    """

    api_style: str
    identity: dict[str, Any]

    async def chat(self, request: dict[str, Any]) -> ChatResponse: ...

    async def complete(self, request: dict[str, Any]) -> CompletionResponse: ...

    def chat_stream(self, request: dict[str, Any]) -> AsyncIterator[str | Usage]: ...

    async def embed(self, request: dict[str, Any]) -> EmbeddingResponse: ...
