"""Worker threads for sync tools: daemon threads, so a tool that never returns (a line that
timed out while its tool hangs in C code) cannot keep the process from exiting, as the standard
ThreadPoolExecutor's would (it joins its threads at exit)."""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any

MAX_THREADS = 64


class DaemonPool:
    """``submit(fn, *args) -> Future``; threads are started as needed, up to ``max_threads``,
    and wait for more work when idle."""

    def __init__(self, max_threads: int = MAX_THREADS, name: str = "pfkit-tool") -> None:
        self.max_threads = max_threads
        self.name = name
        self._work: queue.SimpleQueue[tuple[Future, Callable[..., Any], tuple[Any, ...]]] = (
            queue.SimpleQueue())
        self._lock = threading.Lock()
        self._threads = 0
        self._idle = 0

    def submit(self, fn: Callable[..., Any], *args: Any) -> Future:
        future: Future = Future()
        with self._lock:
            self._work.put((future, fn, args))
            if self._idle:
                self._idle -= 1
            elif self._threads < self.max_threads:
                self._threads += 1
                threading.Thread(target=self._serve, name=f"{self.name}-{self._threads}",
                                 daemon=True).start()
        return future

    def _serve(self) -> None:
        while True:
            future, fn, args = self._work.get()
            if future.set_running_or_notify_cancel():
                try:
                    result = fn(*args)
                except BaseException as exc:  # noqa: BLE001 - handed to the waiting caller
                    future.set_exception(exc)
                else:
                    future.set_result(result)
            del future, fn, args
            with self._lock:
                self._idle += 1


_pool: DaemonPool | None = None
_pool_lock = threading.Lock()


def threads() -> DaemonPool:
    global _pool
    if _pool is None:
        with _pool_lock:
            if _pool is None:
                _pool = DaemonPool()
    return _pool
