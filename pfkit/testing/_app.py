"""The test server's HTTP side: an ``aiohttp.web`` application, its routes, and how each answer
(JSON, an SSE stream, or a fault that breaks the delivery) goes out on the wire.

Routes (any method; a wrong one gets an OpenAI-shaped 405 with ``Allow``):

* ``[/v1|/openai|/openai/v1]/chat/completions``, ``.../completions``, ``.../embeddings``,
  ``.../models`` and ``.../models/{id}``;
* Azure: ``/openai/deployments/{deployment}[/v1]/chat/completions`` (and ``completions``,
  ``embeddings``); the deployment is the model;
* anything else: a 404 ``unknown_url``, counted under the endpoint ``not_found``.

Keep-alive is on (HTTP/1.1), requests are not logged, and a request is counted (status in
:class:`~pfkit.testing.Counters` and the request log) before the last byte of its answer goes
out, so a client that has its answer always finds it there.
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs

from aiohttp import web

from ._faults import Fault
from ._openai_api import (
    DONE_EVENT,
    JSON_TYPE,
    KINDS,
    SSE_TYPE,
    Answer,
    ChatBuilder,
    CompletionBuilder,
    check_api_key,
    embeddings_response,
    error_answer,
    fault_answer,
    json_answer,
    models_answer,
    parse_json,
    validate,
)
from ._responders import echo_responder, to_replies
from ._stats import RecordedRequest

if TYPE_CHECKING:
    from ._server import TestServer

MAX_HEADER_BYTES = 64 * 1024
MAX_BODY_BYTES = 64 * 1024 * 1024
SERVER_NAME = "pfkit-testserver"

_MODEL_ENDPOINTS = {"chat/completions": "chat.completions", "completions": "completions",
                    "embeddings": "embeddings"}
_PREFIXES = ("", "/v1", "/openai", "/openai/v1")
_DEPLOYMENT_PREFIXES = ("/openai/deployments/{deployment}", "/openai/deployments/{deployment}/v1")
_METHODS = {"chat.completions": "POST", "completions": "POST", "embeddings": "POST",
            "models": "GET", "model": "GET"}
_DELIVERY_FAULTS = ("cut", "stall", "unfinished")


@dataclass
class _Stream:
    """SSE events to send: ``first_delay`` before the first one, ``delay`` between them;
    ``done`` adds ``data: [DONE]``; ``cut_after`` closes the connection after that many
    (``stall`` seconds later)."""

    events: list[bytes]
    request_id: str
    first_delay: float = 0.0
    delay: float = 0.0
    done: bool = True
    cut_after: int | None = None
    stall: float = 0.0


@dataclass
class _Cut:
    """A complete answer of which only the first half of the body is sent (then ``stall``
    seconds of silence, then the connection closes)."""

    answer: Answer
    stall: float = 0.0


@dataclass
class _Hang:
    seconds: float


def build_app(server: TestServer) -> web.Application:
    """The application serving ``server``'s responder, settings, faults and counters."""
    handlers = _Handlers(server)
    app = web.Application(client_max_size=MAX_BODY_BYTES)

    def add(method: str, path: str, handler: Any) -> None:
        app.router.add_route(method, path, handler)
        if not path.endswith("}"):
            app.router.add_route(method, path + "/", handler)  # a trailing slash is the same

    for prefix in _PREFIXES:
        for tail, endpoint in _MODEL_ENDPOINTS.items():
            add("*", f"{prefix}/{tail}", functools.partial(handlers.handle, endpoint))
        add("*", f"{prefix}/models", functools.partial(handlers.handle, "models"))
        add("*", prefix + "/models/{model_id:.+}", functools.partial(handlers.handle, "model"))
    for prefix in _DEPLOYMENT_PREFIXES:
        for tail, endpoint in _MODEL_ENDPOINTS.items():
            add("*", f"{prefix}/{tail}", functools.partial(handlers.handle, endpoint))
    app.router.add_route("*", "/{tail:.*}", functools.partial(handlers.handle, "not_found"))
    return app


def _drop_connection(request: web.Request) -> None:
    """Close the socket after what was written so far (no more bytes, no keep-alive)."""
    transport = request.transport
    if transport is not None:
        transport.close()


class _Handlers:
    def __init__(self, server: TestServer) -> None:
        self.server = server

    async def handle(self, endpoint: str, request: web.Request) -> web.StreamResponse:
        try:
            raw = await request.read()
        except web.HTTPRequestEntityTooLarge:
            return self._response(request, error_answer(413, "request body too large",
                                                        code="request_too_large"))
        query = request.query_string
        record = RecordedRequest(
            method=request.method, path=request.rel_url.raw_path,
            endpoint="models" if endpoint == "model" else endpoint,
            query={k: v[-1] for k, v in parse_qs(query).items()} if query else {},
            headers={name.lower(): value for name, value in request.headers.items()},
            body=parse_json(raw), deployment=request.match_info.get("deployment"),
            received_at=time.time())
        stats = self.server._stats
        stats.begin(record)
        finished = False

        def finish(status: int | None) -> None:
            nonlocal finished
            if not finished:
                finished = True
                stats.finish(record, status)

        try:
            try:
                outcome = await self._respond(endpoint, request, record)
            except Exception as exc:  # noqa: BLE001 - a bug here must not hang the client
                outcome = error_answer(500, f"pfkit test server error: "
                                            f"{type(exc).__name__}: {exc}", code="server_bug")
            if isinstance(outcome, Answer):
                finish(outcome.status)
                return self._response(request, outcome)
            if isinstance(outcome, _Stream):
                return await self._send_stream(request, outcome, finish)
            if isinstance(outcome, _Cut):
                return await self._send_cut(request, outcome, finish)
            await self.server._wait_unless_stopping(outcome.seconds)
            _drop_connection(request)
            return web.Response(status=204)  # never sent: the connection is closed
        finally:
            finish(None)

    # -- answering -----------------------------------------------------------------------------

    async def _respond(self, endpoint: str, request: web.Request, record: RecordedRequest
                       ) -> Answer | _Stream | _Cut | _Hang:
        if endpoint == "not_found":
            return error_answer(404, f"Invalid URL ({request.method} {record.path})",
                                code="unknown_url")
        allowed = _METHODS[endpoint]
        if request.method != allowed:
            answer = error_answer(405, f"Method {request.method} not allowed on {record.path}",
                                  code="method_not_allowed")
            answer.headers.append(("Allow", allowed))
            return answer
        faults = self.server._faults  # replaced, never mutated except the *_next counts
        refused = check_api_key(record.headers, faults.expected_api_key)
        if refused is not None:
            return refused
        if endpoint in ("models", "model"):
            return models_answer(request.match_info.get("model_id"), faults)
        return await self._model_request(endpoint, record)

    async def _model_request(self, endpoint: str, record: RecordedRequest
                             ) -> Answer | _Stream | _Cut | _Hang:
        server, body = self.server, record.body
        if not isinstance(body, dict):
            return error_answer(400, "We could not parse the JSON body of your request. "
                                     "(HINT: send a JSON object.)", code="invalid_json")
        kind = KINDS[endpoint]
        model = record.deployment or body.get("model")
        invalid = validate(kind, body, model, server._faults)
        if invalid is not None:
            return invalid
        fault = server._take_fault()
        if server.latency > 0:
            await asyncio.sleep(server.latency)
        if fault is not None and fault.kind not in _DELIVERY_FAULTS:
            return _fault_outcome(fault)
        if kind == "embeddings":
            answer = json_answer(200, embeddings_response(body, str(model),
                                                          server.embedding_dimensions))
            return _cut(answer, fault)
        return await self._completion(kind, body, str(model), fault)

    async def _completion(self, kind: str, body: dict[str, Any], model: str,
                          fault: Fault | None) -> Answer | _Stream | _Cut | _Hang:
        server = self.server
        answer = await self._ask_responder(kind, body)
        if isinstance(answer, Fault):
            if answer.kind not in _DELIVERY_FAULTS:
                return _fault_outcome(answer)
            fault = answer
            answer = answer.reply if answer.reply is not None else echo_responder(kind, body)
        try:
            replies = to_replies(answer, body.get("n") or 1)
        except (TypeError, KeyError, ValueError) as exc:
            return error_answer(500, f"bad responder reply: {exc}", code="responder_error")
        finished = fault is None or fault.kind != "unfinished"
        broken = fault is not None and fault.kind in ("cut", "stall")
        cut_after = fault.after if broken else None
        stall = fault.seconds if broken and fault.kind == "stall" else 0.0
        builder = (ChatBuilder if kind == "chat" else CompletionBuilder)(
            body, model, replies, server._request_id())
        if body.get("stream"):
            return _Stream(builder.stream_events(server.stream_chunk_chars, finished),
                           builder.request_id, server.first_chunk_delay, server.chunk_delay,
                           done=finished, cut_after=cut_after, stall=stall)
        answer = json_answer(200, builder.response(finished),
                             [("x-request-id", builder.request_id)])
        return _cut(answer, fault)

    async def _ask_responder(self, kind: str, body: dict[str, Any]) -> Any:
        try:
            answer = self.server.responder(kind, body)
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

    # -- sending -------------------------------------------------------------------------------

    @staticmethod
    def _headers(request: web.Request, content_type: str, extra: list[tuple[str, str]]
                 ) -> dict[str, str]:
        headers = {"Server": SERVER_NAME, "Content-Type": content_type}
        if request.keep_alive and request.version >= (1, 1):
            headers["Connection"] = "keep-alive"
        headers.update(extra)
        return headers

    def _response(self, request: web.Request, answer: Answer) -> web.Response:
        return web.Response(status=answer.status, body=answer.body,
                            headers=self._headers(request, JSON_TYPE, answer.headers))

    async def _send_cut(self, request: web.Request, cut: _Cut, finish: Any
                        ) -> web.StreamResponse:
        answer = cut.answer
        response = web.StreamResponse(status=answer.status,
                                      headers=self._headers(request, JSON_TYPE, answer.headers))
        response.content_length = len(answer.body)
        await response.prepare(request)
        finish(answer.status)
        await response.write(answer.body[:len(answer.body) // 2])
        if cut.stall:
            await self.server._wait_unless_stopping(cut.stall)
        _drop_connection(request)
        return response

    async def _send_stream(self, request: web.Request, stream: _Stream,
                           finish: Any) -> web.StreamResponse:
        """SSE, chunked on HTTP/1.1 (close-delimited on HTTP/1.0)."""
        response = web.StreamResponse(status=200, headers=self._headers(
            request, SSE_TYPE, [("Cache-Control", "no-cache"), ("x-request-id", stream.request_id)]))
        events = stream.events + [DONE_EVENT] if stream.done else list(stream.events)
        cut = stream.cut_after
        if cut is not None:
            events = events[:cut]
        await response.prepare(request)
        if cut is None and not stream.first_delay and not stream.delay:
            finish(200)  # the hot path: the whole stream in one write
            await response.write_eof(b"".join(events))
            return response
        if stream.first_delay:
            await response.write(b"")  # the headers now, the first event later
            await asyncio.sleep(stream.first_delay)
        last = len(events) - 1
        for i, event in enumerate(events):
            if i and stream.delay:
                await asyncio.sleep(stream.delay)
            if i == last and cut is None:
                finish(200)
                await response.write_eof(event)
                return response
            await response.write(event)
        finish(200)
        if cut is None:  # no events at all
            await response.write_eof()
            return response
        await response.write(b"")
        if stream.stall:
            await self.server._wait_unless_stopping(stream.stall)
        _drop_connection(request)
        return response


def _cut(answer: Answer, fault: Fault | None) -> Answer | _Cut:
    """``answer`` as it goes out under a delivery fault (cut or stalled half-way)."""
    if fault is None or fault.kind not in ("cut", "stall"):
        return answer
    return _Cut(answer, fault.seconds if fault.kind == "stall" else 0.0)


def _fault_outcome(fault: Fault) -> Answer | _Hang:
    return _Hang(fault.seconds) if fault.kind == "hang" else fault_answer(fault)
