"""The ASGI app that serves one flow: promptflow's serving API on Starlette.

``POST /score`` runs one line on the loaded flow (shared by every request of the worker, all in
one :class:`pfkit.Session`, so connection limits hold across requests); ``/health``,
``/version``, ``/swagger.json``, ``/docs``, ``/feedback`` and ``/metrics`` around it. Every error
answer is ``{"error": {"code", "message"}}`` with secrets masked and no stack trace.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import re
import time
import types
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .._secrets import scrub
from .._version import __version__
from ..engine import resident as keep_resident
from ..errors import InputError, LineTimeoutError
from ..observe import Observer, Observers
from ._auth import ApiKeys
from ._errors import MAX_MESSAGE, ApiError, error_body, json_bytes
from ._metrics import ServeMetrics
from ._openapi import build_openapi, public_outputs, render_docs

log = logging.getLogger("pfkit.serve")
feedback_log = logging.getLogger("pfkit.serve.feedback")

DEFAULT_TIMEOUT = 300.0  # seconds per /score request
DEFAULT_MAX_BODY = 10 * 1024 * 1024  # bytes
_REQUEST_ID = re.compile(r"[A-Za-z0-9._:/+=-]{1,128}")
ACCEPT_EVENT_STREAM = "text/event-stream"
ACCEPT_JSON = frozenset({"application/json", "application/*", "*/*"})
JSON_TYPE = "application/json"


@dataclass
class ServeOptions:
    """How a flow is served (all optional)."""

    timeout: float = DEFAULT_TIMEOUT
    max_body_bytes: int = DEFAULT_MAX_BODY
    api_keys: ApiKeys = field(default_factory=ApiKeys)
    feedback_file: Path | None = None
    build_info: str | None = None
    # the flow's folder and environment stay applied between requests (a process serving
    # this one flow: pfkit flow serve); restored at shutdown
    resident: bool = False


def app(flow: Any, *, session: Any = None, variant: str | None = None,
        connections: Mapping[str, str] | None = None,
        environment: Mapping[str, str] | None = None,
        api_keys: Any = None, api_keys_file: str | Path | None = None,
        timeout: float = DEFAULT_TIMEOUT, max_body_bytes: int = DEFAULT_MAX_BODY,
        feedback_file: str | Path | None = None, allow_outside_paths: bool = False,
        resident: bool = False) -> Any:
    """The ASGI app serving ``flow`` (a :class:`ServedApp`: Starlette around a direct
    ``POST /score``): a flow folder or file, or an
    :class:`~pfkit.engine.ExecutableFlow`. Without ``session`` the app opens its own
    :class:`pfkit.Session` and closes it at shutdown. ``api_keys`` (a list or a comma-separated
    string) and ``$PFKIT_API_KEYS`` / ``api_keys_file`` turn on bearer authentication.

    The flow's folder, ``sys.path`` entry and environment are applied around its tool calls
    only, so the host service keeps its own between requests. ``resident=True`` (what
    ``pfkit flow serve`` uses: its process serves this one flow) keeps them applied from
    startup to shutdown instead, which saves a ``chdir`` and an environment swap per
    request."""
    from ..session import Session

    _require_serve_extra()
    own_session = session is None
    session = session if session is not None else Session()
    if isinstance(flow, (str, Path)):
        flow = load_served_flow(flow, session=session, variant=variant, connections=connections,
                                environment=environment, allow_outside_paths=allow_outside_paths)
    elif environment:
        flow = flow.with_environment(dict(environment))
    keys = api_keys if isinstance(api_keys, ApiKeys) else ApiKeys.from_sources(api_keys,
                                                                              api_keys_file)
    options = ServeOptions(timeout=timeout, max_body_bytes=max_body_bytes, api_keys=keys,
                           feedback_file=Path(feedback_file) if feedback_file else None,
                           build_info=os.environ.get("BUILD_INFO"), resident=resident)
    return FlowServer(flow, session, options, own_session=own_session).asgi()


def _require_serve_extra() -> None:
    import importlib.util

    missing = [name for name in ("starlette", "prometheus_client")
               if importlib.util.find_spec(name) is None]
    if missing:
        from ..errors import UserError

        raise UserError(f"serving needs the serve extra ({', '.join(missing)} missing)",
                        code="MissingDependency", hint="pip install 'pfkit[serve]'")


def load_served_flow(path: str | Path, *, session: Any, variant: str | None = None,
                     connections: Mapping[str, str] | None = None,
                     environment: Mapping[str, str] | None = None,
                     allow_outside_paths: bool = False) -> Any:
    """Load a flow for serving; a flow that reads files from outside its folder is refused
    unless ``allow_outside_paths``."""
    import warnings

    from ..spec import refuse_outside_paths

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # refused (or allowed) explicitly below
        flow = session.load_executable(path, variant=variant,
                                       connection_overrides=dict(connections or {}))
    spec = getattr(flow, "spec", None)
    if spec is not None and hasattr(spec, "outside_paths"):
        refuse_outside_paths(spec, allow=allow_outside_paths)
    if environment:
        flow = flow.with_environment(dict(environment))
    return flow


def _parse_json(body: bytes, what: str) -> Any:
    if not body.strip():
        return None
    try:
        return json.loads(body)
    except (ValueError, RecursionError) as exc:
        where = (f" (line {exc.lineno}, column {exc.colno}: {exc.msg})"
                 if isinstance(exc, json.JSONDecodeError) else "")
        raise ApiError(400, "InvalidJson", f"the {what} is not valid JSON{where}") from None


def _may_call_models(flow: Any) -> bool:
    """Whether a line of the flow can call a model (so token usage is worth observing)."""
    bound = getattr(flow, "bound", None)
    nodes = getattr(bound, "nodes", None)
    if nodes is None:
        return True  # not a DAG flow: its code may call models anywhere
    for node in nodes:
        spec = node.spec
        source = getattr(spec, "source", None)
        if (spec.type in ("llm", "custom_llm") or spec.connection
                or (source is not None and source.type != "code")
                or "connection" in node.literal_kwargs):
            return True
    return False


def _media_types(accept: str | None) -> set[str]:
    if not accept or not accept.strip():
        return {"*/*"}
    return {part.split(";", 1)[0].strip().lower() for part in accept.split(",") if part.strip()}


def format_event(data: Any) -> bytes:
    """One server-sent event, as promptflow writes it: ``data: {json}\\n\\n``."""
    return b"data: " + json_bytes(data) + b"\n\n"


class _StreamTap(Observer):
    """Per streamed request: which nodes returned a generator, and each chunk as it comes."""

    def __init__(self) -> None:
        self.queue: asyncio.Queue[tuple[Any, ...]] = asyncio.Queue()
        self.node_outputs: dict[str, Any] = {}
        self.inputs: dict[str, Any] = {}

    def on_line_start(self, line_number: int, inputs: dict[str, Any]) -> None:
        self.inputs = inputs

    def on_node_end(self, line_number: int | None, run: Any) -> None:
        if run.status == "Completed":
            self.node_outputs[run.node] = run.output

    def on_stream_item(self, node: str, line_number: int | None, item: Any) -> None:
        self.queue.put_nowait(("item", node, item))


class FlowServer:
    def __init__(self, flow: Any, session: Any, options: ServeOptions, *,
                 own_session: bool) -> None:
        self.flow = flow
        self.session = session
        self.options = options
        self.own_session = own_session
        self.outputs = public_outputs(flow)
        self.required = [name for name, d in flow.inputs.items()
                         if not getattr(d, "has_default", False)]
        self.metrics = ServeMetrics(flow.name)
        # the token counter listens only where a model can be called: observing costs time
        self.observers = (Observers((self.metrics.observer,)) if _may_call_models(flow)
                          else None)
        self.openapi = build_openapi(flow, auth=bool(options.api_keys))
        self._openapi_bytes = json_bytes(self.openapi)
        self._docs_bytes = render_docs(self.openapi).encode("utf-8")
        self._health = json_bytes({"status": "Healthy", "version": __version__})
        self._lines = 0

    # ------------------------------------------------------------------ the ASGI app

    def asgi(self) -> Any:
        from contextlib import asynccontextmanager

        from starlette.applications import Starlette
        from starlette.exceptions import HTTPException
        from starlette.routing import Route

        @asynccontextmanager
        async def lifespan(_app: Any):
            kept = (keep_resident(self.flow) if self.options.resident
                    else contextlib.nullcontext())
            try:
                with kept:
                    yield
            finally:
                if self.own_session:
                    await self.session.aclose()

        routes = [
            Route("/score", self.endpoint("score", self.score, auth=True), methods=["POST"]),
            Route("/health", self.endpoint("health", self.health, auth=False),
                  methods=["GET"]),
            Route("/version", self.endpoint("version", self.version, auth=False),
                  methods=["GET"]),
            Route("/swagger.json", self.endpoint("swagger", self.swagger, auth=True),
                  methods=["GET"]),
            Route("/docs", self.endpoint("docs", self.docs, auth=True), methods=["GET"]),
            Route("/", self.endpoint("docs", self.docs, auth=True), methods=["GET"]),
            Route("/feedback", self.endpoint("feedback", self.feedback, auth=True),
                  methods=["POST"]),
            Route("/metrics", self.endpoint("metrics", self.prometheus, auth=True),
                  methods=["GET"]),
        ]

        async def http_error(request: Any, exc: HTTPException) -> Any:
            from starlette.responses import Response

            code = {404: "NotFound", 405: "MethodNotAllowed"}.get(exc.status_code, "HttpError")
            message = {404: f"no endpoint {request.url.path}; see /docs",
                       405: f"{request.method} is not allowed on {request.url.path}"
                       }.get(exc.status_code, str(exc.detail))
            self.metrics.error(code)
            self.metrics.observe("other", exc.status_code, 0.0)
            return Response(error_body(code, message), exc.status_code,
                            headers=dict(exc.headers or {}), media_type=JSON_TYPE)

        async def internal_error(request: Any, exc: Exception) -> Any:
            from starlette.responses import Response

            log.error("internal error on %s: %s", request.url.path, type(exc).__name__)
            return Response(error_body("InternalError", "the server failed to answer"), 500,
                            media_type=JSON_TYPE)

        asgi = Starlette(routes=routes, lifespan=lifespan,
                         exception_handlers={HTTPException: http_error,
                                             Exception: internal_error})
        asgi.state.pfkit = self
        return ServedApp(self, asgi)

    def endpoint(self, name: str, handler: Any, *, auth: bool) -> Any:
        from starlette.responses import Response

        metrics = self.metrics
        keys = self.options.api_keys

        async def call(request: Any) -> Any:
            start = time.perf_counter()
            metrics.in_flight.inc()
            try:
                if auth and keys and not keys.accepts(request.headers.get("authorization")):
                    raise ApiError(401, "Unauthorized",
                                   "a valid API key is required: send Authorization: Bearer KEY",
                                   {"WWW-Authenticate": "Bearer"})
                response = await handler(request)
            except ApiError as exc:
                metrics.error(exc.code)
                if exc.status >= 500:  # the operator's record of it (scrubbed, no traceback)
                    log.warning("%s %s: %d %s: %s", request.method, request.url.path,
                                exc.status, exc.code, scrub(exc.message)[:MAX_MESSAGE])
                response = Response(error_body(exc.code, exc.message), exc.status,
                                    headers=exc.headers, media_type=JSON_TYPE)
            except Exception as exc:  # noqa: BLE001 - never a stack trace to the client
                log.error("internal error in %s: %s", name, type(exc).__name__)
                metrics.error("InternalError")
                response = Response(error_body("InternalError", "the server failed to answer"),
                                    500, media_type=JSON_TYPE)
            finally:
                metrics.in_flight.dec()
            request_id = request.headers.get("x-request-id")
            if request_id and _REQUEST_ID.fullmatch(request_id):  # echoed for correlation
                target = response.response if isinstance(response, _Streamed) else response
                target.headers["x-request-id"] = request_id
            if isinstance(response, _Streamed):  # observed when the stream ends
                response.on_end = lambda: metrics.observe(name, 200, time.perf_counter() - start)
            else:
                metrics.observe(name, response.status_code, time.perf_counter() - start)
            return response

        return call

    # ------------------------------------------------------------------ request bodies

    async def read_json(self, request: Any, *, what: str) -> Any:
        limit = self.options.max_body_bytes
        length = request.headers.get("content-length")
        if length is not None:
            if not length.strip().isdigit():
                raise ApiError(400, "InvalidRequest", "Content-Length is not a number")
            if int(length) > limit:
                raise ApiError(413, "RequestTooLarge",
                               f"the request body ({int(length)} bytes) is larger than the "
                               f"limit of {limit} bytes")
        if length is not None:  # the HTTP parser delivers exactly that many bytes
            return _parse_json(await request.body(), what)
        chunks: list[bytes] = []
        size = 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                raise ApiError(413, "RequestTooLarge",
                               f"the request body is larger than the limit of {limit} bytes")
            chunks.append(chunk)
        return _parse_json(b"".join(chunks), what)

    # ------------------------------------------------------------------ /score

    def _check_accept(self, header: str | None) -> tuple[bool, bool]:
        accept = _media_types(header)
        wants_stream = ACCEPT_EVENT_STREAM in accept
        wants_json = bool(ACCEPT_JSON & accept)
        if not wants_stream and not wants_json:
            raise ApiError(406, "UserError",
                           f"Media type {(header or '')[:200]} in Accept header is not "
                           "acceptable. Supported media type(s): application/json, "
                           "text/event-stream")
        return wants_stream, wants_json

    def _inputs_of(self, data: Any) -> dict[str, Any]:
        if data is None:
            data = {}
        if not isinstance(data, dict):
            raise ApiError(400, "UserError",
                           "the request body must be a JSON object of flow inputs, got "
                           f"{type(data).__name__}"
                           + (f"; inputs: {', '.join(self.flow.inputs)}" if self.flow.inputs
                              else ""))
        missing = [name for name in self.required if name not in data]
        if missing:
            raise ApiError(400, "UserError",
                           f"Required input fields {missing} are missing in request data; "
                           f"the flow's inputs: {', '.join(self.flow.inputs)}")
        return data

    def _next_line(self) -> int:
        self._lines += 1
        return self._lines

    async def score(self, request: Any) -> Any:
        """/score through Starlette: streamed answers (the JSON answers take the direct path,
        :meth:`score_direct`, and come here only when the app is mounted in another one)."""
        wants_stream, wants_json = self._check_accept(request.headers.get("accept"))
        data = self._inputs_of(await self.read_json(request, what="request body"))
        line_number = self._next_line()
        if wants_stream:
            return await self._score_stream(data, line_number, wants_json)
        result = await self.flow.arun(data, line_number=line_number,
                                      timeout=self.options.timeout, observers=self.observers)
        if not result.ok:
            raise self._line_error(result)
        return self._json_response(result.outputs)

    async def score_direct(self, scope: Any, headers: dict[bytes, bytes], receive: Any,
                           send: Any) -> None:
        """POST /score answered in JSON straight on ASGI: the hot path, without the framework's
        request and response objects. Same checks, answers and metrics as :meth:`score`."""
        metrics = self.metrics
        start = time.perf_counter()
        metrics.in_flight.inc()
        extra: dict[str, str] = {}
        try:
            keys = self.options.api_keys
            if keys and not keys.accepts(_text(headers.get(b"authorization"))):
                raise ApiError(401, "Unauthorized",
                               "a valid API key is required: send Authorization: Bearer KEY",
                               {"WWW-Authenticate": "Bearer"})
            self._check_accept(_text(headers.get(b"accept")))
            raw = await self._receive_body(headers, receive)
            if raw is None:
                return  # the client went away
            data = self._inputs_of(_parse_json(raw, "request body"))
            result = await self.flow.arun(data, line_number=self._next_line(),
                                          timeout=self.options.timeout,
                                          observers=self.observers)
            if not result.ok:
                raise self._line_error(result)
            status = 200
            outputs = result.outputs
            body = json_bytes({name: outputs[name] for name in self.outputs if name in outputs})
        except ApiError as exc:
            metrics.error(exc.code)
            if exc.status >= 500:
                log.warning("POST /score: %d %s: %s", exc.status, exc.code,
                            scrub(exc.message)[:MAX_MESSAGE])
            status, body, extra = exc.status, error_body(exc.code, exc.message), exc.headers
        except Exception as exc:  # noqa: BLE001 - never a stack trace to the client
            log.error("internal error in score: %s", type(exc).__name__)
            metrics.error("InternalError")
            status, body = 500, error_body("InternalError", "the server failed to answer")
        finally:
            metrics.in_flight.dec()
        response_headers = [(b"content-type", b"application/json"),
                            (b"content-length", str(len(body)).encode())]
        response_headers += [(k.lower().encode("latin-1"), v.encode("latin-1"))
                             for k, v in extra.items()]
        request_id = _text(headers.get(b"x-request-id"))
        if request_id and _REQUEST_ID.fullmatch(request_id):
            response_headers.append((b"x-request-id", request_id.encode()))
        await send({"type": "http.response.start", "status": status,
                    "headers": response_headers})
        await send({"type": "http.response.body", "body": body})
        metrics.observe("score", status, time.perf_counter() - start)

    async def _receive_body(self, headers: dict[bytes, bytes], receive: Any) -> bytes | None:
        limit = self.options.max_body_bytes
        length = headers.get(b"content-length")
        if length is not None:
            if not length.strip().isdigit():
                raise ApiError(400, "InvalidRequest", "Content-Length is not a number")
            if int(length) > limit:
                raise ApiError(413, "RequestTooLarge",
                               f"the request body ({int(length)} bytes) is larger than the "
                               f"limit of {limit} bytes")
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return None
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > limit:
                raise ApiError(413, "RequestTooLarge",
                               f"the request body is larger than the limit of {limit} bytes")
            chunks.append(chunk)
            if not message.get("more_body", False):
                return b"".join(chunks) if len(chunks) != 1 else chunks[0]

    def _json_response(self, outputs: Mapping[str, Any]) -> Any:
        from starlette.responses import Response

        body = json_bytes({name: outputs[name] for name in self.outputs if name in outputs})
        return Response(body, 200, media_type=JSON_TYPE)

    def _line_error(self, result: Any) -> ApiError:
        error = result.error or {}
        exc = result.exception
        message = str(error.get("message") or "the flow failed")
        code = str(error.get("code") or "FlowExecutionError")
        if isinstance(exc, InputError):
            message = re.sub(r" in line \d+ of input data", " in the request body", message)
            where = (error.get("location") or {}).get("field")
            if where and where not in message:
                message = f"{where}: {message}"
            return ApiError(400, code, message)
        if isinstance(exc, LineTimeoutError):
            return ApiError(504, "RequestTimeout",
                            f"the flow did not finish within {self.options.timeout:g} seconds")
        node = (error.get("location") or {}).get("node")
        if node and f"'{node}'" not in message:
            message = f"node '{node}': {message}"
        return ApiError(500, code, message)

    async def _score_stream(self, data: dict[str, Any], line_number: int,
                            wants_json: bool) -> Any:
        from starlette.responses import Response, StreamingResponse

        tap = _StreamTap()
        task = asyncio.ensure_future(self.flow.arun(
            data, line_number=line_number, timeout=self.options.timeout,
            observers=Observers((self.metrics.observer, tap))))
        task.add_done_callback(lambda _t: tap.queue.put_nowait(("done",)))
        try:
            first = await tap.queue.get()
        except asyncio.CancelledError:
            task.cancel()
            raise
        if first[0] == "done":  # nothing streamed: an ordinary answer
            result = task.result()
            if not result.ok:
                raise self._line_error(result)
            if wants_json:
                return self._json_response(result.outputs)
            body = format_event({n: result.outputs[n] for n in self.outputs
                                 if n in result.outputs})
            return Response(body, 200, media_type=ACCEPT_EVENT_STREAM)
        fields_of = self._stream_fields(tap)
        streamed = {name for names in fields_of.values() for name in names}
        head = self._non_stream_fields(tap, streamed)

        async def events():
            try:
                if head:
                    yield format_event(head)
                message = first
                while message[0] != "done":
                    _, node, item = message
                    for name in fields_of.get(node, ()):
                        yield format_event({name: item})
                    message = await tap.queue.get()
                result = task.result()
                if not result.ok:
                    error = self._line_error(result)
                    self.metrics.error(error.code)
                    yield format_event({"error": {"code": error.code,
                                                  "message": error.message}})
            finally:
                if not task.done():
                    task.cancel()

        response = StreamingResponse(events(), 200, media_type=ACCEPT_EVENT_STREAM,
                                     headers={"Cache-Control": "no-cache",
                                              "X-Accel-Buffering": "no"})
        return _Streamed(response)

    def _stream_fields(self, tap: _StreamTap) -> dict[str, list[str]]:
        """node -> the public outputs that are that node's stream."""
        from ..spec import NodeRef

        streaming = {node for node, value in tap.node_outputs.items()
                     if isinstance(value, (types.GeneratorType, types.AsyncGeneratorType))}
        fields: dict[str, list[str]] = {}
        for name in self.outputs:
            ref = getattr(self.flow.outputs[name], "reference", None)
            if isinstance(ref, NodeRef) and ref.node in streaming and not ref.path:
                fields.setdefault(ref.node, []).append(name)
        return fields

    def _non_stream_fields(self, tap: _StreamTap, streamed: set[str]) -> dict[str, Any]:
        """The other outputs, known once every node has run (before the stream is read)."""
        from ..spec import FlowInputRef, Literal, NodeRef

        head: dict[str, Any] = {}
        for name in self.outputs:
            if name in streamed:
                continue
            ref = getattr(self.flow.outputs[name], "reference", None)
            if isinstance(ref, Literal):
                head[name] = ref.value
            elif isinstance(ref, FlowInputRef):
                value = tap.inputs.get(ref.name)
                if value is None and ref.name in self.flow.inputs:
                    definition = self.flow.inputs[ref.name]
                    value = definition.default if definition.has_default else None
                head[name] = value
            elif isinstance(ref, NodeRef):
                value = tap.node_outputs.get(ref.node)
                try:
                    for key in ref.path:
                        value = value[key] if isinstance(value, (dict, list, tuple)) else \
                            getattr(value, key)
                except (KeyError, IndexError, TypeError, AttributeError):
                    value = None
                head[name] = value
        return head

    # ------------------------------------------------------------------ the others

    async def health(self, request: Any) -> Any:
        from starlette.responses import Response

        return Response(self._health, 200, media_type=JSON_TYPE)

    async def version(self, request: Any) -> Any:
        from starlette.responses import Response

        build = self.options.build_info
        try:
            build_info: Any = json.loads(build) if build else ""
        except ValueError:
            build_info = build
        return Response(json_bytes({"status": "Healthy", "build_info": build_info,
                                    "version": __version__, "flow": self.flow.name}),
                        200, media_type=JSON_TYPE)

    async def swagger(self, request: Any) -> Any:
        from starlette.responses import Response

        return Response(self._openapi_bytes, 200, media_type=JSON_TYPE)

    async def docs(self, request: Any) -> Any:
        from starlette.responses import Response

        return Response(self._docs_bytes, 200, media_type="text/html; charset=utf-8", headers={
            "Content-Security-Policy": "default-src 'none'; script-src 'unsafe-inline'; "
                                       "style-src 'unsafe-inline'; connect-src 'self'",
            "X-Content-Type-Options": "nosniff"})

    async def feedback(self, request: Any) -> Any:
        from starlette.responses import Response

        body = await self.read_json(request, what="feedback body")
        if body is None:
            raise ApiError(400, "UserError", "the feedback body is empty: send a JSON value")
        record = {"time": time.time(), "flow": self.flow.name, "feedback": body}
        for header in ("x-request-id", "x-ms-client-request-id", "traceparent"):
            if request.headers.get(header):
                record[header] = request.headers[header][:256]
        line = json_bytes(record).decode("utf-8")
        feedback_log.info("%s", line)
        if self.options.feedback_file is not None:
            await asyncio.to_thread(_append_line, self.options.feedback_file, line)
        self.metrics.feedback.inc()
        return Response(json_bytes({"status": "Feedback received."}), 200, media_type=JSON_TYPE)

    async def prometheus(self, request: Any) -> Any:
        from starlette.responses import Response

        body, content_type = self.metrics.exposition()
        return Response(body, 200, headers={"Content-Type": content_type})


class ServedApp:
    """The ASGI app of a served flow: ``POST /score`` answered in JSON directly (the hot path);
    streamed answers, the other endpoints and the lifespan through Starlette (:attr:`starlette`).
    ``app.state.pfkit`` is the :class:`FlowServer`."""

    def __init__(self, server: FlowServer, starlette: Any) -> None:
        self.server = server
        self.starlette = starlette
        self.state = starlette.state

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if (scope["type"] == "http" and scope["path"] == "/score"
                and scope["method"] == "POST"):
            headers = dict(scope["headers"])
            if ACCEPT_EVENT_STREAM.encode() not in headers.get(b"accept", b""):
                await self.server.score_direct(scope, headers, receive, send)
                return
        await self.starlette(scope, receive, send)


def _text(value: bytes | None) -> str | None:
    return value.decode("latin-1") if value is not None else None


class _Streamed:
    """A streaming response whose end is observed (its latency lasts until the last event)."""

    def __init__(self, response: Any) -> None:
        self.response = response
        self.status_code = response.status_code
        self.on_end: Any = None

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        try:
            await self.response(scope, receive, send)
        finally:
            if self.on_end is not None:
                self.on_end()


def _append_line(path: Path, line: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a", encoding="utf-8") as handle:
        handle.write(line + "\n")


__all__ = ["DEFAULT_MAX_BODY", "DEFAULT_TIMEOUT", "FlowServer", "ServeOptions", "ServedApp", "app",
           "format_event", "load_served_flow"]
