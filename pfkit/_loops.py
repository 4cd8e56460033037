"""Which event loop pfkit's own loops run on: uvloop when it is installed, asyncio's otherwise.

pfkit creates event loops in four places: the background loop of sync calls (``run create``,
``flow test``, notebooks), worker processes, the test server's process and, through uvicorn,
``flow serve``. A model call, a served request or a test-server answer spends much of its CPU in
the loop's socket and callback machinery; uvloop (libuv, in C) does that work in about half the
time, which shows on two cores in LLM-bound batches and endpoints.

``PFKIT_LOOP`` chooses: ``auto`` (the default: uvloop if importable), ``uvloop`` (an error when
it is not installed) or ``asyncio``. Loops the user creates (``asyncio.run(pfkit.arun(...))``,
Jupyter's) are never replaced.
"""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import Coroutine
from typing import Any, TypeVar

from .errors import UserError

T = TypeVar("T")

ENV = "PFKIT_LOOP"
CHOICES = ("auto", "uvloop", "asyncio")


def loop_kind() -> str:
    """``uvloop`` or ``asyncio``: what :func:`new_event_loop` creates in this process."""
    choice = (os.environ.get(ENV) or "auto").strip().lower()
    if choice not in CHOICES:
        raise UserError(f"${ENV} is {choice!r}; choose one of {', '.join(CHOICES)}",
                        code="UsageError", hint=f"unset {ENV} to use uvloop when installed")
    if choice == "asyncio" or sys.platform == "win32":
        return "asyncio"
    try:
        import uvloop  # noqa: F401
    except ImportError:
        if choice == "uvloop":
            raise UserError(f"${ENV}=uvloop but uvloop is not installed", code="MissingDependency",
                            hint="pip install uvloop, or unset " + ENV) from None
        return "asyncio"
    return "uvloop"


def new_event_loop() -> asyncio.AbstractEventLoop:
    """A new event loop of the kind :func:`loop_kind` names."""
    if loop_kind() == "uvloop":
        import uvloop

        return uvloop.new_event_loop()
    return asyncio.new_event_loop()


def run(coro: Coroutine[Any, Any, T]) -> T:
    """``asyncio.run(coro)`` on a loop from :func:`new_event_loop` (pending tasks cancelled,
    async generators and the default executor shut down, the loop closed)."""
    loop = new_event_loop()
    try:
        asyncio.set_event_loop(loop)
        return loop.run_until_complete(coro)
    finally:
        try:
            _cancel_pending(loop)
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.run_until_complete(loop.shutdown_default_executor())
        finally:
            asyncio.set_event_loop(None)
            loop.close()


def _cancel_pending(loop: asyncio.AbstractEventLoop) -> None:
    pending = [task for task in asyncio.all_tasks(loop) if not task.done()]
    if not pending:
        return
    for task in pending:
        task.cancel()
    loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))


__all__ = ["CHOICES", "ENV", "loop_kind", "new_event_loop", "run"]
