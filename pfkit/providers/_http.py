"""How an OpenAI-compatible model's requests reach the server: the transports.

Both take a JSON body, POST it to a path of the API, and give back the decoded JSON (or, for a
stream, the decoded server-sent events). Neither retries: the model does (see ``_openai``).
Failures come out as the neutral :class:`HttpFailure` kinds below, so the model classifies them
once, whatever transport carried the request.

* :class:`AiohttpTransport` (the default) speaks to the server with ``aiohttp`` directly. A call
  costs about a fifth of the CPU it costs through the ``openai`` client (which builds httpx
  request and response objects around every call, even on its aiohttp transport), and CPU per
  call is what bounds an LLM-bound batch or endpoint on a small machine: see bench/RESULTS.md.
  It honours ``HTTP(S)_PROXY`` / ``NO_PROXY`` and ``SSL_CERT_FILE`` as the openai client does
  (read when the transport opens its pool).
* :class:`OpenAIClientTransport` sends the same requests through the official ``openai``
  package's async client; ``PFKIT_OPENAI_TRANSPORT=openai`` selects it (to compare, or where a
  setup needs something of httpx's).

A transport belongs to one event loop (its connection pool does): the model keeps one per loop.
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
import ssl
import sys
from collections.abc import AsyncIterator
from typing import Any

from .. import _version

TRANSPORT_ENV = "PFKIT_OPENAI_TRANSPORT"
TRANSPORTS = ("aiohttp", "openai")

# At most this many connections to one server per loop (a connection's max_concurrency and the
# run's --concurrency are the real limits; this only stops a runaway).
POOL_LIMIT = 1000


class HttpFailure(Exception):
    """A request that did not give a usable answer."""

    retryable = False


class StatusFailure(HttpFailure):
    """The server answered with an error status. ``message`` is as the openai client words it
    (``Error code: 404 - <message>``); ``code`` is the error body's ``code``, if any."""

    def __init__(self, status: int, message: str, code: str | None = None,
                 headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.code = code
        self.headers = headers or {}

    @property
    def retryable(self) -> bool:  # type: ignore[override]
        return self.status == 429 or self.status >= 500


class TimeoutFailure(HttpFailure):
    """No (complete) answer within the timeout."""

    retryable = True


class ConnectFailure(HttpFailure):
    """The connection could not be made or broke off. ``unreachable`` says why the server could
    not be reached at all (refused, no such host), or is None for a connection that broke."""

    retryable = True

    def __init__(self, message: str, unreachable: str | None = None) -> None:
        super().__init__(message)
        self.unreachable = unreachable


class MalformedFailure(HttpFailure):
    """An answer that is not what an OpenAI-compatible API sends (not JSON, say)."""


class RequestFailure(HttpFailure):
    """A request that cannot be sent (a value JSON cannot carry, such as NaN)."""


def status_failure(status: int, text: str, headers: dict[str, str]) -> StatusFailure:
    """The failure for an error answer, worded as the openai client words it (``Error code:
    400 - <the error's message>``); a body that is not JSON is quoted, shortened."""
    text = text.strip()
    try:
        body = json.loads(text)
    except ValueError:
        shown = f" - {text[:300]}" if text else ""
        return StatusFailure(status, f"Error code: {status}{shown}", None, headers)
    data = body.get("error", body) if isinstance(body, dict) else None
    message = data.get("message") if isinstance(data, dict) else None
    code = data.get("code") if isinstance(data, dict) else None
    shown = f" - {message}" if isinstance(message, str) and message else ""
    return StatusFailure(status, f"Error code: {status}{shown}",
                         code if isinstance(code, str) else None, headers)


def encode(body: dict[str, Any]) -> bytes:
    try:
        return json.dumps(body, ensure_ascii=False, separators=(",", ":"),
                          allow_nan=False).encode("utf-8")
    except (TypeError, ValueError) as exc:
        raise RequestFailure(f"the request cannot be sent as JSON: {exc}") from None


def decode(data: bytes) -> Any:
    try:
        return json.loads(data)
    except ValueError:
        raise MalformedFailure("the answer is not JSON") from None


def chosen_transport() -> str:
    """The transport ``PFKIT_OPENAI_TRANSPORT`` names (aiohttp when unset); the model refuses
    a name it does not know."""
    return (os.environ.get(TRANSPORT_ENV) or "aiohttp").strip().lower()


class Endpoint:
    """Where requests go and how they are signed: the URL of each API path and the headers."""

    def __init__(self, *, kind: str, base_url: str | None, api_key: str,
                 api_version: str | None, organization: str | None) -> None:
        self.azure = kind == "azure_openai"
        self.api_version = api_version or "2024-02-01"
        if self.azure:
            self.root = f"{(base_url or '').rstrip('/')}/openai"
        else:  # as the openai client: OPENAI_BASE_URL, else api.openai.com
            self.root = (base_url or os.environ.get("OPENAI_BASE_URL")
                         or "https://api.openai.com/v1").rstrip("/")
        self.headers = {"Content-Type": "application/json", "Accept": "application/json",
                        "User-Agent": f"pfkit/{_version.__version__}"}
        if self.azure:
            self.headers["api-key"] = api_key or "unused"
        else:
            self.headers["Authorization"] = f"Bearer {api_key or 'unused'}"
            if organization:
                self.headers["OpenAI-Organization"] = organization
        self._urls: dict[tuple[str, str], str] = {}

    def url(self, path: str, body: dict[str, Any]) -> str:
        """Azure puts the deployment (the request's model) in the path, as the openai client
        does; every other server takes the path as it is."""
        model = body.get("model") if self.azure else None
        key = (path, model if isinstance(model, str) else "")
        url = self._urls.get(key)
        if url is None:
            if self.azure:
                prefix = f"/deployments/{key[1]}" if key[1] else ""
                url = f"{self.root}{prefix}{path}?api-version={self.api_version}"
            else:
                url = f"{self.root}{path}"
            if len(self._urls) < 256:
                self._urls[key] = url
        return url


_prefetch_thread: Any = None  # the background import, once started


def prefetch_aiohttp() -> None:
    """Import aiohttp in a background thread (once per process), so that its ~0.1-0.3 s import
    (it loads the system's CA certificates at import) overlaps binding the flow and reading the
    data instead of delaying the first model call."""
    global _prefetch_thread
    if _prefetch_thread is not None or "aiohttp" in sys.modules:
        return
    import importlib
    import threading

    def load() -> None:
        try:
            importlib.import_module("aiohttp")
        except Exception:  # noqa: BLE001 - the real import, on first use, reports it
            pass

    _prefetch_thread = threading.Thread(target=load, name="pfkit-prefetch-aiohttp",
                                        daemon=True)
    _prefetch_thread.start()


async def prefetched(timeout: float = 10.0) -> None:
    """Wait (off the event loop) until a :func:`prefetch_aiohttp` import has finished: a batch
    run calls this before its first line, so the import is part of starting up, not of the
    first lines (which all wait on it otherwise)."""
    thread = _prefetch_thread
    if thread is not None and thread.is_alive():
        await asyncio.to_thread(thread.join, timeout)


def _ssl_context() -> ssl.SSLContext | None:
    """Certificates as httpx finds them: ``SSL_CERT_FILE``, else certifi's bundle."""
    cafile = os.environ.get("SSL_CERT_FILE")
    if not cafile:
        try:
            import certifi
        except ImportError:
            return None
        cafile = certifi.where()
    return ssl.create_default_context(cafile=cafile)


class AiohttpTransport:
    """Requests through one ``aiohttp`` session (and its keep-alive pool) on this loop."""

    def __init__(self, endpoint: Endpoint, timeout: float) -> None:
        import aiohttp

        self._aiohttp = aiohttp
        self.endpoint = endpoint
        self._timeout = aiohttp.ClientTimeout(total=timeout)
        self._session: Any = None
        self._proxy: dict[str, Any] = {}
        self.closed = False  # once closed, the model opens a new transport for the loop

    def _open(self) -> Any:
        if self._session is None or self._session.closed:
            aiohttp = self._aiohttp
            https = self.endpoint.root.startswith("https:")
            connector = aiohttp.TCPConnector(limit=POOL_LIMIT, limit_per_host=POOL_LIMIT,
                                             ssl=_ssl_context() if https else False)
            # The proxy is looked up once, here: aiohttp's trust_env would look it up (and read
            # ~/.netrc) in a thread for every request.
            self._proxy = _env_proxy(self.endpoint.root)
            self._session = aiohttp.ClientSession(connector=connector, timeout=self._timeout)
        return self._session

    def _failure(self, exc: BaseException) -> HttpFailure:
        aiohttp = self._aiohttp
        if isinstance(exc, HttpFailure):
            return exc
        if isinstance(exc, asyncio.TimeoutError):
            return TimeoutFailure("Request timed out.")
        if isinstance(exc, aiohttp.ClientConnectorError) and \
                not isinstance(exc, aiohttp.ClientSSLError):  # refused, no such host
            reason = str(exc) or type(exc).__name__
            return ConnectFailure(reason, unreachable=reason)
        return ConnectFailure(f"Connection error: {type(exc).__name__}: {exc}")

    async def _send(self, path: str, body: dict[str, Any], headers: dict[str, str]) -> Any:
        """The response, its status checked (an error status is raised as a failure)."""
        data = encode(body)
        try:
            response = await self._open().post(self.endpoint.url(path, body), data=data,
                                               headers=headers, **self._proxy)
            if response.status >= 400:
                try:
                    raw = await response.read()
                finally:
                    response.release()
                raise status_failure(response.status, raw.decode("utf-8", "replace"),
                                     _lower(response.headers))
        except (asyncio.TimeoutError, self._aiohttp.ClientError, OSError) as exc:
            raise self._failure(exc) from exc
        return response

    async def post(self, path: str, body: dict[str, Any]) -> Any:
        response = await self._send(path, body, self.endpoint.headers)
        try:
            raw = await response.read()
        except (asyncio.TimeoutError, self._aiohttp.ClientError, OSError) as exc:
            raise self._failure(exc) from exc
        finally:
            response.release()
        return decode(raw)

    async def stream(self, path: str, body: dict[str, Any]) -> ServerEvents:
        """The answer's events, once its status says it is one (errors are raised here)."""
        response = await self._send(path, body,
                                    {**self.endpoint.headers, "Accept": "text/event-stream"})
        return ServerEvents(response, self._failure)

    async def close(self) -> None:
        self.closed = True
        if self._session is not None and not self._session.closed:
            await self._session.close()


def _env_proxy(url: str) -> dict[str, Any]:
    """``proxy`` / ``proxy_auth`` for requests to ``url`` from HTTP(S)_PROXY and NO_PROXY (as
    httpx and the openai client honour them), or nothing."""
    from aiohttp.helpers import get_env_proxy_for_url
    from yarl import URL

    try:
        proxy, auth = get_env_proxy_for_url(URL(url))
    except (LookupError, ValueError):
        return {}
    return {"proxy": proxy, "proxy_auth": auth}


def _lower(headers: Any) -> dict[str, str]:
    return {str(name).lower(): str(value) for name, value in headers.items()}


class ServerEvents:
    """The JSON payloads of a server-sent event stream, up to ``data: [DONE]``. An event whose
    payload carries an ``error`` raises it; a connection that breaks raises a ConnectFailure."""

    def __init__(self, response: Any, failure: Any) -> None:
        self._response = response
        self._failure = failure

    async def __aiter__(self) -> AsyncIterator[dict[str, Any]]:
        data: list[str] = []
        pending = b""
        try:
            async for piece in self._response.content.iter_any():
                pending += piece
                while True:
                    end = pending.find(b"\n")
                    if end < 0:
                        break
                    line = pending[:end].rstrip(b"\r").decode("utf-8")
                    pending = pending[end + 1:]
                    if line.startswith("data:"):
                        data.append(line[5:].lstrip(" "))
                        continue
                    if line or not data:
                        continue  # event:, id:, retry:, comments; a blank line ending nothing
                    payload, data = "\n".join(data), []
                    if payload == "[DONE]":
                        return
                    event = decode(payload.encode("utf-8"))
                    if isinstance(event, dict) and event.get("error"):
                        error = event["error"]
                        message = error.get("message") if isinstance(error, dict) else error
                        raise MalformedFailure(f"the server sent an error: {message}")
                    if isinstance(event, dict):
                        yield event
        except HttpFailure:
            raise
        except Exception as exc:  # noqa: BLE001 - a broken connection, a bad byte
            raise self._failure(exc) from exc

    async def close(self) -> None:
        self._response.release()


class OpenAIClientTransport:
    """The same requests through the official ``openai`` async client (imported on first use),
    its failures mapped to the neutral kinds."""

    def __init__(self, timeout: float, *, kind: str, api_key: str, base_url: str | None,
                 api_version: str | None, organization: str | None) -> None:
        import openai

        self._openai = openai
        try:  # aiohttp under the client when installed (openai[aiohttp])
            http_client = openai.DefaultAioHttpClient()
        except (RuntimeError, AttributeError):
            http_client = None
        common = {"api_key": api_key or "unused", "max_retries": 0, "timeout": timeout,
                  "http_client": http_client}
        if kind == "azure_openai":
            self._client = openai.AsyncAzureOpenAI(azure_endpoint=base_url,
                                                   api_version=api_version or "2024-02-01",
                                                   **common)
        else:
            self._client = openai.AsyncOpenAI(base_url=base_url, organization=organization,
                                              **common)
        self.closed = False

    def _failure(self, exc: BaseException) -> HttpFailure:
        openai = self._openai
        if isinstance(exc, openai.APIStatusError):
            headers = _lower(getattr(exc.response, "headers", {}) or {})
            code = getattr(exc, "code", None)
            return StatusFailure(exc.status_code, exc.message,
                                 code if isinstance(code, str) else None, headers)
        if isinstance(exc, openai.APITimeoutError) or isinstance(exc, openai.APIConnectionError):
            unreachable = _unreachable(exc)
            if unreachable is not None:
                return ConnectFailure(unreachable, unreachable=unreachable)
            if isinstance(exc, openai.APITimeoutError):
                return TimeoutFailure(exc.message)
            return ConnectFailure(exc.message)
        return MalformedFailure(str(exc))

    async def post(self, path: str, body: dict[str, Any]) -> Any:
        try:
            return await self._client.post(path, body=body, cast_to=object)
        except (self._openai.APIError, ValueError) as exc:
            raise self._failure(exc) from exc

    async def stream(self, path: str, body: dict[str, Any]) -> Any:
        from openai import AsyncStream
        from openai.types.chat import ChatCompletion, ChatCompletionChunk

        try:
            stream = await self._client.post(path, body=body, cast_to=ChatCompletion, stream=True,
                                             stream_cls=AsyncStream[ChatCompletionChunk])
        except (self._openai.APIError, ValueError) as exc:
            raise self._failure(exc) from exc
        return _ChunkDicts(stream, self._failure)

    async def close(self) -> None:
        self.closed = True
        await self._client.close()


class _ChunkDicts:
    def __init__(self, stream: Any, failure: Any) -> None:
        self._stream = stream
        self._failure = failure

    async def __aiter__(self) -> AsyncIterator[dict[str, Any]]:
        try:
            async for chunk in self._stream:
                yield chunk.model_dump(exclude_unset=True)
        except HttpFailure:
            raise
        except Exception as exc:  # noqa: BLE001 - transport errors become failures
            raise self._failure(exc) from exc

    async def close(self) -> None:
        await self._stream.close()


_UNREACHABLE_NAMES = frozenset({"ClientConnectorError", "ClientConnectorDNSError", "ConnectError"})


def _unreachable(exc: BaseException) -> str | None:
    """Why the server could not be reached at all (refused, no such host), or None. openai's
    aiohttp transport reports a refused connection as a timeout: look at the real cause."""
    seen: BaseException | None = exc
    depth = 0
    while seen is not None and depth < 20:
        if isinstance(seen, (ConnectionRefusedError, socket.gaierror)) or \
                type(seen).__name__ in _UNREACHABLE_NAMES:
            return str(seen) or type(seen).__name__
        seen = seen.__cause__ or seen.__context__
        depth += 1
    return None
