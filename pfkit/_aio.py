"""Run a coroutine from sync code, also inside Jupyter's already-running event loop."""

from __future__ import annotations

import asyncio
import sys
import threading
from collections.abc import Coroutine
from typing import Any, TypeVar

T = TypeVar("T")


async def _then_close_clients(coro: Coroutine[Any, Any, T]) -> T:
    try:
        return await coro
    finally:
        provider = sys.modules.get("pfkit.providers._openai")  # only if a model was used
        if provider is not None:
            await provider.close_loop_clients()


def run_sync(coro: Coroutine[Any, Any, T]) -> T:
    """``asyncio.run`` when no loop runs in this thread; otherwise run the coroutine on a fresh
    loop in a helper thread and wait (notebooks, or sync code called from async code). Model
    clients opened on that loop are closed before it ends."""
    coro = _then_close_clients(coro)
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coro)
    box: dict[str, Any] = {}

    def target() -> None:
        try:
            box["value"] = asyncio.run(coro)
        except BaseException as exc:  # re-raised in the caller's thread
            box["error"] = exc

    thread = threading.Thread(target=target, name="pfkit-run", daemon=True)
    thread.start()
    thread.join()
    if "error" in box:
        raise box["error"]
    return box["value"]
