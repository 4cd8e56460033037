"""Faults the test server can answer with instead of (or in the middle of) a reply.

A :class:`Fault` is one bad answer; :class:`Faults` is the server's configuration of which
requests get one (the next N, a random share, or every request that breaks a rule such as a
wrong API key). The kinds, and what a client sees:

* ``status``: an HTTP error (4xx/5xx) with an OpenAI-shaped ``{"error": {...}}`` body; a 429
  carries ``Retry-After`` (seconds) unless ``retry_after`` is None.
* ``hang``: nothing for ``seconds``, then the connection is closed without a response (make it
  longer than the client's timeout to get a timeout).
* ``malformed``: a 200 whose body is truncated JSON (``Content-Length`` matches what is sent).
* ``cut``: a 200 whose body stops part-way and the connection closes: a stream sends its
  headers and its first ``after`` SSE events, a plain response half of its body (with the full
  ``Content-Length``), then the socket is closed. Clients see a broken / incomplete body.
* ``stall``: like ``cut``, but the connection stays open and silent for ``seconds`` before it
  closes (a read timeout in the middle of a body).
* ``unfinished``: a stream that ends cleanly (the chunked body is terminated properly) but has
  no ``finish_reason`` chunk, no usage chunk and no ``data: [DONE]``; a non-streamed answer has
  ``finish_reason: null``. Embeddings answer normally.

A refused connection needs no fault: stop the server, or point the client at a closed port.
"""

from __future__ import annotations

import random
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Any

KINDS = ("status", "hang", "malformed", "cut", "stall", "unfinished")
# Fault kinds that ``fail_rate`` may draw by name (besides HTTP statuses).
NAMED_RATES = ("hang", "malformed", "cut", "stall", "unfinished")


class Fault(Exception):
    """An error the server answers with instead of a reply.

    Build one with :meth:`error`, :meth:`rate_limit`, :meth:`hang`, :meth:`malformed`,
    :meth:`cut`, :meth:`stall` or :meth:`unfinished` (kinds in the module docstring); a
    responder may return it or raise it. ``cut``, ``stall`` and ``unfinished`` break the delivery of a real answer: ``reply``
    (anything a responder may return) is that answer, the echo of the request when None.
    """

    def __init__(self, kind: str = "status", *, status: int = 500, message: str | None = None,
                 type: str | None = None, code: str | None = None, param: str | None = None,
                 retry_after: float | None = None, seconds: float = 30.0, after: int = 2,
                 reply: Any = None) -> None:
        if kind not in KINDS:
            raise ValueError(f"unknown fault kind {kind!r} (one of {', '.join(KINDS)})")
        if after < 0:
            raise ValueError("a cut fault's 'after' must be 0 or more events")
        default_type, default_code, default_message = error_defaults(status)
        super().__init__(message or default_message)
        self.kind = kind
        self.status = status
        self.message = message or default_message
        self.type = type or default_type
        self.code = code if code is not None else default_code
        self.param = param
        self.retry_after = retry_after
        self.seconds = seconds
        self.after = after
        self.reply = reply

    def __repr__(self) -> str:
        if self.kind == "status":
            return f"Fault.error({self.status}, code={self.code!r})"
        if self.kind == "hang":
            return f"Fault.hang({self.seconds})"
        if self.kind == "cut":
            return f"Fault.cut(after={self.after})"
        if self.kind == "stall":
            return f"Fault.stall(after={self.after}, seconds={self.seconds})"
        return f"Fault.{self.kind}()"

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
    def cut(cls, after: int = 2, reply: Any = None) -> Fault:
        """The answer's body stops part-way and the connection closes: a stream after its
        first ``after`` events, a plain response after half of its bytes."""
        return cls("cut", status=200, after=after, reply=reply)

    @classmethod
    def stall(cls, after: int = 2, seconds: float = 30.0, reply: Any = None) -> Fault:
        """Like :meth:`cut`, but the connection stays open and silent for ``seconds`` first."""
        return cls("stall", status=200, after=after, seconds=seconds, reply=reply)

    @classmethod
    def unfinished(cls, reply: Any = None) -> Fault:
        """A stream that ends cleanly without ``finish_reason``, usage or ``[DONE]``."""
        return cls("unfinished", status=200, reply=reply)

    @classmethod
    def from_config(cls, data: Mapping[str, Any]) -> Fault:
        """``{"status": 503}``, ``{"status": 429, "retry_after": 2}``, ``{"hang": 30}``,
        ``{"malformed": true}``, ``{"cut": 2}`` (events before the cut; ``true`` for 2),
        ``{"stall": SECONDS, "after": 2}`` or ``{"unfinished": true}`` (the form used in rules
        files). ``cut``, ``stall`` and ``unfinished`` take an optional ``reply``."""
        if not isinstance(data, Mapping):
            raise ValueError(f"a fault is a mapping such as {{status: 503}}, got {data!r}")
        if "hang" in data:
            return cls.hang(float(data["hang"]))
        if data.get("malformed"):
            return cls.malformed()
        if "cut" in data and data["cut"] is not False:
            after = 2 if data["cut"] is True else data["cut"]
            if isinstance(after, bool) or not isinstance(after, int) or after < 0:
                raise ValueError(f"'cut' is a number of stream events (0 or more), got "
                                 f"{data['cut']!r}")
            return cls.cut(after, data.get("reply"))
        if "stall" in data:
            after = data.get("after", 2)
            if isinstance(after, bool) or not isinstance(after, int) or after < 0:
                raise ValueError(f"'after' is a number of stream events (0 or more), got "
                                 f"{after!r}")
            return cls.stall(after, float(data["stall"]), data.get("reply"))
        if data.get("unfinished"):
            return cls.unfinished(data.get("reply"))
        try:
            status = int(data.get("status", 500))
        except (TypeError, ValueError):
            raise ValueError(f"a fault's 'status' is an HTTP status, got "
                             f"{data.get('status')!r}") from None
        if not 400 <= status <= 599:
            raise ValueError(f"a fault's 'status' must be 4xx or 5xx, got {status}")
        if status == 429:
            return cls.rate_limit(data.get("retry_after", 1.0), data.get("message"))
        return cls.error(status, data.get("message"), code=data.get("code"), type=data.get("type"))

    def body(self) -> dict[str, Any]:
        return error_body(self.message, self.type, self.code, self.param)


@dataclass
class Faults:
    """What to inject. ``*_next`` counters apply to the next N model requests (chat,
    completions, embeddings) and count down; checked in the order listed. Requests rejected
    before that (401, 404 model, 400 bad or too long request) do not use them up.

    * ``rate_limit_next``: 429 with ``Retry-After: retry_after`` (seconds).
    * ``error_next``: ``error_status`` (500, 502, 503, ...).
    * ``hang_next``: sleep ``hang_seconds`` and drop the connection (a client timeout).
    * ``malformed_next``: 200 with a body that is not valid JSON.
    * ``cut_next``: the body stops and the connection closes: streams after ``cut_after``
      SSE events, plain responses after half their bytes.
    * ``stall_next``: as ``cut_next``, but silent for ``stall_seconds`` before closing.
    * ``unfinished_next``: a stream that ends cleanly with no ``finish_reason``, no usage chunk
      and no ``[DONE]`` (non-streamed: ``finish_reason`` null).
    * ``fail_rate``: ``{fault: probability}`` drawn per request, where a fault is an HTTP
      error status or one of ``"hang"``, ``"malformed"``, ``"cut"``, ``"stall"``,
      ``"unfinished"``
      (``{429: 0.1, 503: 0.05, "cut": 0.01}``).
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
    cut_next: int = 0
    cut_after: int = 2
    stall_next: int = 0
    stall_seconds: float = 30.0
    unfinished_next: int = 0
    fail_rate: Mapping[int | str, float] = field(default_factory=dict)
    expected_api_key: str | None = None
    models: Collection[str] | None = None
    max_context_words: int | None = None

    def __post_init__(self) -> None:
        self.fail_rate = {_rate_key(key): float(p) for key, p in dict(self.fail_rate).items()}
        if any(not 0.0 <= p <= 1.0 for p in self.fail_rate.values()):
            raise ValueError("fail_rate probabilities must be between 0 and 1")
        if sum(self.fail_rate.values()) > 1.0 + 1e-9:
            raise ValueError("fail_rate probabilities must add up to at most 1")
        if self.cut_after < 0:
            raise ValueError("cut_after must be 0 or more events")
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
        if self.cut_next > 0:
            self.cut_next -= 1
            return Fault.cut(self.cut_after)
        if self.stall_next > 0:
            self.stall_next -= 1
            return Fault.stall(self.cut_after, self.stall_seconds)
        if self.unfinished_next > 0:
            self.unfinished_next -= 1
            return Fault.unfinished()
        return self._draw(rng)

    def _draw(self, rng: random.Random) -> Fault | None:
        if not self.fail_rate:
            return None
        draw, cumulative = rng.random(), 0.0
        for key, probability in self.fail_rate.items():
            cumulative += probability
            if draw < cumulative:
                return self._named(key)
        return None

    def _named(self, key: int | str) -> Fault:
        if key == 429:
            return Fault.rate_limit(self.retry_after)
        if key == "hang":
            return Fault.hang(self.hang_seconds)
        if key == "malformed":
            return Fault.malformed()
        if key == "cut":
            return Fault.cut(self.cut_after)
        if key == "stall":
            return Fault.stall(self.cut_after, self.stall_seconds)
        if key == "unfinished":
            return Fault.unfinished()
        return Fault.error(int(key))


def _rate_key(key: Any) -> int | str:
    """A ``fail_rate`` key: an HTTP error status (``429``, ``"503"``) or a fault name."""
    if isinstance(key, str) and key.strip().lower() in NAMED_RATES:
        return key.strip().lower()
    try:
        status = int(key)
    except (TypeError, ValueError):
        raise ValueError(f"fail_rate key {key!r} is neither an HTTP error status nor one of "
                         f"{', '.join(NAMED_RATES)}") from None
    if not 400 <= status <= 599:
        raise ValueError("fail_rate keys must be HTTP error statuses (4xx or 5xx) or one of "
                         f"{', '.join(NAMED_RATES)}")
    return status


# -- OpenAI's error shape ----------------------------------------------------------------------

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


def error_defaults(status: int) -> tuple[str, str | None, str]:
    """(type, code, message) OpenAI uses for an HTTP status."""
    if status in _ERROR_DEFAULTS:
        return _ERROR_DEFAULTS[status]
    kind = "server_error" if status >= 500 else "invalid_request_error"
    try:
        phrase = HTTPStatus(status).phrase
    except ValueError:
        phrase = "Error"
    return kind, None, f"{phrase}."


def error_body(message: str, type_: str, code: str | None, param: str | None = None
               ) -> dict[str, Any]:
    return {"error": {"message": message, "type": type_, "param": param, "code": code}}


def seconds_header(value: float) -> str:
    """``2`` -> ``"2"``, ``0.5`` -> ``"0.5"`` (a ``Retry-After`` value)."""
    return str(int(value)) if float(value).is_integer() else f"{value:g}"
