"""OpenAI, Azure OpenAI and every OpenAI-compatible server (Ollama, vLLM, llama.cpp server,
LM Studio). Requests go through a transport (``_http``): aiohttp directly by default, or the
official ``openai`` client with ``PFKIT_OPENAI_TRANSPORT=openai``; the model does the rest.

pfkit does its own retries (the client's are off): exponential backoff with jitter on 429, 5xx,
timeouts and connection errors, honouring ``Retry-After``; never on other 4xx. Failures become
one clear :class:`ProviderError` naming the connection and endpoint, with secrets scrubbed.

A server that cannot be reached at all (connection refused, unknown host) is retried twice,
quickly (0.25 s, 0.5 s), then reported, and for the next few seconds calls to it are not
retried at all; timeouts, 429 and 5xx keep the full backoff. A chat
stream must end with a ``finish_reason``: one that ends early or breaks off is a failed call,
retried only while nothing of it has been passed on.

A transport (and its connection pool) belongs to one event loop, so a model keeps one per loop
it is used on; its limits are shared by all of them (see ``_limits``).
"""

from __future__ import annotations

import array
import asyncio
import base64
import random
import re
import sys
import time
import weakref
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

from .. import _secrets
from ..errors import ExecutionError, UserError
from ._base import ChatResponse, CompletionResponse, EmbeddingResponse, Usage
from ._http import (
    TRANSPORT_ENV,
    TRANSPORTS,
    AiohttpTransport,
    ConnectFailure,
    Endpoint,
    HttpFailure,
    MalformedFailure,
    OpenAIClientTransport,
    RequestFailure,
    TimeoutFailure,
    chosen_transport,
    prefetch_aiohttp,
)
from ._limits import Limiter, Limits, estimate_tokens
from ._observed import note_retry


@dataclass(frozen=True, slots=True)
class ProviderOptions:
    timeout: float = 600.0
    max_retries: int = 8
    backoff_base: float = 1.0
    backoff_max: float = 60.0


class ProviderError(ExecutionError):
    """A model call failed for good (after any retries)."""

    default_code = "ProviderError"


class ProviderUserError(UserError):
    """A model call failed because of configuration the user can fix (key, URL, model name)."""

    default_code = "ProviderError"


_KEY_PATTERN = re.compile(r"(sk-[A-Za-z0-9_\-*]{4,}|Bearer\s+\S+)")


def scrub(text: str, secrets: tuple[str, ...] = ()) -> str:
    """``text`` without any registered secret (every connection's), the given ones, or
    anything shaped like an OpenAI key or a bearer token."""
    text = _secrets.scrub(str(text))
    for secret in secrets:
        if secret and len(secret) >= 4:
            text = text.replace(secret, "******")
    return _KEY_PATTERN.sub("******", text)


def _retry_after(failure: HttpFailure | None) -> float | None:
    headers = getattr(failure, "headers", None)
    if not headers:
        return None
    value = headers.get("retry-after-ms")
    if value:
        try:
            return float(value) / 1000.0
        except ValueError:
            pass
    value = headers.get("retry-after")
    if value:
        try:
            return float(value)
        except ValueError:
            from email.utils import parsedate_to_datetime

            try:
                return max(0.0, parsedate_to_datetime(value).timestamp() - time.time())
            except (TypeError, ValueError):
                return None
    return None


# A server that cannot be reached is retried quickly, twice, then reported (not for minutes).
UNREACHABLE_RETRIES = 2
UNREACHABLE_DELAY = 0.25  # seconds, doubled per retry
UNREACHABLE_MEMORY = 5.0  # seconds after such a failure during which calls are not retried


class _IncompleteStream(Exception):
    """A chat stream ended (or broke) before its last choice had a finish_reason."""


# The keys openai's ChatCompletionMessage.model_dump() gives, so a message from the wire has the
# same shape promptflow returns for tool calls.
_MESSAGE_FIELDS = {"content": None, "refusal": None, "role": "assistant", "annotations": None,
                   "audio": None, "function_call": None, "tool_calls": None}


def _drop_empty(request: dict[str, Any]) -> dict[str, Any]:
    """Empty values are not sent: None, and empty logit_bias/user."""
    return {k: v for k, v in request.items()
            if v is not None and not (k in ("logit_bias", "user") and not v)}


# Transports opened on each loop (held here, not by their models, which may be gone by the time
# the loop ends), so they can be closed before the loop closes.
_OPEN: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


# One suspended async generator per loop whose transports are open: ``asyncio.run`` (and
# uvicorn, and any loop that calls ``shutdown_asyncgens``) closes it as the loop ends, and its
# ``finally`` closes that loop's transports, so nothing is left for the garbage collector to
# report as an unclosed session.
_CLOSERS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


async def _closer() -> AsyncIterator[None]:
    try:
        yield
    finally:
        await close_loop_clients()


async def _close_at_loop_end(loop: asyncio.AbstractEventLoop) -> None:
    closer = _closer()
    await closer.__anext__()
    _CLOSERS[loop] = closer


async def close_loop_clients() -> None:
    """Close the transports opened on the running loop (before the loop ends, so connections
    are shut down cleanly). ``pfkit._aio.run_sync`` calls this."""
    for transport in _OPEN.pop(asyncio.get_running_loop(), []):
        try:
            await transport.close()
        except Exception:  # noqa: BLE001 - closing is best effort
            pass


class OpenAICompatibleModel:
    """A ChatModel over an OpenAI-compatible HTTP API.

    ``kind`` is ``"openai"`` (any OpenAI-compatible base URL) or ``"azure_openai"`` (an Azure
    endpoint with ``api_version``; the llm node's ``deployment_name`` is the model)."""

    def __init__(self, *, kind: str, api_key: str | None, base_url: str | None = None,
                 api_version: str | None = None, organization: str | None = None,
                 connection: str = "", options: ProviderOptions | None = None,
                 limits: Limits | None = None, connection_type: str | None = None,
                 transport: str | None = None) -> None:
        self.kind = kind
        self.connection_type = connection_type  # open_ai, azure_open_ai, serverless
        self.api_style = "azure_openai" if kind == "azure_openai" else "openai"
        self.connection = connection
        self.base_url = (base_url or "").rstrip("/") or None
        self._api_key = api_key or ""
        self._api_version = api_version
        self._organization = organization
        self.options = options or ProviderOptions()
        self.limiter = Limiter(limits or Limits())
        # Cache keys use this: the connection's name, not its URL, so a cassette recorded on one
        # machine replays on another where the connection points elsewhere (or does not exist).
        self.identity = {"provider": kind, "connection": connection}
        self._endpoint = Endpoint(kind=kind, base_url=self.base_url, api_key=self._api_key,
                                  api_version=api_version, organization=organization)
        self.transport = transport or chosen_transport()
        if self.transport not in TRANSPORTS:
            raise UserError(f"unknown OpenAI transport '{self.transport}'",
                            hint=f"Use one of: {', '.join(TRANSPORTS)} ({TRANSPORT_ENV}).")
        if self.transport == "aiohttp":
            prefetch_aiohttp()
        self._clients: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
        self.retries = 0
        self._down_until = 0.0  # monotonic time until which the server counts as unreachable

    def __repr__(self) -> str:
        return f"OpenAICompatibleModel(kind={self.kind!r}, base_url={self.base_url!r}, connection={self.connection!r})"

    # -- client -----------------------------------------------------------------------------

    async def _client(self) -> Any:
        """This loop's transport, opened on first use."""
        loop = asyncio.get_running_loop()
        client = self._clients.get(loop)
        if client is None or client.closed:
            if self.transport == "openai":
                client = OpenAIClientTransport(
                    self.options.timeout, kind=self.kind, api_key=self._api_key,
                    base_url=self.base_url, api_version=self._api_version,
                    organization=self._organization)
            else:
                client = AiohttpTransport(self._endpoint, self.options.timeout)
            self._clients[loop] = client
            _OPEN.setdefault(loop, []).append(client)
            if loop not in _CLOSERS:
                await _close_at_loop_end(loop)
        return client

    @property
    def where(self) -> str:
        return f"connection '{self.connection}' ({self.base_url or 'api.openai.com'})"

    # -- calls ------------------------------------------------------------------------------

    async def _call(self, kind: str, request: dict[str, Any], make: Any) -> Any:
        attempt = 0
        started = time.monotonic()
        tokens = estimate_tokens(request) if self.limiter.windowed else 0
        while True:
            try:
                async with self.limiter.slot(tokens) as slot:
                    result = await make(await self._client())
                    if slot is not None:
                        raw = result.get("usage") if isinstance(result, dict) else None
                        if raw is not None:
                            self.limiter.settle(slot, Usage.parse(raw).total_tokens)
                    return result
            except MalformedFailure as failure:
                raise ProviderError(f"{self.where}: malformed response to a {kind} request: "
                                    f"{scrub(str(failure), (self._api_key,))}",
                                    code="MalformedResponse",
                                    hint="Check that the base URL points at an OpenAI-compatible API.") from None
            except HttpFailure as failure:
                if not failure.retryable:
                    raise self._error(failure, request) from None
                unreachable = getattr(failure, "unreachable", None)
                if unreachable is not None:
                    # just found down: later calls try once, not three times (a batch against
                    # a stopped server fails in seconds, not minutes)
                    quick = 0 if time.monotonic() < self._down_until else UNREACHABLE_RETRIES
                    if attempt >= min(quick, self.options.max_retries):
                        self._down_until = time.monotonic() + UNREACHABLE_MEMORY
                        raise self._error(failure, request, attempts=attempt + 1,
                                          elapsed=time.monotonic() - started) from None
                    delay = UNREACHABLE_DELAY * 2 ** attempt
                else:
                    if attempt >= self.options.max_retries:
                        raise self._error(failure, request, attempts=attempt + 1) from None
                    delay = self._backoff(failure, attempt)
                attempt += 1
                self.retries += 1
                note_retry()
                await asyncio.sleep(delay)

    def _backoff(self, exc: Any, attempt: int) -> float:
        delay = _retry_after(exc) if exc is not None else None
        if delay is None:
            delay = min(self.options.backoff_max, self.options.backoff_base * 2 ** attempt)
            delay *= 0.5 + random.random() / 2  # jitter
        return min(delay, self.options.backoff_max)

    def _error(self, failure: HttpFailure, request: dict[str, Any], attempts: int = 1,
               elapsed: float | None = None):
        model = request.get("model")
        text = scrub(str(failure), (self._api_key,))
        retried = f" after {attempts} attempts" if attempts > 1 else ""
        if isinstance(failure, TimeoutFailure):
            return ProviderError(f"{self.where}: no answer within {self.options.timeout:g} s"
                                 f"{retried}", code="ProviderTimeout",
                                 hint="Raise the connection's timeout, or check the server.")
        if isinstance(failure, ConnectFailure):
            if elapsed is not None:
                retried += f" in {elapsed:.1f} s"
            return ProviderError(f"{self.where}: cannot connect{retried}: {text}",
                                 code="ProviderConnectionError",
                                 hint="Check the base URL and that the server is running.")
        if isinstance(failure, RequestFailure):
            return ProviderUserError(f"{self.where}: {text}", code="ProviderBadRequest",
                                     hint="Check the node's inputs: NaN, Infinity and objects "
                                          "that are not JSON cannot be sent to a model.")
        status = getattr(failure, "status", 0)
        if status == 401:
            return ProviderUserError(f"{self.where}: the API key was rejected (401): {text}",
                                     code="ProviderAuthenticationError",
                                     hint="Check the connection's api_key (or the env var it names).")
        if status == 403:
            return ProviderUserError(f"{self.where}: access denied (403): {text}",
                                     code="ProviderPermissionError")
        if status == 404:
            return ProviderUserError(
                f"{self.where}: model or deployment '{model}' not found (404): {text}",
                code="ModelNotFound",
                hint="Check the node's model / deployment_name and the connection's base URL.")
        if status == 400:
            code = getattr(failure, "code", None) or ""
            if code == "context_length_exceeded" or "context length" in text.lower() \
                    or "maximum context" in text.lower():
                return ProviderUserError(
                    f"{self.where}: the prompt is too long for model '{model}' (400): {text}",
                    code="ContextLengthExceeded",
                    hint="Shorten the prompt or the chat history, or lower max_tokens.")
            return ProviderUserError(f"{self.where}: the request was rejected (400): {text}",
                                     code="ProviderBadRequest")
        if status == 429:
            return ProviderError(f"{self.where}: rate limited (429){retried}: {text}",
                                 code="RateLimited",
                                 hint="Lower the concurrency or set requests_per_minute / "
                                      "tokens_per_minute on the connection.")
        return ProviderError(f"{self.where}: server error ({status or '?'}){retried}: {text}",
                             code="ProviderServerError")

    async def _post(self, kind: str, path: str, body: dict[str, Any]) -> dict[str, Any]:
        """The response as plain JSON (no model objects built)."""
        result = await self._call(kind, body, lambda c: c.post(path, body))
        if not isinstance(result, dict):
            raise ProviderError(f"{self.where}: the response is not a JSON object",
                                code="MalformedResponse")
        return result

    def _first_choice(self, result: dict[str, Any]) -> dict[str, Any]:
        choices = result.get("choices")
        if not choices or not isinstance(choices[0], dict):
            raise ProviderError(f"{self.where}: the response has no choices",
                                code="MalformedResponse",
                                hint="Check that the base URL points at an OpenAI-compatible API.")
        return choices[0]

    async def chat(self, request: dict[str, Any]) -> ChatResponse:
        body = _drop_empty({k: v for k, v in request.items() if k != "stream"})
        result = await self._post("chat", "/chat/completions", body)
        choice = self._first_choice(result)
        message = {**_MESSAGE_FIELDS, **(choice.get("message") or {})}
        return ChatResponse(message=message, usage=Usage.parse(result.get("usage")),
                            model=result.get("model"),
                            logprobs=choice.get("logprobs") if body.get("logprobs") else None)

    async def complete(self, request: dict[str, Any]) -> CompletionResponse:
        body = _drop_empty({k: v for k, v in request.items() if k != "stream"})
        result = await self._post("completion", "/completions", body)
        return CompletionResponse(text=self._first_choice(result).get("text") or "",
                                  usage=Usage.parse(result.get("usage")), model=result.get("model"))

    async def chat_stream(self, request: dict[str, Any]) -> AsyncIterator[str | Usage]:
        """Content deltas, then one ``Usage`` item for the whole stream.

        A stream is complete only when its choice got a ``finish_reason``: one that ends
        without it, or breaks off, fails the call. It is retried (with backoff) only when no
        delta has been passed on yet; after that the error says how far it got."""
        body = _drop_empty({**request, "stream": True})
        if self.kind != "azure_openai":
            body.setdefault("stream_options", {"include_usage": True})
        attempt = 0
        while True:
            stream = await self._call("chat", body,
                                      lambda c: c.stream("/chat/completions", body))
            usage: Usage | None = None
            passed = 0
            finished = False
            try:
                try:
                    async for chunk in stream:
                        if chunk.get("usage"):
                            usage = Usage.parse(chunk["usage"])
                        choices = chunk.get("choices") or ()
                        for choice in choices:
                            if isinstance(choice, dict) and choice.get("finish_reason"):
                                finished = True
                        if choices and isinstance(choices[0], dict):
                            content = (choices[0].get("delta") or {}).get("content")
                            if content:
                                passed += 1
                                yield content
                    if not finished:
                        raise _IncompleteStream("the stream ended without a finish_reason")
                except (_IncompleteStream, Exception) as exc:  # noqa: BLE001 - transport errors
                    if isinstance(exc, ProviderError):
                        raise
                    cause = exc.__cause__ if isinstance(exc, HttpFailure) and exc.__cause__ \
                        else exc
                    problem = (str(exc) if isinstance(exc, _IncompleteStream) else
                               f"the stream broke off ({type(cause).__name__}: "
                               f"{scrub(str(exc), (self._api_key,))})")
                    if passed == 0 and attempt < self.options.max_retries:
                        attempt += 1
                        self.retries += 1
                        note_retry()
                        await asyncio.sleep(self._backoff(None, attempt - 1))
                        continue
                    tried = f" after {attempt + 1} attempts" if attempt else ""
                    after = (f"; {passed} deltas had been passed on, so it was not retried"
                             if passed else "")
                    raise ProviderError(
                        f"{self.where}: incomplete chat stream{tried}: {problem}{after}",
                        code="IncompleteStream",
                        hint="The server or the network cut the answer short; check the server "
                             "and retry.") from None
            finally:
                try:
                    await stream.close()
                except Exception:  # noqa: BLE001 - closing is best effort
                    pass
            yield usage or Usage()
            return

    async def embed(self, request: dict[str, Any]) -> EmbeddingResponse:
        """As the openai client sends it: ``encoding_format: base64`` unless the request names
        one, decoded to the same float32 values the client returns."""
        asked = request.get("encoding_format")
        body = _drop_empty({**request, "encoding_format": asked or "base64"})
        result = await self._post("embedding", "/embeddings", body)
        try:
            data = sorted(result["data"], key=lambda d: d.get("index", 0))
            vectors = [_vector(item["embedding"]) for item in data]
        except (KeyError, TypeError, AttributeError, ValueError):
            raise ProviderError(f"{self.where}: the embeddings response has no data",
                                code="MalformedResponse") from None
        return EmbeddingResponse(vectors, Usage.parse(result.get("usage")), result.get("model"))


def _vector(value: Any) -> list[float]:
    """An embedding as floats: base64 of little-endian float32 (decoded as the openai client
    does), or already a list."""
    if isinstance(value, str):
        values = array.array("f", base64.b64decode(value))
        if sys.byteorder != "little":
            values.byteswap()
        return values.tolist()
    if isinstance(value, list):
        return value
    raise ValueError("not an embedding")
