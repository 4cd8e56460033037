"""The OpenAI REST API as the test server speaks it: reading requests, checking them, and the
shapes of its answers (``chat.completion``, ``chat.completion.chunk`` streams,
``text_completion``, embeddings, models, errors). No HTTP here: answers are bytes and dicts.

Usage is counted in words: prompt tokens are the whitespace-separated words of all message
contents (or the prompt, or the embedding inputs), completion tokens the words of the reply
(tool calls included); each at least 1. Every non-streamed answer reports usage; streams add
a usage chunk when the request asks ``stream_options: {include_usage: true}``, as OpenAI does.

Embeddings are the unit vectors of :func:`~pfkit.testing._echo.hash_embedding`. The ``openai``
client asks for ``encoding_format: "base64"`` unless the caller chose a format (and decodes it
back to floats); like the real API the server then sends each vector as base64 of little-endian
float32 values, otherwise as a JSON list of floats.
"""

from __future__ import annotations

import base64
import json
import struct
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ..providers._text import content_text as _text_of
from ._echo import hash_embedding
from ._faults import Fault, error_body, error_defaults, seconds_header
from ._logprobs import MAX_TOP, chat_logprobs, completion_logprobs

if TYPE_CHECKING:
    from ._faults import Faults
    from ._responders import Reply

DEFAULT_MODELS = ("gpt-4o-mini", "gpt-4o", "gpt-35-turbo-instruct", "text-embedding-3-small")
JSON_TYPE = "application/json; charset=utf-8"
SSE_TYPE = "text/event-stream; charset=utf-8"
DONE_EVENT = b"data: [DONE]\n\n"
# A 200 body that is not valid JSON (the ``malformed`` fault).
MALFORMED_BODY = b'{"id": "malformed", "object": "chat.completion", "choices": [{'

_ENCODER = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"))


def json_bytes(value: Any) -> bytes:
    return _ENCODER.encode(value).encode("utf-8")


def parse_json(raw: bytes) -> Any:
    """The parsed body, or None when it is empty or not JSON."""
    if not raw:
        return None
    try:
        return json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        return None


@dataclass
class Answer:
    """A complete (non-streamed) HTTP answer: status, JSON body bytes, extra headers."""

    status: int
    body: bytes
    headers: list[tuple[str, str]]


def json_answer(status: int, value: Any, headers: list[tuple[str, str]] | None = None
                ) -> Answer:
    return Answer(status, json_bytes(value), headers or [])


def error_answer(status: int, message: str, code: str | None = None, param: str | None = None,
                 type_: str | None = None) -> Answer:
    default_type, default_code, _ = error_defaults(status)
    return json_answer(status, error_body(message, type_ or default_type,
                                          code if code is not None else default_code, param))


def fault_answer(fault: Fault) -> Answer:
    """The answer of a ``status`` or ``malformed`` fault."""
    if fault.kind == "malformed":
        return Answer(200, MALFORMED_BODY, [])
    headers = []
    if fault.status == 429 and fault.retry_after is not None:
        headers.append(("Retry-After", seconds_header(fault.retry_after)))
    return json_answer(fault.status, fault.body(), headers)


# -- reading requests --------------------------------------------------------------------------

KINDS = {"chat.completions": "chat", "completions": "completion", "embeddings": "embeddings"}
_REQUIRED = {"chat": "messages", "completion": "prompt", "embeddings": "input"}


def content_text(content: Any) -> str:
    """The text of a message's ``content`` (a string, or the text parts of a list): pfkit's one
    helper, :func:`pfkit.providers._text.content_text`."""
    return _text_of(content) if isinstance(content, (str, list)) else ""


def last_user_text(body: Mapping[str, Any]) -> str:
    for message in reversed(body.get("messages") or []):
        if isinstance(message, Mapping) and message.get("role") == "user":
            return content_text(message.get("content"))
    return ""


def prompt_text(prompt: Any) -> str:
    if isinstance(prompt, list):
        return " ".join(item if isinstance(item, str) else str(item) for item in prompt)
    return prompt if isinstance(prompt, str) else ""


def embedding_inputs(value: Any) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, list) and value and all(isinstance(v, int) for v in value):
        return [str(value)]  # one input given as token ids
    if isinstance(value, list):
        return [v if isinstance(v, str) else str(v) for v in value]
    return []


def prompt_words(kind: str, body: Mapping[str, Any]) -> int:
    if kind == "chat":
        texts = [content_text(m.get("content")) for m in body.get("messages") or []
                 if isinstance(m, Mapping)]
        return sum(len(text.split()) for text in texts)
    if kind == "embeddings":
        return sum(len(text.split()) for text in embedding_inputs(body.get("input")))
    return len(prompt_text(body.get("prompt")).split())


def reply_words(reply: Reply) -> int:
    words = len(reply.text.split())
    for call in reply.tool_calls:
        words += len(call["function"]["name"].split()) + len(call["function"]["arguments"].split())
    return words


def usage(prompt: int, completion: int) -> dict[str, int]:
    prompt, completion = max(1, prompt), max(1, completion)
    return {"prompt_tokens": prompt, "completion_tokens": completion,
            "total_tokens": prompt + completion}


def check_api_key(headers: Mapping[str, str], expected: str | None) -> Answer | None:
    """401 unless ``Authorization: Bearer KEY`` or ``api-key: KEY`` (the key is never echoed
    back whole)."""
    if expected is None:
        return None
    bearer = headers.get("authorization", "")
    given = bearer[7:].strip() if bearer.lower().startswith("bearer ") else None
    if expected in (given, headers.get("api-key")):
        return None
    shown = given or headers.get("api-key") or ""
    hint = f"{shown[:3]}***{shown[-4:]}" if len(shown) > 8 else "***"
    return error_answer(401, f"Incorrect API key provided: {hint}. You can find your API "
                             "key at https://platform.openai.com/account/api-keys.",
                        code="invalid_api_key")


def validate(kind: str, body: Mapping[str, Any], model: Any, faults: Faults) -> Answer | None:
    """400 for missing or bad parameters and too long prompts, 404 for models not allowed."""
    required = _REQUIRED[kind]
    if body.get(required) is None or (kind == "chat" and not isinstance(body[required], list)):
        return error_answer(400, f"Missing required parameter: '{required}'.",
                            code="missing_required_parameter", param=required)
    if not model:
        return error_answer(400, "you must provide a model parameter",
                            code="missing_required_parameter", param="model")
    bad = (_bad_number(body, "n", 1, 128) or _bad_number(body, "dimensions", 1, 65536)
           or (_bad_number(body, "top_logprobs", 0, MAX_TOP) if kind == "chat" else None))
    if bad is not None:
        return bad
    if faults.models is not None and model not in faults.models:
        return model_not_found(str(model))
    if faults.max_context_words is not None:
        words = prompt_words(kind, body)
        if words > faults.max_context_words:
            return error_answer(
                400, f"This model's maximum context length is {faults.max_context_words} "
                     f"tokens. However, your messages resulted in {words} tokens. Please "
                     "reduce the length of the messages.",
                code="context_length_exceeded", param=required)
    return None


def _bad_number(body: Mapping[str, Any], name: str, low: int, high: int) -> Answer | None:
    value = body.get(name)
    if value is None or (isinstance(value, int) and not isinstance(value, bool)
                         and low <= value <= high):
        return None
    return error_answer(400, f"Invalid value for '{name}': expected an integer from {low} "
                             f"to {high}, got {value!r}.", code="invalid_value", param=name)


def model_not_found(model: str) -> Answer:
    return error_answer(404, f"The model `{model}` does not exist or you do not have "
                             "access to it.", code="model_not_found", param="model")


# -- models and embeddings ---------------------------------------------------------------------


def _model_entry(name: str) -> dict[str, Any]:
    return {"id": name, "object": "model", "created": 1700000000, "owned_by": "pfkit"}


def models_answer(model_id: str | None, faults: Faults) -> Answer:
    """``GET /models`` (``model_id`` None) or ``GET /models/ID``."""
    names = sorted(faults.models) if faults.models is not None else list(DEFAULT_MODELS)
    if model_id is not None:
        if model_id not in names and faults.models is not None:
            return model_not_found(model_id)
        return json_answer(200, _model_entry(model_id))
    return json_answer(200, {"object": "list", "data": [_model_entry(n) for n in names]})


def embeddings_response(body: Mapping[str, Any], model: str, default_dimensions: int
                        ) -> dict[str, Any]:
    inputs = embedding_inputs(body.get("input"))
    dimensions = body.get("dimensions") or default_dimensions
    as_base64 = body.get("encoding_format") == "base64"
    data = [{"object": "embedding", "index": i,
             "embedding": _encode_vector(hash_embedding(text, dimensions), as_base64)}
            for i, text in enumerate(inputs)]
    words = max(1, prompt_words("embeddings", body))
    return {"object": "list", "data": data, "model": model,
            "usage": {"prompt_tokens": words, "total_tokens": words}}


def _encode_vector(vector: list[float], as_base64: bool) -> list[float] | str:
    if not as_base64:
        return vector
    return base64.b64encode(struct.pack(f"<{len(vector)}f", *vector)).decode("ascii")


# -- chat and completion answers ---------------------------------------------------------------


def _fingerprint(body: Mapping[str, Any]) -> str | None:
    seed = body.get("seed")
    return None if seed is None else f"fp_pfkit_{seed}"


def _include_usage(body: Mapping[str, Any]) -> bool:
    options = body.get("stream_options")
    return isinstance(options, Mapping) and bool(options.get("include_usage"))


def _pieces(text: str, size: int) -> list[str]:
    return [text[i:i + size] for i in range(0, len(text), size)]


class _Envelope:
    """Pre-encoded SSE framing for one stream: only each chunk's ``choices`` is encoded per
    event (streams are the hot path of benchmarks)."""

    def __init__(self, head: dict[str, Any], with_usage: bool) -> None:
        self.prefix = b"data: " + json_bytes(head)[:-1] + b',"choices":['
        self.suffix = b'],"usage":null}\n\n' if with_usage else b"]}\n\n"
        self.with_usage = with_usage

    def event(self, choice: dict[str, Any] | bytes) -> bytes:
        encoded = choice if isinstance(choice, bytes) else json_bytes(choice)
        return self.prefix + encoded + self.suffix

    def usage_event(self, usage_: dict[str, int]) -> bytes:
        return self.prefix + b'],"usage":' + json_bytes(usage_) + b"}\n\n"


class ChatBuilder:
    """``chat.completion`` responses and ``chat.completion.chunk`` streams.

    ``finished=False`` (the ``unfinished`` fault) leaves out what ends an answer: the
    ``finish_reason`` (null instead) and, in streams, the finish and usage chunks."""

    def __init__(self, body: dict[str, Any], model: str, replies: list[Reply],
                 request_id: str) -> None:
        self.body, self.model, self.replies, self.request_id = body, model, replies, request_id
        self.id = "chatcmpl-" + request_id[4:]
        self.created = int(time.time())
        self.logprobs = bool(body.get("logprobs"))
        self.top = int(body.get("top_logprobs") or 0)

    def _usage(self) -> dict[str, int]:
        return usage(prompt_words("chat", self.body), sum(map(reply_words, self.replies)))

    @staticmethod
    def _finish(reply: Reply) -> str:
        return reply.finish_reason or ("tool_calls" if reply.tool_calls else "stop")

    def _message(self, reply: Reply) -> dict[str, Any]:
        message: dict[str, Any] = {"role": "assistant", "content": reply.content,
                                   "refusal": None}
        if reply.tool_calls:
            message["tool_calls"] = [dict(call) for call in reply.tool_calls]
        return message

    def response(self, finished: bool = True) -> dict[str, Any]:
        choices = [{"index": i, "message": self._message(reply),
                    "logprobs": chat_logprobs(reply.text, self.top) if self.logprobs else None,
                    "finish_reason": self._finish(reply) if finished else None}
                   for i, reply in enumerate(self.replies)]
        return {"id": self.id, "object": "chat.completion", "created": self.created,
                "model": self.model, "choices": choices, "usage": self._usage(),
                "system_fingerprint": _fingerprint(self.body)}

    def stream_events(self, size: int, finished: bool = True) -> list[bytes]:
        envelope = _Envelope({"id": self.id, "object": "chat.completion.chunk",
                              "created": self.created, "model": self.model,
                              "system_fingerprint": _fingerprint(self.body)},
                             _include_usage(self.body))
        events = []
        for i, reply in enumerate(self.replies):
            for delta, logprobs, finish in self._deltas(reply, size, finished):
                if isinstance(delta, str):  # the common case: a plain content piece
                    events.append(envelope.event(
                        b'{"index":%d,"delta":{"content":%s},"logprobs":null,'
                        b'"finish_reason":null}' % (i, json_bytes(delta))))
                    continue
                events.append(envelope.event({"index": i, "delta": delta, "logprobs": logprobs,
                                              "finish_reason": finish}))
        if envelope.with_usage and finished:
            events.append(envelope.usage_event(self._usage()))
        return events

    def _deltas(self, reply: Reply, size: int, finished: bool
                ) -> list[tuple[dict[str, Any] | str, Any, Any]]:
        """(delta, logprobs, finish_reason) per chunk of one choice; the first has the role.
        A plain content piece without logprobs is given as just the string."""
        first = {"role": "assistant", "content": None if reply.tool_calls and
                 reply.content is None else "", "refusal": None}
        deltas: list[tuple[dict[str, Any] | str, Any, Any]] = [(first, None, None)]
        for piece in _pieces(reply.text, size):
            if self.logprobs:
                deltas.append(({"content": piece}, chat_logprobs(piece, self.top), None))
            else:
                deltas.append((piece, None, None))
        for index, call in enumerate(reply.tool_calls):
            head = {"index": index, "id": call["id"], "type": "function",
                    "function": {"name": call["function"]["name"], "arguments": ""}}
            deltas.append(({"tool_calls": [head]}, None, None))
            for piece in _pieces(call["function"]["arguments"], size):
                args = {"index": index, "function": {"arguments": piece}}
                deltas.append(({"tool_calls": [args]}, None, None))
        if finished:
            deltas.append(({}, None, self._finish(reply)))
        return deltas


class CompletionBuilder:
    """``text_completion`` responses and streams (``finished`` as for :class:`ChatBuilder`)."""

    def __init__(self, body: dict[str, Any], model: str, replies: list[Reply],
                 request_id: str) -> None:
        self.body, self.model, self.replies, self.request_id = body, model, replies, request_id
        self.id = "cmpl-" + request_id[4:]
        self.created = int(time.time())
        value = body.get("logprobs")
        self.logprobs = value is not None and value is not False
        self.top = int(value or 0) if self.logprobs else 0

    def _usage(self) -> dict[str, int]:
        return usage(prompt_words("completion", self.body),
                     sum(len(r.text.split()) for r in self.replies))

    def _choice(self, index: int, text: str, finish: str | None, offset: int = 0
                ) -> dict[str, Any]:
        logprobs = completion_logprobs(text, self.top, offset) if self.logprobs else None
        return {"text": text, "index": index, "logprobs": logprobs, "finish_reason": finish}

    def response(self, finished: bool = True) -> dict[str, Any]:
        choices = [self._choice(i, r.text, (r.finish_reason or "stop") if finished else None)
                   for i, r in enumerate(self.replies)]
        return {"id": self.id, "object": "text_completion", "created": self.created,
                "model": self.model, "choices": choices, "usage": self._usage(),
                "system_fingerprint": _fingerprint(self.body)}

    def stream_events(self, size: int, finished: bool = True) -> list[bytes]:
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
            if finished:
                events.append(envelope.event(self._choice(i, "", reply.finish_reason or "stop",
                                                          offset)))
        if envelope.with_usage and finished:
            events.append(envelope.usage_event(self._usage()))
        return events
