"""Sync calls on one long-lived background event loop (also from inside Jupyter's loop).

Model clients, connection pools and concurrency limits live on an event loop; one loop for every
sync call of a session means they are created once and shared, instead of once per call.
"""

from __future__ import annotations

import asyncio
import atexit
import contextvars
import sys
import threading
from collections.abc import Coroutine
from typing import Any, TypeVar

T = TypeVar("T")

CANCEL_GRACE = 30.0  # seconds a Ctrl-C'd call has to record what it did


class BackgroundLoop:
    """An event loop in a daemon thread, started on first use. :meth:`run` runs a coroutine on
    it and waits; Ctrl-C in the waiting thread cancels the coroutine (which may record what it
    did) and then raises."""

    def __init__(self, name: str = "pfkit-loop") -> None:
        self.name = name
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        with self._lock:
            if self._loop is None or self._loop.is_closed():
                loop = asyncio.new_event_loop()
                started = threading.Event()

                def serve() -> None:
                    asyncio.set_event_loop(loop)
                    loop.call_soon(started.set)
                    loop.run_forever()

                thread = threading.Thread(target=serve, name=self.name, daemon=True)
                thread.start()
                started.wait()
                self._loop, self._thread = loop, thread
            return self._loop

    def in_loop_thread(self) -> bool:
        return self._thread is not None and threading.current_thread() is self._thread

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        if self.in_loop_thread():  # a sync call from code running on this loop: not here
            return _run_in_fresh_thread(coro)
        loop = self.loop
        done = threading.Event()
        box: dict[str, Any] = {}

        async def runner() -> None:
            try:
                box["value"] = await coro
            except BaseException as exc:  # noqa: BLE001 - re-raised in the caller's thread
                box["error"] = exc
            finally:
                done.set()

        context = contextvars.copy_context()  # the caller's (a tool calling a flow, say)
        tasks: list[asyncio.Task] = []

        def start() -> None:
            tasks.append(context.run(loop.create_task, runner()))

        loop.call_soon_threadsafe(start)
        try:
            done.wait()
        except KeyboardInterrupt:
            # cancel the task on the loop; it records what it did
            loop.call_soon_threadsafe(lambda: tasks and tasks[0].cancel())
            done.wait(CANCEL_GRACE)
            error = box.get("error")
            if error is not None and not isinstance(error, asyncio.CancelledError):
                raise error from None
            raise
        if "error" in box:
            error = box["error"]
            if isinstance(error, asyncio.CancelledError):
                raise KeyboardInterrupt from None
            raise error
        return box["value"]

    def close(self) -> None:
        """Close model clients opened on the loop, then stop it."""
        with self._lock:
            loop, thread = self._loop, self._thread
            self._loop = self._thread = None
        if loop is None or loop.is_closed():
            return
        provider = sys.modules.get("pfkit.providers._openai")
        if provider is not None and thread is not threading.current_thread():
            try:
                asyncio.run_coroutine_threadsafe(provider.close_loop_clients(), loop).result(5)
            except Exception:  # noqa: BLE001 - closing is best effort
                pass
        loop.call_soon_threadsafe(loop.stop)
        if thread is not None and thread is not threading.current_thread():
            thread.join(5)
        if not loop.is_running():
            loop.close()


def _run_in_fresh_thread(coro: Coroutine[Any, Any, T]) -> T:
    box: dict[str, Any] = {}

    async def closing() -> T:
        try:
            return await coro
        finally:
            provider = sys.modules.get("pfkit.providers._openai")
            if provider is not None:
                await provider.close_loop_clients()

    context = contextvars.copy_context()  # the caller's (e.g. the running node's usage)

    def target() -> None:
        try:
            box["value"] = context.run(asyncio.run, closing())
        except BaseException as exc:  # noqa: BLE001 - re-raised in the caller's thread
            box["error"] = exc

    thread = threading.Thread(target=target, name="pfkit-run", daemon=True)
    thread.start()
    thread.join()
    if "error" in box:
        raise box["error"]
    return box["value"]


_default: BackgroundLoop | None = None
_default_lock = threading.Lock()


def default_loop() -> BackgroundLoop:
    global _default
    with _default_lock:
        if _default is None:
            _default = BackgroundLoop()
            atexit.register(_default.close)
        return _default


def run_sync(coro: Coroutine[Any, Any, T]) -> T:
    """Run ``coro`` on the process's background loop and wait for its result."""
    return default_loop().run(coro)
