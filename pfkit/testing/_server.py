"""An OpenAI-compatible HTTP server for tests, benchmarks and users' own test suites.

It speaks enough of the OpenAI (and Azure OpenAI) REST API for the official ``openai`` client to
work against it unchanged, answers from a pluggable *responder*, and can inject faults (rate
limits, server errors, hangs, malformed bodies, auth / model / context-length errors) on demand.
Standard library only: an ``asyncio`` streams HTTP/1.1 server with keep-alive and chunked
SSE streaming; latency is an ``asyncio.sleep``, so concurrent requests never wait for each other.

From synchronous code (the server runs its own event loop in a daemon thread)::

    from openai import OpenAI
    from pfkit.testing import TestServer

    with TestServer(latency=0.05) as server:
        client = OpenAI(base_url=server.base_url, api_key="test", max_retries=0)
        reply = client.chat.completions.create(model="gpt-4o-mini",
                                               messages=[{"role": "user", "content": "hi"}])
        assert server.counters.by_endpoint["chat.completions"] == 1
        server.set_faults(rate_limit_next=1, retry_after=0.01)   # the next call gets a 429

Inside a running event loop use ``async with TestServer() as server:``. Azure clients use
``azure_endpoint=server.url``; the deployment in the path becomes the model.

Responders are callables ``(kind, body) -> reply`` with ``kind`` ``"chat"`` or ``"completion"``
and ``body`` the parsed JSON request. A reply is a string (the content), a dict with
``content`` and/or ``tool_calls`` (and optionally ``finish_reason``), a :class:`Reply`, a
:class:`Fault` (returned or raised), or a list of those (one per choice when ``n`` > 1). They
may be ``async``. Built in: :func:`echo_responder` (the default; identical to
:class:`~pfkit.testing.EchoModel`), :class:`ScriptedResponder` and :class:`RuleResponder`.

Usage is counted in words: prompt tokens are the whitespace-separated words of all message
contents (or the prompt), completion tokens the words of the reply; each at least 1.
"""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import functools
import inspect
import ipaddress
import itertools
import json
import os
import random
import re
import signal
import struct
import subprocess
import sys
import threading
import time
import zlib
from collections import Counter, deque
from collections.abc import Callable, Collection, Iterable, Mapping
from dataclasses import dataclass, field
from http import HTTPStatus
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from ._echo import echo_chat_content, echo_completion_text, hash_embedding

Responder = Callable[[str, dict[str, Any]], Any]

__all__ = [
    "Counters",
    "Fault",
    "Faults",
    "RecordedRequest",
    "Reply",
    "Responder",
    "RuleResponder",
    "ScriptedResponder",
    "TestServer",
    "TestServerProcess",
    "echo_responder",
    "is_loopback_host",
]

MAX_HEADER_BYTES = 64 * 1024
MAX_BODY_BYTES = 64 * 1024 * 1024
DEFAULT_MODELS = ("gpt-4o-mini", "gpt-4o", "gpt-35-turbo-instruct", "text-embedding-3-small")


# -- replies and faults ------------------------------------------------------------------------


@dataclass(frozen=True)
class Reply:
    """One answer: text ``content`` and/or OpenAI-shaped ``tool_calls``."""

    content: str | None = None
    tool_calls: tuple[dict[str, Any], ...] = ()
    finish_reason: str | None = None

    @property
    def text(self) -> str:
        return self.content or ""


class Fault(Exception):
    """An error the server answers with instead of a reply.

    Build one with :meth:`error`, :meth:`rate_limit`, :meth:`hang` or :meth:`malformed`;
    a responder may return it or raise it. ``kind`` is ``"status"`` (an HTTP error with an
    OpenAI-shaped body), ``"hang"`` (sleep ``seconds``, then drop the connection) or
    ``"malformed"`` (200 with a truncated JSON body).
    """

    def __init__(self, kind: str = "status", *, status: int = 500, message: str | None = None,
                 type: str | None = None, code: str | None = None, param: str | None = None,
                 retry_after: float | None = None, seconds: float = 30.0) -> None:
        if kind not in ("status", "hang", "malformed"):
            raise ValueError(f"unknown fault kind {kind!r}")
        default_type, default_code, default_message = _error_defaults(status)
        super().__init__(message or default_message)
        self.kind = kind
        self.status = status
        self.message = message or default_message
        self.type = type or default_type
        self.code = code if code is not None else default_code
        self.param = param
        self.retry_after = retry_after
        self.seconds = seconds

    def __repr__(self) -> str:
        if self.kind == "status":
            return f"Fault.error({self.status}, code={self.code!r})"
        return f"Fault.{self.kind}()" if self.kind == "malformed" else f"Fault.hang({self.seconds})"

    @classmethod
    def error(cls, status: int = 500, message: str | None = None, *, code: str | None = None,
              type: str | None = None, param: str | None = None) -> Fault:
        """An HTTP error response (4xx/5xx) in OpenAI's error shape."""
        return cls("status", status=status, message=message, code=code, type=type, param=param)

    @classmethod
    def rate_limit(cls, retry_after: float | None = 1.0, message: str | None = None) -> Fault:
        """A 429 with a ``Retry-After`` header (seconds; ``None`` for no header)."""
        return cls("status", status=429, message=message, retry_after=retry_after)

    @classmethod
    def hang(cls, seconds: float = 30.0) -> Fault:
        """Sleep ``seconds`` (make it longer than the client's timeout), then close."""
        return cls("hang", seconds=seconds)

    @classmethod
    def malformed(cls) -> Fault:
        """A 200 response whose body is not valid JSON."""
        return cls("malformed", status=200)

    @classmethod
    def from_config(cls, data: Mapping[str, Any]) -> Fault:
        """``{"status": 503}``, ``{"status": 429, "retry_after": 2}``, ``{"hang": 30}`` or
        ``{"malformed": true}`` (the form used in rules files)."""
        if "hang" in data:
            return cls.hang(float(data["hang"]))
        if data.get("malformed"):
            return cls.malformed()
        status = int(data.get("status", 500))
        if status == 429:
            return cls.rate_limit(data.get("retry_after", 1.0), data.get("message"))
        return cls.error(status, data.get("message"), code=data.get("code"), type=data.get("type"))

    def body(self) -> dict[str, Any]:
        return _error_body(self.message, self.type, self.code, self.param)


_ERROR_DEFAULTS: dict[int, tuple[str, str | None, str]] = {
    400: ("invalid_request_error", None, "Bad request."),
    401: ("invalid_request_error", "invalid_api_key", "Incorrect API key provided."),
    403: ("invalid_request_error", "permission_denied", "You are not allowed to do this."),
    404: ("invalid_request_error", "not_found", "Not found."),
    408: ("timeout", "timeout", "Request timed out."),
    409: ("invalid_request_error", "conflict", "Conflict."),
    429: ("requests", "rate_limit_exceeded",
          "Rate limit reached for requests. Please try again later."),
    500: ("server_error", "internal_server_error",
          "The server had an error while processing your request. Sorry about that!"),
    502: ("server_error", "bad_gateway", "Bad gateway."),
    503: ("server_error", "service_unavailable",
          "The engine is currently overloaded, please try again later."),
    504: ("server_error", "gateway_timeout", "Gateway timeout."),
}


def _error_defaults(status: int) -> tuple[str, str | None, str]:
    if status in _ERROR_DEFAULTS:
        return _ERROR_DEFAULTS[status]
    kind = "server_error" if status >= 500 else "invalid_request_error"
    try:
        phrase = HTTPStatus(status).phrase
    except ValueError:
        phrase = "Error"
    return kind, None, f"{phrase}."


def _error_body(message: str, type_: str, code: str | None, param: str | None = None
                ) -> dict[str, Any]:
    return {"error": {"message": message, "type": type_, "param": param, "code": code}}


def _to_reply(value: Any) -> Reply:
    """Normalise one responder answer (not a list, not a fault) to a :class:`Reply`."""
    if isinstance(value, Reply):
        return value
    if value is None:
        return Reply(content="")
    if isinstance(value, str):
        return Reply(content=value)
    if isinstance(value, Mapping):
        calls = tuple(_tool_call(spec) for spec in value.get("tool_calls") or ())
        content = value.get("content")
        return Reply(content=None if content is None and calls else str(content or ""),
                     tool_calls=calls, finish_reason=value.get("finish_reason"))
    raise TypeError(f"a responder returned {type(value).__name__}; expected str, dict or Reply")


def _tool_call(spec: Mapping[str, Any]) -> dict[str, Any]:
    """``{"name", "arguments"[, "id"]}`` or OpenAI's ``{"id", "type", "function": {...}}``."""
    function = spec.get("function", spec)
    arguments = function.get("arguments", {})
    if not isinstance(arguments, str):
        arguments = json.dumps(arguments, ensure_ascii=False)
    call_id = spec.get("id") or f"call_{zlib.crc32(repr(spec).encode()):08x}"
    return {"id": call_id, "type": "function",
            "function": {"name": function["name"], "arguments": arguments}}


# -- responders --------------------------------------------------------------------------------


def echo_responder(kind: str, body: dict[str, Any]) -> str:
    """The default: answer with the request itself, exactly as :class:`EchoModel` does."""
    return echo_chat_content(body) if kind == "chat" else echo_completion_text(body)


class ScriptedResponder:
    """Replies from a queue, in order: ``ScriptedResponder(["first", {"tool_calls": [...]},
    Fault.rate_limit(), "after the retry"])``.

    When the queue is empty it asks ``default`` (if given) or answers with a 500 whose message
    says the script ran out. ``add()`` appends more replies, also from another thread.
    """

    def __init__(self, replies: Iterable[Any] = (), *, default: Responder | None = None) -> None:
        self._replies: deque[Any] = deque(replies)
        self.default = default

    def add(self, *replies: Any) -> None:
        self._replies.extend(replies)

    @property
    def remaining(self) -> int:
        return len(self._replies)

    def __call__(self, kind: str, body: dict[str, Any]) -> Any:
        try:
            return self._replies.popleft()
        except IndexError:
            if self.default is not None:
                return self.default(kind, body)
            return Fault.error(500, "ScriptedResponder has no replies left", code="script_exhausted")


class RuleResponder:
    """The first rule whose regex matches (``re.search``) the last user message (chat) or the
    prompt (completion) gives the reply; otherwise ``default`` answers (echo by default).

    ``RuleResponder([(r"weather", "Sunny."), (r"(?i)^call", {"tool_calls": [...]})])``.
    A rule's reply is anything a responder may return, or a callable ``(kind, body)``.
    """

    def __init__(self, rules: Iterable[tuple[str | re.Pattern[str], Any]] = (), *,
                 default: Any = echo_responder) -> None:
        self.rules = [(re.compile(pattern), reply) for pattern, reply in rules]
        self.default = default

    @classmethod
    def from_config(cls, data: Any) -> RuleResponder:
        """Build from parsed JSON/YAML: a list of rules, or ``{"rules": [...], "default": ...}``.
        A rule is ``{"pattern": REGEX, "reply": TEXT_OR_DICT}`` or ``{"pattern", "fault":
        {"status": 503}}``; without ``default`` unmatched requests are echoed."""
        if isinstance(data, list):
            data = {"rules": data}
        if not isinstance(data, Mapping):
            raise ValueError("rules must be a list of rules or a mapping with 'rules'")
        rules = [_rule_from_config(rule, i) for i, rule in enumerate(data.get("rules") or [])]
        default = _reply_from_config(data["default"]) if "default" in data else echo_responder
        return cls(rules, default=default)

    def __call__(self, kind: str, body: dict[str, Any]) -> Any:
        text = _last_user_text(body) if kind == "chat" else _prompt_text(body.get("prompt"))
        for pattern, reply in self.rules:
            if pattern.search(text):
                return reply(kind, body) if callable(reply) else reply
        return self.default(kind, body) if callable(self.default) else self.default


def _rule_from_config(rule: Any, index: int) -> tuple[str, Any]:
    if not isinstance(rule, Mapping) or "pattern" not in rule:
        raise ValueError(f"rule {index + 1} needs a 'pattern'")
    pattern = str(rule["pattern"])
    try:
        re.compile(pattern)
    except re.error as exc:
        raise ValueError(f"rule {index + 1}: bad pattern {pattern!r}: {exc}") from None
    if "fault" in rule:
        return pattern, Fault.from_config(rule["fault"])
    if "reply" not in rule:
        raise ValueError(f"rule {index + 1} needs a 'reply' or a 'fault'")
    return pattern, _reply_from_config(rule["reply"])


def _reply_from_config(reply: Any) -> Any:
    if isinstance(reply, Mapping) and "fault" in reply:
        return Fault.from_config(reply["fault"])
    return reply


# -- request text and usage --------------------------------------------------------------------


def _content_text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return " ".join(part.get("text", "") for part in content
                        if isinstance(part, Mapping) and isinstance(part.get("text"), str))
    return ""


def _last_user_text(body: Mapping[str, Any]) -> str:
    for message in reversed(body.get("messages") or []):
        if isinstance(message, Mapping) and message.get("role") == "user":
            return _content_text(message.get("content"))
    return ""


def _prompt_text(prompt: Any) -> str:
    if isinstance(prompt, list):
        return " ".join(item if isinstance(item, str) else str(item) for item in prompt)
    return prompt if isinstance(prompt, str) else ""


def _prompt_words(kind: str, body: Mapping[str, Any]) -> int:
    if kind == "chat":
        texts = [_content_text(m.get("content")) for m in body.get("messages") or []
                 if isinstance(m, Mapping)]
        return sum(len(text.split()) for text in texts)
    if kind == "embeddings":
        return sum(len(text.split()) for text in _embedding_inputs(body.get("input")))
    return len(_prompt_text(body.get("prompt")).split())


def _reply_words(reply: Reply) -> int:
    words = len(reply.text.split())
    for call in reply.tool_calls:
        words += len(call["function"]["name"].split()) + len(call["function"]["arguments"].split())
    return words


def _usage(prompt_words: int, completion_words: int) -> dict[str, int]:
    prompt, completion = max(1, prompt_words), max(1, completion_words)
    return {"prompt_tokens": prompt, "completion_tokens": completion,
            "total_tokens": prompt + completion}


def _embedding_inputs(value: Any) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, list) and value and all(isinstance(v, int) for v in value):
        return [str(value)]  # one input given as token ids
    if isinstance(value, list):
        return [v if isinstance(v, str) else str(v) for v in value]
    return []


# -- logprobs ----------------------------------------------------------------------------------

_TOKEN_RE = re.compile(r"\s*\S+|\s+")


def _tokens(text: str) -> list[str]:
    return _TOKEN_RE.findall(text)


def _logprob(token: str) -> float:
    """A deterministic, plausible log-probability in (-2, 0]."""
    return -round((zlib.crc32(token.encode("utf-8")) % 2000) / 1000.0, 4)


def _alternatives(token: str, count: int) -> list[tuple[str, float]]:
    best = _logprob(token)
    return [(token, best)] + [(f"{token}#{i}", round(best - i, 4)) for i in range(1, count)]


def _chat_logprobs(text: str, top: int) -> dict[str, Any]:
    entries = []
    for token in _tokens(text):
        top_entries = [{"token": t, "logprob": lp, "bytes": list(t.encode("utf-8"))}
                       for t, lp in _alternatives(token, top)] if top else []
        entries.append({"token": token, "logprob": _logprob(token),
                        "bytes": list(token.encode("utf-8")), "top_logprobs": top_entries})
    return {"content": entries, "refusal": None}


def _completion_logprobs(text: str, top: int, offset: int = 0) -> dict[str, Any]:
    tokens = _tokens(text)
    offsets, position = [], offset
    for token in tokens:
        offsets.append(position)
        position += len(token)
    return {"tokens": tokens, "token_logprobs": [_logprob(t) for t in tokens],
            "top_logprobs": [dict(_alternatives(t, max(1, top))) for t in tokens],
            "text_offset": offsets}


def _wants_chat_logprobs(body: Mapping[str, Any]) -> bool:
    return bool(body.get("logprobs"))


def _wants_completion_logprobs(body: Mapping[str, Any]) -> bool:
    value = body.get("logprobs")
    return value is not None and value is not False


# -- faults configuration, counters and the request log ----------------------------------------


@dataclass
class Faults:
    """What to inject. ``*_next`` counters apply to the next N model requests (chat,
    completions, embeddings) and count down; checked in the order listed. Requests rejected
    before that (401, 404 model, 400 bad or too long request) do not use them up.

    * ``rate_limit_next``: 429 with ``Retry-After: retry_after`` (seconds).
    * ``error_next``: ``error_status`` (500, 502, 503, ...).
    * ``hang_next``: sleep ``hang_seconds`` and drop the connection (a client timeout).
    * ``malformed_next``: 200 with a body that is not valid JSON.
    * ``fail_rate``: ``{status: probability}`` drawn per request (``{429: 0.1, 503: 0.05}``).
    * ``expected_api_key``: 401 unless ``Authorization: Bearer KEY`` or ``api-key: KEY``.
    * ``models``: an allow-list; other models get 404 ``model_not_found``.
    * ``max_context_words``: longer prompts get 400 ``context_length_exceeded``.
    """

    rate_limit_next: int = 0
    retry_after: float | None = 1.0
    error_next: int = 0
    error_status: int = 500
    hang_next: int = 0
    hang_seconds: float = 30.0
    malformed_next: int = 0
    fail_rate: Mapping[int, float] = field(default_factory=dict)
    expected_api_key: str | None = None
    models: Collection[str] | None = None
    max_context_words: int | None = None

    def __post_init__(self) -> None:
        self.fail_rate = {int(status): float(p) for status, p in dict(self.fail_rate).items()}
        if any(not 0.0 <= p <= 1.0 for p in self.fail_rate.values()):
            raise ValueError("fail_rate probabilities must be between 0 and 1")
        if sum(self.fail_rate.values()) > 1.0 + 1e-9:
            raise ValueError("fail_rate probabilities must add up to at most 1")
        if any(status < 400 or status > 599 for status in self.fail_rate):
            raise ValueError("fail_rate keys must be HTTP error statuses (4xx or 5xx)")
        if self.models is not None:
            self.models = frozenset(self.models)

    def take(self, rng: random.Random) -> Fault | None:
        """The fault for one request (counting down ``*_next``), or None. Caller holds a lock."""
        if self.rate_limit_next > 0:
            self.rate_limit_next -= 1
            return Fault.rate_limit(self.retry_after)
        if self.error_next > 0:
            self.error_next -= 1
            return Fault.error(self.error_status)
        if self.hang_next > 0:
            self.hang_next -= 1
            return Fault.hang(self.hang_seconds)
        if self.malformed_next > 0:
            self.malformed_next -= 1
            return Fault.malformed()
        return self._draw(rng)

    def _draw(self, rng: random.Random) -> Fault | None:
        if not self.fail_rate:
            return None
        draw, cumulative = rng.random(), 0.0
        for status, probability in self.fail_rate.items():
            cumulative += probability
            if draw < cumulative:
                return Fault.rate_limit(self.retry_after) if status == 429 else Fault.error(status)
        return None


@dataclass(frozen=True)
class Counters:
    """A snapshot of the server's counters. Endpoints are ``chat.completions``,
    ``completions``, ``embeddings``, ``models`` and ``not_found``."""

    total: int = 0
    by_endpoint: Mapping[str, int] = field(default_factory=dict)
    by_status: Mapping[int, int] = field(default_factory=dict)
    in_flight: int = 0
    max_in_flight: int = 0


@dataclass
class RecordedRequest:
    """One request as received. ``body`` is the parsed JSON (None if absent or invalid);
    ``headers`` have lower-case names; ``status`` is filled in when the response is sent
    (None while in flight, and for hangs)."""

    method: str
    path: str
    endpoint: str
    query: dict[str, str]
    headers: dict[str, str]
    body: Any
    deployment: str | None = None
    status: int | None = None
    received_at: float = 0.0


class _Stats:
    """Thread-safe counters plus the bounded request log."""

    def __init__(self, log_size: int) -> None:
        self._lock = threading.Lock()
        self._log: deque[RecordedRequest] = deque(maxlen=log_size)
        self.clear()

    def clear(self) -> None:
        with self._lock:
            self._total = 0
            self._by_endpoint: Counter[str] = Counter()
            self._by_status: Counter[int] = Counter()
            self._in_flight = 0
            self._max_in_flight = 0
            self._log.clear()

    def begin(self, record: RecordedRequest) -> None:
        with self._lock:
            self._total += 1
            self._by_endpoint[record.endpoint] += 1
            self._in_flight += 1
            self._max_in_flight = max(self._max_in_flight, self._in_flight)
            self._log.append(record)

    def finish(self, record: RecordedRequest, status: int | None) -> None:
        with self._lock:
            self._in_flight -= 1
            record.status = status
            if status is not None:
                self._by_status[status] += 1

    def snapshot(self) -> Counters:
        with self._lock:
            return Counters(self._total, dict(self._by_endpoint), dict(self._by_status),
                            self._in_flight, self._max_in_flight)

    def requests(self) -> list[RecordedRequest]:
        with self._lock:
            return list(self._log)


# -- HTTP plumbing -----------------------------------------------------------------------------


@dataclass
class _Request:
    method: str
    target: str
    version: str
    headers: dict[str, str]
    body: bytes = b""

    @property
    def keep_alive(self) -> bool:
        connection = self.headers.get("connection", "").lower()
        if self.version == "HTTP/1.0":
            return connection == "keep-alive"
        return connection != "close"


@dataclass
class _Response:
    status: int
    body: bytes
    content_type: str = "application/json"
    headers: list[tuple[str, str]] = field(default_factory=list)


@dataclass
class _Stream:
    """SSE events to send; ``first_delay`` before the first one, ``delay`` between them."""

    events: list[bytes]
    request_id: str
    first_delay: float = 0.0
    delay: float = 0.0


_CLOSE = object()  # drop the connection without a response (after a hang)


class _BadRequest(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def _reason(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Unknown"


def _head(status: int, headers: list[tuple[str, str]], keep_alive: bool) -> bytes:
    lines = [f"HTTP/1.1 {status} {_reason(status)}", "Server: pfkit-testserver"]
    lines += [f"{name}: {value}" for name, value in headers]
    lines.append("Connection: keep-alive" if keep_alive else "Connection: close")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


_ENCODER = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"))


def _json_bytes(value: Any) -> bytes:
    return _ENCODER.encode(value).encode("utf-8")


class _Envelope:
    """Pre-encoded SSE framing for one stream: only each chunk's ``choices`` is encoded per
    event (streams are the hot path of benchmarks)."""

    def __init__(self, head: dict[str, Any], with_usage: bool) -> None:
        self.prefix = b"data: " + _json_bytes(head)[:-1] + b',"choices":['
        self.suffix = b'],"usage":null}\n\n' if with_usage else b"]}\n\n"
        self.with_usage = with_usage

    def event(self, choice: dict[str, Any] | bytes) -> bytes:
        encoded = choice if isinstance(choice, bytes) else _json_bytes(choice)
        return self.prefix + encoded + self.suffix

    def usage_event(self, usage: dict[str, int]) -> bytes:
        return self.prefix + b'],"usage":' + _json_bytes(usage) + b"}\n\n"


def _json_response(status: int, value: Any, headers: list[tuple[str, str]] | None = None
                   ) -> _Response:
    return _Response(status, _json_bytes(value), headers=headers or [])


def _error_response(status: int, message: str, code: str | None = None,
                    param: str | None = None, type_: str | None = None) -> _Response:
    default_type, default_code, _ = _error_defaults(status)
    return _json_response(status, _error_body(message, type_ or default_type,
                                              code if code is not None else default_code, param))


def _fault_response(fault: Fault) -> _Response:
    if fault.kind == "malformed":
        return _Response(200, b'{"id": "malformed", "object": "chat.completion", "choices": [{')
    headers = []
    if fault.status == 429 and fault.retry_after is not None:
        headers.append(("Retry-After", _seconds(fault.retry_after)))
    return _json_response(fault.status, fault.body(), headers)


def _seconds(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else f"{value:g}"


async def _read_request(reader: asyncio.StreamReader) -> _Request | None:
    """The next request on the connection, or None at a clean end of stream."""
    try:
        head = await reader.readuntil(b"\r\n\r\n")
    except asyncio.IncompleteReadError as exc:
        if exc.partial.strip():
            raise _BadRequest(400, "incomplete request head") from None
        return None
    except asyncio.LimitOverrunError:
        raise _BadRequest(431, "request headers too large") from None
    lines = head.decode("latin-1").split("\r\n")
    try:
        method, target, version = lines[0].split(" ", 2)
    except ValueError:
        raise _BadRequest(400, "bad request line") from None
    headers: dict[str, str] = {}
    for line in lines[1:]:
        name, sep, value = line.partition(":")
        if sep:
            headers[name.strip().lower()] = value.strip()
    request = _Request(method.upper(), target, version.strip().upper(), headers)
    request.body = await _read_body(reader, headers)
    return request


async def _read_body(reader: asyncio.StreamReader, headers: Mapping[str, str]) -> bytes:
    if "chunked" in headers.get("transfer-encoding", "").lower():
        return await _read_chunked(reader)
    try:
        length = int(headers.get("content-length", "0") or 0)
    except ValueError:
        raise _BadRequest(400, "bad Content-Length") from None
    if length < 0 or length > MAX_BODY_BYTES:
        raise _BadRequest(413, "request body too large")
    return await reader.readexactly(length) if length else b""


async def _read_chunked(reader: asyncio.StreamReader) -> bytes:
    parts: list[bytes] = []
    size_total = 0
    while True:
        line = await reader.readuntil(b"\r\n")
        try:
            size = int(line.split(b";", 1)[0].strip(), 16)
        except ValueError:
            raise _BadRequest(400, "bad chunk size") from None
        if size == 0:
            while (await reader.readuntil(b"\r\n")) != b"\r\n":  # trailers
                pass
            return b"".join(parts)
        size_total += size
        if size_total > MAX_BODY_BYTES:
            raise _BadRequest(413, "request body too large")
        parts.append(await reader.readexactly(size))
        await reader.readexactly(2)


@dataclass(frozen=True)
class _Route:
    endpoint: str
    deployment: str | None = None
    model_id: str | None = None


_ENDPOINTS = {"chat/completions": "chat.completions", "completions": "completions",
              "embeddings": "embeddings", "models": "models"}
_METHODS = {"chat.completions": "POST", "completions": "POST", "embeddings": "POST",
            "models": "GET", "model": "GET"}


def _split_target(target: str) -> tuple[str, str]:
    """(path, query) of a request target (origin-form, or absolute-form via a proxy)."""
    if not target.startswith("/"):
        split = urlsplit(target)
        return split.path or "/", split.query
    path, _, query = target.partition("?")
    return path, query


@functools.lru_cache(maxsize=256)
def _route(path: str) -> _Route:
    """``/v1/chat/completions``, ``/chat/completions``, ``/openai/deployments/D/...``,
    ``/openai/v1/...`` and ``/v1/models/ID``; anything else is ``not_found``."""
    parts = [unquote(p) for p in path.split("/") if p]
    deployment = None
    if parts[:2] == ["openai", "deployments"] and len(parts) > 2:
        deployment, parts = parts[2], parts[3:]
    elif parts[:1] == ["openai"]:
        parts = parts[1:]
    if parts[:1] == ["v1"]:
        parts = parts[1:]
    tail = "/".join(parts)
    if tail in _ENDPOINTS and not (deployment and tail == "models"):
        return _Route(_ENDPOINTS[tail], deployment)
    if len(parts) >= 2 and parts[0] == "models" and deployment is None:
        return _Route("model", model_id="/".join(parts[1:]))
    return _Route("not_found")


def is_loopback_host(host: str) -> bool:
    """True for ``localhost`` and loopback addresses (127.0.0.0/8, ::1)."""
    if host.strip().lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


# -- the server --------------------------------------------------------------------------------


class TestServer:
    """An OpenAI-compatible server on ``127.0.0.1`` (a free port by default).

    Parameters:
        responder: ``(kind, body) -> reply`` for chat and completion requests; default
            :func:`echo_responder`.
        host, port: where to listen; ``port=0`` picks a free port. Non-loopback hosts are
            refused unless ``allow_remote=True``.
        latency: seconds every model request waits before its response, injected faults
            included (an ``asyncio.sleep``: concurrent requests wait in parallel).
        first_chunk_delay: extra seconds a stream waits between its headers and first event.
        chunk_delay: seconds between stream events.
        stream_chunk_chars: how many characters of the reply each stream delta carries.
        embedding_dimensions: vector size when the request has no ``dimensions``.
        request_log_size: how many recent requests :attr:`requests` keeps.
        seed: seeds the random draws of ``fail_rate`` (deterministic tests).
        faults: a :class:`Faults`; or give its fields as keyword arguments
            (``TestServer(rate_limit_next=2, expected_api_key="sk-test")``).

    Use it as ``with TestServer() as server:`` (own loop in a daemon thread) or
    ``async with TestServer() as server:`` (inside a running loop). ``latency``,
    ``first_chunk_delay``, ``chunk_delay`` and ``responder`` may be reassigned at any time;
    change faults with :meth:`set_faults`.
    """

    __test__ = False  # not a pytest test class, despite the name

    def __init__(self, responder: Responder | None = None, *, host: str = "127.0.0.1",
                 port: int = 0, latency: float = 0.0, first_chunk_delay: float = 0.0,
                 chunk_delay: float = 0.0, stream_chunk_chars: int = 16,
                 embedding_dimensions: int = 8, request_log_size: int = 100,
                 seed: int | None = None, allow_remote: bool = False,
                 faults: Faults | None = None, **fault_options: Any) -> None:
        if not allow_remote and not is_loopback_host(host):
            raise ValueError(f"refusing to listen on non-loopback host {host!r} "
                             "(pass allow_remote=True to really do that)")
        if stream_chunk_chars < 1:
            raise ValueError("stream_chunk_chars must be at least 1")
        self.responder: Responder = responder or echo_responder
        self.host = host
        self.latency = latency
        self.first_chunk_delay = first_chunk_delay
        self.chunk_delay = chunk_delay
        self.stream_chunk_chars = stream_chunk_chars
        self.embedding_dimensions = embedding_dimensions
        base = faults if faults is not None else Faults()
        self._initial_faults = dataclasses.replace(base, **fault_options)
        self._faults = dataclasses.replace(self._initial_faults)
        self._fault_lock = threading.Lock()
        self._random = random.Random(seed)
        self._stats = _Stats(request_log_size)
        self._ids = itertools.count(1)
        self._requested_port = port
        self._port: int | None = None
        self._server: asyncio.AbstractServer | None = None
        self._connections: set[asyncio.Task[Any]] = set()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._stop_event: asyncio.Event | None = None
        self._startup_error: BaseException | None = None

    # -- addresses -----------------------------------------------------------------------------

    @property
    def port(self) -> int:
        if self._port is None:
            raise RuntimeError("the server is not running; use it as a context manager")
        return self._port

    @property
    def url(self) -> str:
        """``http://127.0.0.1:PORT``: the root, also the Azure ``azure_endpoint``."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    @property
    def base_url(self) -> str:
        """``http://127.0.0.1:PORT/v1``: the ``base_url`` for ``OpenAI(...)``."""
        return self.url + "/v1"

    @property
    def azure_endpoint(self) -> str:
        return self.url

    # -- state ---------------------------------------------------------------------------------

    @property
    def counters(self) -> Counters:
        return self._stats.snapshot()

    @property
    def requests(self) -> list[RecordedRequest]:
        """The most recent requests (oldest first), at most ``request_log_size``."""
        return self._stats.requests()

    @property
    def last_request(self) -> RecordedRequest | None:
        log = self._stats.requests()
        return log[-1] if log else None

    @property
    def faults(self) -> Faults:
        """A copy of the current fault configuration (with remaining ``*_next`` counts)."""
        with self._fault_lock:
            return dataclasses.replace(self._faults)

    def set_faults(self, faults: Faults | None = None, **changes: Any) -> None:
        """Replace the fault configuration, or change some of its fields:
        ``server.set_faults(error_next=2, error_status=503)``. Unknown names raise TypeError."""
        with self._fault_lock:
            self._faults = dataclasses.replace(faults or self._faults, **changes)

    def clear_faults(self) -> None:
        """No faults at all (not even those given to the constructor)."""
        self.set_faults(Faults())

    def reset(self) -> None:
        """Zero the counters, empty the request log and restore the constructor's faults."""
        self._stats.clear()
        with self._fault_lock:
            self._faults = dataclasses.replace(self._initial_faults)

    def _take_fault(self) -> Fault | None:
        with self._fault_lock:
            return self._faults.take(self._random)

    # -- running in a thread (sync code) -------------------------------------------------------

    def start(self) -> TestServer:
        """Start serving from a daemon thread with its own event loop; returns self."""
        if self._thread is not None:
            raise RuntimeError("the server is already running")
        started = threading.Event()
        self._startup_error = None
        self._thread = threading.Thread(target=self._thread_main, args=(started,),
                                        name="pfkit-testserver", daemon=True)
        self._thread.start()
        started.wait()
        if self._startup_error is not None:
            self._thread.join()
            self._thread = None
            raise self._startup_error
        return self

    def stop(self, timeout: float = 10.0) -> None:
        """Stop the thread started by :meth:`start` (open connections are dropped)."""
        thread, loop, event = self._thread, self._loop, self._stop_event
        if thread is None:
            return
        if loop is not None and event is not None and not loop.is_closed():
            loop.call_soon_threadsafe(event.set)
        thread.join(timeout)
        self._thread = None

    def _thread_main(self, started: threading.Event) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        try:
            loop.run_until_complete(self._serve_until_stopped(started))
            loop.run_until_complete(loop.shutdown_asyncgens())
        except BaseException as exc:  # noqa: BLE001 - reported to start()
            self._startup_error = exc
        finally:
            started.set()
            loop.close()
            self._loop = None

    async def _serve_until_stopped(self, started: threading.Event) -> None:
        await self.astart()
        self._stop_event = asyncio.Event()
        started.set()
        try:
            await self._stop_event.wait()
        finally:
            await self.astop()

    def __enter__(self) -> TestServer:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    # -- running in the current loop -----------------------------------------------------------

    async def astart(self) -> TestServer:
        """Start listening in the running event loop; returns self."""
        if self._server is not None:
            raise RuntimeError("the server is already running")
        self._server = await asyncio.start_server(self._handle_connection, self.host,
                                                  self._requested_port, limit=MAX_HEADER_BYTES)
        self._port = self._server.sockets[0].getsockname()[1]
        return self

    async def astop(self) -> None:
        """Stop listening, drop open connections (including hanging requests)."""
        server, self._server = self._server, None
        if server is None:
            return
        server.close()
        tasks = list(self._connections)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await server.wait_closed()

    async def serve_forever(self) -> None:
        """Start (if needed) and serve until cancelled (e.g. by Ctrl-C under asyncio.run)."""
        if self._server is None:
            await self.astart()
        try:
            await asyncio.Event().wait()
        finally:
            await self.astop()

    async def __aenter__(self) -> TestServer:
        return await self.astart()

    async def __aexit__(self, *exc_info: object) -> None:
        await self.astop()

    # -- connections ---------------------------------------------------------------------------

    async def _handle_connection(self, reader: asyncio.StreamReader,
                                 writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        if task is not None:
            self._connections.add(task)
        try:
            while await self._serve_one(reader, writer):
                pass
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        except asyncio.CancelledError:
            # Only astop() cancels these tasks. Ending normally avoids a spurious traceback
            # from asyncio's stream callback on Python 3.11 (it asks a cancelled task for its
            # exception).
            pass
        finally:
            if task is not None:
                self._connections.discard(task)
            writer.close()

    async def _serve_one(self, reader: asyncio.StreamReader,
                         writer: asyncio.StreamWriter) -> bool:
        """Handle one request; False when the connection should close."""
        try:
            request = await _read_request(reader)
        except _BadRequest as exc:
            response = _error_response(exc.status, str(exc))
            writer.write(_head(exc.status, _body_headers(response), False) + response.body)
            return False
        if request is None:
            return False
        if request.headers.get("expect", "").lower() == "100-continue":
            writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
        return await self._dispatch(request, writer)

    async def _dispatch(self, request: _Request, writer: asyncio.StreamWriter) -> bool:
        path, query = _split_target(request.target)
        route = _route(path)
        record = RecordedRequest(
            method=request.method, path=path,
            endpoint="models" if route.endpoint == "model" else route.endpoint,
            query={k: v[-1] for k, v in parse_qs(query).items()} if query else {},
            headers=request.headers, body=_parse_json(request.body),
            deployment=route.deployment, received_at=time.time())
        self._stats.begin(record)
        finished = False

        def finish(status: int | None) -> None:
            # Counted before the last bytes go out, so a client that has its answer always
            # sees it in the counters and the log.
            nonlocal finished
            if not finished:
                finished = True
                self._stats.finish(record, status)

        try:
            try:
                result = await self._respond(request, route, record)
            except Exception as exc:  # noqa: BLE001 - a bug here must not hang the client
                result = _error_response(500, f"pfkit test server error: "
                                              f"{type(exc).__name__}: {exc}", code="server_bug")
            if result is _CLOSE:
                return False
            if isinstance(result, _Stream):
                return await self._send_stream(writer, request, result, finish)
            return await self._send(writer, request, result, finish)
        finally:
            finish(None)

    @staticmethod
    async def _send(writer: asyncio.StreamWriter, request: _Request, response: _Response,
                    finish: Callable[[int | None], None]) -> bool:
        keep_alive = request.keep_alive
        finish(response.status)
        writer.write(_head(response.status, _body_headers(response), keep_alive) + response.body)
        await writer.drain()
        return keep_alive

    @staticmethod
    async def _send_stream(writer: asyncio.StreamWriter, request: _Request, stream: _Stream,
                           finish: Callable[[int | None], None]) -> bool:
        """SSE with chunked transfer encoding (HTTP/1.1), or close-delimited (HTTP/1.0)."""
        chunked = request.version != "HTTP/1.0"
        keep_alive = request.keep_alive and chunked
        headers = [("Content-Type", "text/event-stream; charset=utf-8"),
                   ("Cache-Control", "no-cache"), ("x-request-id", stream.request_id)]
        if chunked:
            headers.append(("Transfer-Encoding", "chunked"))
        frame = _chunk if chunked else (lambda data: data)
        tail = b"0\r\n\r\n" if chunked else b""
        events = stream.events + [b"data: [DONE]\n\n"]
        if not stream.first_delay and not stream.delay:
            finish(200)
            writer.write(_head(200, headers, keep_alive) + frame(b"".join(events)) + tail)
            await writer.drain()
            return keep_alive
        writer.write(_head(200, headers, keep_alive))
        await writer.drain()
        await asyncio.sleep(stream.first_delay)
        for i, event in enumerate(events):
            if i and stream.delay:
                await asyncio.sleep(stream.delay)
            if i == len(events) - 1:
                finish(200)
                event = frame(event) + tail
            else:
                event = frame(event)
            writer.write(event)
            await writer.drain()
        return keep_alive

    def _request_id(self) -> str:
        return f"req_{next(self._ids):08d}"

    # -- request handling ----------------------------------------------------------------------

    async def _respond(self, request: _Request, route: _Route,
                       record: RecordedRequest) -> _Response | _Stream | object:
        if route.endpoint == "not_found":
            return _error_response(404, f"Invalid URL ({request.method} {record.path})",
                                   code="unknown_url")
        if request.method != _METHODS[route.endpoint]:
            response = _error_response(405, f"Method {request.method} not allowed on "
                                            f"{record.path}", code="method_not_allowed")
            response.headers.append(("Allow", _METHODS[route.endpoint]))
            return response
        faults = self._faults  # replaced, never mutated except the *_next counts
        auth_error = _check_api_key(request.headers, faults.expected_api_key)
        if auth_error is not None:
            return auth_error
        if route.endpoint in ("models", "model"):
            return self._models_response(route, faults)
        return await self._model_request(route, record, faults)

    async def _model_request(self, route: _Route, record: RecordedRequest,
                             faults: Faults) -> _Response | _Stream | object:
        body = record.body
        if not isinstance(body, dict):
            return _error_response(400, "We could not parse the JSON body of your request. "
                                        "(HINT: send a JSON object.)", code="invalid_json")
        kind = {"chat.completions": "chat", "completions": "completion"}.get(
            route.endpoint, "embeddings")
        model = route.deployment or body.get("model")
        invalid = _validate(kind, body, model, faults)
        if invalid is not None:
            return invalid
        fault = self._take_fault()
        if self.latency > 0:
            await asyncio.sleep(self.latency)
        if fault is not None:
            return await self._apply_fault(fault)
        if kind == "embeddings":
            return self._embeddings(body, str(model))
        return await self._completion(kind, body, str(model))

    async def _apply_fault(self, fault: Fault) -> _Response | object:
        if fault.kind == "hang":
            await asyncio.sleep(fault.seconds)
            return _CLOSE
        return _fault_response(fault)

    async def _ask_responder(self, kind: str, body: dict[str, Any]) -> Any:
        try:
            answer = self.responder(kind, body)
            if inspect.isawaitable(answer):
                answer = await answer
        except Fault as fault:
            return fault
        except Exception as exc:  # noqa: BLE001 - a broken responder becomes a 500
            return Fault.error(500, f"responder failed: {type(exc).__name__}: {exc}",
                               code="responder_error")
        if isinstance(answer, BaseException) and not isinstance(answer, Fault):
            return Fault.error(500, str(answer) or type(answer).__name__)
        return answer

    async def _completion(self, kind: str, body: dict[str, Any], model: str
                          ) -> _Response | _Stream | object:
        answer = await self._ask_responder(kind, body)
        if isinstance(answer, Fault):
            return await self._apply_fault(answer)
        n = body.get("n") or 1
        try:
            replies = _replies(answer, n)
        except (TypeError, KeyError, ValueError) as exc:
            return _error_response(500, f"bad responder reply: {exc}", code="responder_error")
        builder = _ChatBuilder if kind == "chat" else _CompletionBuilder
        built = builder(body, model, replies, self._request_id())
        if body.get("stream"):
            return _Stream(built.stream_events(self.stream_chunk_chars), built.request_id,
                           self.first_chunk_delay, self.chunk_delay)
        return _json_response(200, built.response(), [("x-request-id", built.request_id)])

    def _embeddings(self, body: dict[str, Any], model: str) -> _Response:
        inputs = _embedding_inputs(body.get("input"))
        dimensions = body.get("dimensions") or self.embedding_dimensions
        as_base64 = body.get("encoding_format") == "base64"
        data = [{"object": "embedding", "index": i,
                 "embedding": _encode_vector(_embedding(text, dimensions), as_base64)}
                for i, text in enumerate(inputs)]
        words = max(1, _prompt_words("embeddings", body))
        return _json_response(200, {"object": "list", "data": data, "model": model,
                                    "usage": {"prompt_tokens": words, "total_tokens": words}})

    def _models_response(self, route: _Route, faults: Faults) -> _Response:
        names = sorted(faults.models) if faults.models is not None else list(DEFAULT_MODELS)
        if route.model_id is not None:
            if route.model_id not in names and faults.models is not None:
                return _model_not_found(route.model_id)
            return _json_response(200, _model_entry(route.model_id))
        return _json_response(200, {"object": "list", "data": [_model_entry(n) for n in names]})


_PROCESS_MAIN = "import sys; from pfkit.cli._testing import main; sys.exit(main(sys.argv[1:]))"


class TestServerProcess:
    """The same server in a child process (``pfkit testing serve``), for benchmarks: it shares no GIL with the code
    under test, so its own CPU time does not slow the client down.

    ``args`` are ``pfkit testing serve`` options (``"--rules", "rules.yaml"``,
    ``"--fail-rate", "429=0.1"``); the port is always a free one. Counters, the request log
    and runtime fault changes are only available with the in-process :class:`TestServer`.

    ::

        with TestServerProcess(latency=0.05) as server:
            client = AsyncOpenAI(base_url=server.base_url, api_key="x")
    """

    __test__ = False

    def __init__(self, *args: str, latency: float = 0.0, startup_timeout: float = 30.0
                 ) -> None:
        self.args = [*args, "--latency", str(latency)]
        self.startup_timeout = startup_timeout
        self.base_url = ""
        self.returncode: int | None = None
        self._process: subprocess.Popen[str] | None = None

    @property
    def url(self) -> str:
        return self.base_url.removesuffix("/v1")

    def start(self) -> TestServerProcess:
        package_root = str(Path(__file__).resolve().parents[2])
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [package_root,
                                                           env.get("PYTHONPATH")]))
        self._process = subprocess.Popen(
            [sys.executable, "-c", _PROCESS_MAIN, "--port", "0", *self.args],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
        line = self._read_first_line()
        if not line.startswith("http://"):
            process, self._process = self._process, None
            if process.poll() is None:
                process.kill()
            _, detail = process.communicate()
            self.returncode = process.returncode
            raise RuntimeError(f"the test server process did not start: {detail.strip()}")
        self.base_url = line
        return self

    def _read_first_line(self) -> str:
        assert self._process is not None and self._process.stdout is not None
        lines: list[str] = []
        reader = threading.Thread(target=lambda: lines.append(self._process.stdout.readline()),
                                  daemon=True)
        reader.start()
        reader.join(self.startup_timeout)
        return lines[0].strip() if lines else ""

    def stop(self, timeout: float = 10.0) -> None:
        """Ctrl-C the process (terminate on Windows) and wait; kill it if it lingers."""
        process, self._process = self._process, None
        if process is None:
            return
        if process.poll() is None:
            if os.name == "posix":
                process.send_signal(signal.SIGINT)
            else:
                process.terminate()
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        for stream in (process.stdout, process.stderr):
            if stream is not None:
                stream.close()
        self.returncode = process.returncode

    def __enter__(self) -> TestServerProcess:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


def _model_entry(name: str) -> dict[str, Any]:
    return {"id": name, "object": "model", "created": 1700000000, "owned_by": "pfkit"}


def _body_headers(response: _Response) -> list[tuple[str, str]]:
    content_type = response.content_type
    if content_type == "application/json":
        content_type = "application/json; charset=utf-8"
    return [("Content-Type", content_type), ("Content-Length", str(len(response.body))),
            *response.headers]


def _chunk(data: bytes) -> bytes:
    return b"%x\r\n%s\r\n" % (len(data), data)


def _parse_json(raw: bytes) -> Any:
    if not raw:
        return None
    try:
        return json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        return None


def _check_api_key(headers: Mapping[str, str], expected: str | None) -> _Response | None:
    if expected is None:
        return None
    bearer = headers.get("authorization", "")
    given = bearer[7:].strip() if bearer.lower().startswith("bearer ") else None
    if expected in (given, headers.get("api-key")):
        return None
    shown = given or headers.get("api-key") or ""
    hint = f"{shown[:3]}***{shown[-4:]}" if len(shown) > 8 else "***"
    return _error_response(401, f"Incorrect API key provided: {hint}. You can find your API "
                                "key at https://platform.openai.com/account/api-keys.",
                           code="invalid_api_key")


_REQUIRED = {"chat": "messages", "completion": "prompt", "embeddings": "input"}


def _validate(kind: str, body: Mapping[str, Any], model: Any, faults: Faults
              ) -> _Response | None:
    """400 for missing parameters or too long prompts, 404 for models not allowed."""
    required = _REQUIRED[kind]
    if body.get(required) is None or (kind == "chat" and not isinstance(body[required], list)):
        return _error_response(400, f"Missing required parameter: '{required}'.",
                               code="missing_required_parameter", param=required)
    if not model:
        return _error_response(400, "you must provide a model parameter",
                               code="missing_required_parameter", param="model")
    bad = _bad_number(body, "n", 1, 128) or _bad_number(body, "dimensions", 1, 65536)
    if bad is not None:
        return bad
    if faults.models is not None and model not in faults.models:
        return _model_not_found(str(model))
    if faults.max_context_words is not None:
        words = _prompt_words(kind, body)
        if words > faults.max_context_words:
            return _error_response(
                400, f"This model's maximum context length is {faults.max_context_words} "
                     f"tokens. However, your messages resulted in {words} tokens. Please "
                     "reduce the length of the messages.",
                code="context_length_exceeded", param=required)
    return None


def _bad_number(body: Mapping[str, Any], name: str, low: int, high: int) -> _Response | None:
    value = body.get(name)
    if value is None or (isinstance(value, int) and not isinstance(value, bool)
                         and low <= value <= high):
        return None
    return _error_response(400, f"Invalid value for '{name}': expected an integer from {low} "
                                f"to {high}, got {value!r}.", code="invalid_value", param=name)


def _model_not_found(model: str) -> _Response:
    return _error_response(404, f"The model `{model}` does not exist or you do not have "
                                "access to it.", code="model_not_found", param="model")


def _replies(answer: Any, n: int) -> list[Reply]:
    if isinstance(answer, list):
        if not answer:
            raise ValueError("empty list of replies")
        return [_to_reply(answer[i % len(answer)]) for i in range(n)]
    reply = _to_reply(answer)
    return [reply] * n


def _embedding(text: str, dimensions: int) -> list[float]:
    """The same vector :class:`EchoModel` gives (``hash_embedding``), at any dimension."""
    return hash_embedding(text, dimensions)


def _encode_vector(vector: list[float], as_base64: bool) -> list[float] | str:
    if not as_base64:
        return vector
    return base64.b64encode(struct.pack(f"<{len(vector)}f", *vector)).decode("ascii")


def _fingerprint(body: Mapping[str, Any]) -> str | None:
    seed = body.get("seed")
    return None if seed is None else f"fp_pfkit_{seed}"


def _include_usage(body: Mapping[str, Any]) -> bool:
    options = body.get("stream_options")
    return isinstance(options, Mapping) and bool(options.get("include_usage"))


def _pieces(text: str, size: int) -> list[str]:
    return [text[i:i + size] for i in range(0, len(text), size)]


# -- response builders -------------------------------------------------------------------------


class _ChatBuilder:
    """``chat.completion`` responses and ``chat.completion.chunk`` streams."""

    def __init__(self, body: dict[str, Any], model: str, replies: list[Reply],
                 request_id: str) -> None:
        self.body, self.model, self.replies, self.request_id = body, model, replies, request_id
        self.id = "chatcmpl-" + request_id[4:]
        self.created = int(time.time())
        self.logprobs = _wants_chat_logprobs(body)
        self.top = int(body.get("top_logprobs") or 0)

    def _usage(self) -> dict[str, int]:
        return _usage(_prompt_words("chat", self.body), sum(map(_reply_words, self.replies)))

    @staticmethod
    def _finish(reply: Reply) -> str:
        return reply.finish_reason or ("tool_calls" if reply.tool_calls else "stop")

    def _message(self, reply: Reply) -> dict[str, Any]:
        message: dict[str, Any] = {"role": "assistant", "content": reply.content,
                                   "refusal": None}
        if reply.tool_calls:
            message["tool_calls"] = [dict(call) for call in reply.tool_calls]
        return message

    def response(self) -> dict[str, Any]:
        choices = [{"index": i, "message": self._message(reply),
                    "logprobs": _chat_logprobs(reply.text, self.top) if self.logprobs else None,
                    "finish_reason": self._finish(reply)}
                   for i, reply in enumerate(self.replies)]
        return {"id": self.id, "object": "chat.completion", "created": self.created,
                "model": self.model, "choices": choices, "usage": self._usage(),
                "system_fingerprint": _fingerprint(self.body)}

    def stream_events(self, size: int) -> list[bytes]:
        envelope = _Envelope({"id": self.id, "object": "chat.completion.chunk",
                              "created": self.created, "model": self.model,
                              "system_fingerprint": _fingerprint(self.body)},
                             _include_usage(self.body))
        events = []
        for i, reply in enumerate(self.replies):
            for delta, logprobs, finish in self._deltas(reply, size):
                if isinstance(delta, str):  # the common case: a plain content piece
                    events.append(envelope.event(
                        b'{"index":%d,"delta":{"content":%s},"logprobs":null,'
                        b'"finish_reason":null}' % (i, _json_bytes(delta))))
                    continue
                events.append(envelope.event({"index": i, "delta": delta, "logprobs": logprobs,
                                              "finish_reason": finish}))
        if envelope.with_usage:
            events.append(envelope.usage_event(self._usage()))
        return events

    def _deltas(self, reply: Reply, size: int) -> list[tuple[dict[str, Any] | str, Any, Any]]:
        """(delta, logprobs, finish_reason) per chunk of one choice; the first has the role.
        A plain content piece without logprobs is given as just the string."""
        first = {"role": "assistant", "content": None if reply.tool_calls and
                 reply.content is None else "", "refusal": None}
        deltas: list[tuple[dict[str, Any] | str, Any, Any]] = [(first, None, None)]
        for piece in _pieces(reply.text, size):
            if self.logprobs:
                deltas.append(({"content": piece}, _chat_logprobs(piece, self.top), None))
            else:
                deltas.append((piece, None, None))
        for index, call in enumerate(reply.tool_calls):
            head = {"index": index, "id": call["id"], "type": "function",
                    "function": {"name": call["function"]["name"], "arguments": ""}}
            deltas.append(({"tool_calls": [head]}, None, None))
            for piece in _pieces(call["function"]["arguments"], size):
                args = {"index": index, "function": {"arguments": piece}}
                deltas.append(({"tool_calls": [args]}, None, None))
        deltas.append(({}, None, self._finish(reply)))
        return deltas


class _CompletionBuilder:
    """``text_completion`` responses and streams."""

    def __init__(self, body: dict[str, Any], model: str, replies: list[Reply],
                 request_id: str) -> None:
        self.body, self.model, self.replies, self.request_id = body, model, replies, request_id
        self.id = "cmpl-" + request_id[4:]
        self.created = int(time.time())
        self.logprobs = _wants_completion_logprobs(body)
        self.top = int(body.get("logprobs") or 0) if self.logprobs else 0

    def _usage(self) -> dict[str, int]:
        return _usage(_prompt_words("completion", self.body),
                      sum(len(r.text.split()) for r in self.replies))

    def _choice(self, index: int, text: str, finish: str | None, offset: int = 0
                ) -> dict[str, Any]:
        logprobs = _completion_logprobs(text, self.top, offset) if self.logprobs else None
        return {"text": text, "index": index, "logprobs": logprobs, "finish_reason": finish}

    def response(self) -> dict[str, Any]:
        choices = [self._choice(i, r.text, r.finish_reason or "stop")
                   for i, r in enumerate(self.replies)]
        return {"id": self.id, "object": "text_completion", "created": self.created,
                "model": self.model, "choices": choices, "usage": self._usage(),
                "system_fingerprint": _fingerprint(self.body)}

    def stream_events(self, size: int) -> list[bytes]:
        envelope = _Envelope({"id": self.id, "object": "text_completion",
                              "created": self.created, "model": self.model,
                              "system_fingerprint": _fingerprint(self.body)},
                             _include_usage(self.body))
        events = []
        for i, reply in enumerate(self.replies):
            offset = 0
            for piece in _pieces(reply.text, size):
                events.append(envelope.event(self._choice(i, piece, None, offset)))
                offset += len(piece)
            events.append(envelope.event(self._choice(i, "", reply.finish_reason or "stop",
                                                      offset)))
        if envelope.with_usage:
            events.append(envelope.usage_event(self._usage()))
        return events
