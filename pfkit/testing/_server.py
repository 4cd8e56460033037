"""An OpenAI-compatible HTTP server for tests, benchmarks and users' own test suites.

It speaks enough of the OpenAI (and Azure OpenAI) REST API for the official ``openai`` client to
work against it unchanged, answers from a pluggable *responder* (``_responders``), and injects
faults on demand (``_faults``: rate limits with ``Retry-After``, server errors, hangs,
malformed bodies, bodies and streams cut mid-way, streams that end without ``finish_reason`` or
``[DONE]``, auth / model / context-length errors). It runs on ``aiohttp.web`` (``_app``) with
keep-alive and chunked SSE streaming; latency is an ``asyncio.sleep``, so concurrent requests
never wait for each other.

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

Fault options (keyword arguments of :class:`TestServer`, fields of :class:`Faults`, changed at
run time with :meth:`TestServer.set_faults`); ``*_next`` apply to the next N model requests:

* ``rate_limit_next`` / ``retry_after``: 429 with ``Retry-After`` (seconds; None: no header).
* ``error_next`` / ``error_status``: an HTTP 5xx (or 4xx) in OpenAI's error shape.
* ``hang_next`` / ``hang_seconds``: no answer for that long, then the connection closes.
* ``malformed_next``: 200 with truncated JSON.
* ``cut_next`` / ``cut_after``: the body stops and the connection closes; a stream after
  ``cut_after`` SSE events (default 2: the role chunk and one content chunk), a plain response
  after half its bytes.
* ``stall_next`` / ``stall_seconds``: as ``cut_next`` (``cut_after`` events), but the
  connection stays open and silent that long before it closes (a read timeout mid-body).
* ``unfinished_next``: a stream that ends cleanly with no ``finish_reason``, usage chunk or
  ``[DONE]``; a plain response with ``finish_reason: null``.
* ``fail_rate``: ``{429: 0.1, 503: 0.05, "cut": 0.01, "stall": ..., "hang": ...}`` drawn
  per request
  (``seed`` makes the draws repeatable).
* ``expected_api_key``, ``models``, ``max_context_words``: 401, 404 ``model_not_found``,
  400 ``context_length_exceeded``.

Responders can return the same faults per request (``Fault.cut(after=3)``,
``Fault.stall(after=1, seconds=30)``, ``Fault.unfinished()``, ...). A refused connection is
just a closed port.

Chat requests with ``logprobs: true`` (and ``top_logprobs: N``, 0-20) get ``logprobs`` for
every answer token, with plausible alternatives (an answer ``"4"`` with ``top_logprobs: 5``
gets ``"1"``..``"5"``; see ``_logprobs``); completions with ``logprobs: N`` likewise.
"""

from __future__ import annotations

import asyncio
import dataclasses
import ipaddress
import itertools
import random
import threading
from typing import TYPE_CHECKING, Any

from ._faults import Fault, Faults
from ._responders import Responder, echo_responder
from ._stats import Counters, RecordedRequest, Stats

if TYPE_CHECKING:
    from aiohttp import web

# Seconds open streams and slow answers get to finish when the server stops (hangs end at once).
SHUTDOWN_GRACE = 0.25


def is_loopback_host(host: str) -> bool:
    """True for ``localhost`` and loopback addresses (127.0.0.0/8, ::1)."""
    if host.strip().lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


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
        reuse_port: listen with ``SO_REUSEPORT``, so several server processes share one port
            (the kernel spreads connections over them; :class:`TestServerProcess` with
            ``processes=N``). Each process counts and logs only its own requests.
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
                 reuse_port: bool = False, faults: Faults | None = None,
                 **fault_options: Any) -> None:
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
        self._stats = Stats(request_log_size)
        self._ids = itertools.count(1)
        self._requested_port = port
        self._reuse_port = reuse_port
        self._port: int | None = None
        self._runner: web.AppRunner | None = None
        self._stopping: asyncio.Event | None = None
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

    def _request_id(self) -> str:
        return f"req_{next(self._ids):08d}"

    async def _wait_unless_stopping(self, seconds: float) -> None:
        """Sleep ``seconds``, or less if the server stops meanwhile (hangs)."""
        stopping = self._stopping
        if stopping is None:
            return
        try:
            await asyncio.wait_for(stopping.wait(), seconds)
        except asyncio.TimeoutError:
            pass

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
        if self._runner is not None:
            raise RuntimeError("the server is already running")
        from aiohttp import web

        from ._app import MAX_HEADER_BYTES, build_app

        runner = web.AppRunner(build_app(self), access_log=None, handle_signals=False,
                               shutdown_timeout=SHUTDOWN_GRACE, handler_cancellation=True,
                               max_line_size=MAX_HEADER_BYTES, max_field_size=MAX_HEADER_BYTES)
        await runner.setup()
        try:
            site = web.TCPSite(runner, self.host, self._requested_port, backlog=1024,
                               reuse_port=self._reuse_port or None)
            await site.start()
        except BaseException:
            await runner.cleanup()
            raise
        self._stopping = asyncio.Event()
        self._runner = runner
        self._port = runner.addresses[0][1]
        return self

    async def astop(self) -> None:
        """Stop listening and drop open connections (hanging requests end at once, open
        streams get a moment to finish)."""
        runner, self._runner = self._runner, None
        if runner is None:
            return
        if self._stopping is not None:
            self._stopping.set()
        await runner.cleanup()

    async def serve_forever(self) -> None:
        """Start (if needed) and serve until cancelled (e.g. by Ctrl-C under asyncio.run)."""
        if self._runner is None:
            await self.astart()
        try:
            await asyncio.Event().wait()
        finally:
            await self.astop()

    async def __aenter__(self) -> TestServer:
        return await self.astart()

    async def __aexit__(self, *exc_info: object) -> None:
        await self.astop()
