"""Many flows in one process, each seeing its own folder, ``sys.path`` entry and environment.

promptflow runs a flow's tools with the flow folder as the working directory, first on
``sys.path``, and with the flow's ``environment_variables`` in ``os.environ``. Those are
process-wide, so pfkit applies a flow's :class:`FlowContext` only around calls of that flow's
*user* code (python tools, ToolProvider construction, tool imports at bind time), through one
process-wide :class:`Gate`:

* calls of the same flow (same folder and environment) overlap freely;
* calls of a different flow wait until the current flow's calls have finished, then the gate
  switches the process to the other flow; waiters are admitted first-in first-out, so neither
  flow starves (a flow arriving while another waits queues behind it);
* when the last public call (a line, an aggregation) ends and no tool runs, the process state
  before the first call is restored; for raw ``execute_line`` callers the restore is deferred
  to the event loop's next turn, so back-to-back lines of one flow pay no ``chdir`` per line;
* modules a flow's tools imported from its own folder are put in ``sys.modules`` only while
  that flow holds the gate, so two flows may each have a ``helpers.py``.

pfkit's own nodes (prompt, llm, package tools) never pass through the gate: they do not read
the process state, so a flow's model calls overlap with another flow's tools.
"""

from __future__ import annotations

import asyncio
import contextvars
import os
import sys
import threading
import types
from asyncio import get_running_loop
from collections import deque
from collections.abc import Mapping
from pathlib import Path
from typing import Any


class FlowContext:
    """What a flow's user code expects of the process: a working directory, a ``sys.path``
    entry, environment variables and the modules imported from its folder."""

    __slots__ = ("directory", "entry", "environment", "key", "models", "modules")

    def __init__(self, directory: Path, environment: Mapping[str, str] | None = None,
                 models: Any = None) -> None:
        self.directory = str(directory)
        self.entry = self.directory
        self.environment = dict(environment or {})
        self.key = (self.directory, tuple(sorted(self.environment.items())))
        self.modules: dict[str, types.ModuleType] = {}
        # (connection name, connection) -> model or None: the flow's models, for
        # promptflow-tools functions its tools call directly (pfkit._compat._llm_tools)
        self.models = models

    def with_environment(self, environment: Mapping[str, str]) -> FlowContext:
        other = FlowContext(Path(self.directory), environment, self.models)
        other.modules = self.modules  # the same code, another environment
        return other

    def __repr__(self) -> str:
        return f"FlowContext({self.directory!r}, {len(self.environment)} variables)"


# The flows whose user code the running code was called from, innermost last (set per line once
# the process has seen more than one flow): a tool of flow A that calls flow B in-process lends
# the gate to B instead of waiting for itself.
calling_flows: contextvars.ContextVar[tuple[FlowContext, ...]] = contextvars.ContextVar(
    "pfkit_calling_flows", default=())


class _Waiter:
    __slots__ = ("admitted", "ctx", "event", "future", "loop")

    def __init__(self, ctx: FlowContext, loop: asyncio.AbstractEventLoop | None) -> None:
        self.ctx = ctx
        self.loop = loop
        self.future: asyncio.Future | None = loop.create_future() if loop is not None else None
        self.event = threading.Event() if loop is None else None
        self.admitted = False

    def wake(self) -> None:
        self.admitted = True
        if self.event is not None:
            self.event.set()
        else:
            self.loop.call_soon_threadsafe(_resolve, self.future)


def _resolve(future: asyncio.Future) -> None:
    if not future.done():
        future.set_result(None)


class Gate:
    """The process-wide switch between flow contexts (see the module docstring)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._owner: FlowContext | None = None  # applied (kept while idle until restored)
        self._holders = 0
        self._waiters: deque[_Waiter] = deque()
        self._saved_cwd: str | None = None
        self._saved_env: dict[str, str | None] = {}
        self._added_entry: str | None = None
        self._restore_scheduled = False
        self._restore_loop: asyncio.AbstractEventLoop | None = None
        self._calls = 0  # public calls (a line, an aggregation) in progress, of any flow
        self._keys: set[tuple[Any, ...]] = set()
        self.many = False  # more than one flow context seen: nested calls must be tracked
        self._lent: list[tuple[FlowContext, int]] = []  # (lender, its holders) while lent
        self._resident: FlowContext | None = None  # stays applied while idle (see keep())

    def register(self, ctx: FlowContext) -> None:
        """A flow context exists (binding): from the second one on, lines track their callers."""
        with self._lock:
            self._keys.add(ctx.key)
            if len(self._keys) > 1:
                self.many = True

    # ------------------------------------------------------------------ a resident flow

    def keep(self, ctx: FlowContext) -> None:
        """Keep ``ctx`` applied between calls (a process that serves this one flow: no
        ``chdir`` and environment swap around every request). Other flows still get the gate
        as usual; :meth:`unkeep` ends it and restores the process state once idle."""
        with self._lock:
            self._resident = ctx

    def unkeep(self, ctx: FlowContext) -> None:
        with self._lock:
            if self._resident is ctx:
                self._resident = None
                if not self._calls and not self._holders and not self._waiters:
                    self._idle_restore()

    def _nothing_to_restore(self) -> bool:
        """Under the lock: no context is applied, or the applied one is the resident one."""
        owner, resident = self._owner, self._resident
        return owner is None or (resident is not None and owner.key == resident.key)

    def _idle_restore(self) -> None:
        """Under the lock, nothing holding the gate: put the process state back, unless the
        applied context is the resident one."""
        if not self._nothing_to_restore():
            self._switch(None)

    # ------------------------------------------------------------------ public calls

    def begin_call(self) -> None:
        """A public call (``arun``, ``aggregate``, ``test``) starts."""
        with self._lock:
            self._calls += 1

    def end_call(self) -> None:
        """A public call ended: when it was the last one and no tool still runs, the process
        state is restored now (so the caller sees its own directory and environment)."""
        with self._lock:
            self._calls -= 1
            if not self._calls and not self._holders and not self._waiters:
                self._idle_restore()

    # ------------------------------------------------------------------ entering and leaving

    def _admit(self, ctx: FlowContext) -> bool:
        """Under the lock: let ``ctx`` in now if fairness allows."""
        owner = self._owner
        if self._holders and owner is not None and owner.key != ctx.key and self.many:
            callers = calling_flows.get()
            if any(c.key == owner.key for c in callers):  # called from the holder's own tool
                self._lent.append((owner, self._holders))
                self._switch(ctx)
                self._holders = 1
                return True
        if self._waiters:
            return False
        if self._holders:
            if owner is ctx or owner.key == ctx.key:
                self._holders += 1
                return True
            return False
        if owner is not ctx:
            self._switch(ctx)
        self._holders = 1
        return True

    async def enter(self, ctx: FlowContext) -> None:
        """Wait (without blocking the loop) until ``ctx`` is applied and held."""
        lock = self._lock
        lock.acquire()
        try:
            if self._admit(ctx):
                return
            waiter = _Waiter(ctx, asyncio.get_running_loop())
            self._waiters.append(waiter)
        finally:
            lock.release()
        try:
            await waiter.future
        except asyncio.CancelledError:
            with lock:
                if not waiter.admitted:
                    self._waiters.remove(waiter)
                    waiter = None
            if waiter is not None:
                self.leave()
            raise

    def try_enter(self, ctx: FlowContext) -> bool:
        """Enter without waiting, if possible (the common case: one flow alone)."""
        lock = self._lock
        lock.acquire()
        if self._owner is ctx and not self._waiters:  # applied already: the fast path
            self._holders += 1
            lock.release()
            return True
        try:
            return self._admit(ctx)
        finally:
            lock.release()

    def enter_blocking(self, ctx: FlowContext, timeout: float = 60.0) -> None:
        """For sync code (binding): blocks the calling thread until ``ctx`` is held."""
        with self._lock:
            if self._admit(ctx):
                return
            waiter = _Waiter(ctx, None)
            self._waiters.append(waiter)
        if not waiter.event.wait(timeout):
            with self._lock:
                if not waiter.admitted:
                    self._waiters.remove(waiter)
                    raise RuntimeError(
                        "another flow's tools kept running for more than "
                        f"{timeout:.0f} s while loading {ctx.directory}; load flows before "
                        "starting concurrent runs on the same event loop")

    def leave(self, loop: asyncio.AbstractEventLoop | None = None, *,
              same_thread: bool = False) -> None:
        """One call of the current flow finished. ``loop``: where to schedule the deferred
        restore (None: restore now, when nothing else holds the gate)."""
        lock = self._lock
        lock.acquire()
        try:
            self._holders -= 1
            if self._holders:
                return
            if self._lent:  # a nested flow's calls are done: back to the flow that called it
                lender, holders = self._lent.pop()
                self._switch(lender)
                self._holders = holders
                return
            if self._waiters:
                self._admit_waiters()
                return
            if self._nothing_to_restore():
                return
            if loop is None:  # a sync caller: restore now
                self._switch(None)
                return
            if self._restore_scheduled and not self._restore_loop.is_closed():
                return
            self._restore_scheduled = True
            self._restore_loop = loop
        finally:
            lock.release()
        try:
            if same_thread:
                loop.call_soon(self._restore_if_idle)
            else:
                loop.call_soon_threadsafe(self._restore_if_idle)
        except RuntimeError:  # the loop is closed: restore now
            self._restore_if_idle()

    def leave_on_loop(self) -> None:
        """:meth:`leave` from code running on an event loop (the loop is looked up only when
        a restore is to be scheduled)."""
        lock = self._lock
        lock.acquire()
        holders = self._holders - 1
        if holders or (not self._waiters and not self._lent and (
                self._nothing_to_restore() or (
                    self._restore_scheduled and self._restore_loop is get_running_loop()))):
            self._holders = holders
            lock.release()
            return
        self._holders = holders + 1  # let leave() do the rest
        lock.release()
        self.leave(asyncio.get_running_loop(), same_thread=True)

    def _admit_waiters(self) -> None:
        head = self._waiters[0]
        self._switch(head.ctx)
        key = head.ctx.key
        while self._waiters and self._waiters[0].ctx.key == key:
            waiter = self._waiters.popleft()
            self._holders += 1
            waiter.wake()

    def _restore_if_idle(self) -> None:
        with self._lock:
            self._restore_scheduled = False
            if not self._holders and not self._waiters:
                self._idle_restore()

    def current_models(self) -> Any:
        """The models of the flow whose user code runs now (None outside of one)."""
        owner = self._owner
        return owner.models if owner is not None and self._holders else None

    def restore(self) -> None:
        """Put the process state back now, if no flow call is running."""
        self._restore_if_idle()

    # ------------------------------------------------------------------ the process state

    def _switch(self, ctx: FlowContext | None) -> None:
        """Under the lock, with no holders: undo the current context, apply ``ctx``."""
        old = self._owner
        if old is not None:
            try:  # the caller moved while the context stayed applied: that is its directory now
                here = os.getcwd()
                if here != old.directory:
                    self._saved_cwd = here
            except OSError:
                pass
            for name, module in old.modules.items():
                if sys.modules.get(name) is module:
                    del sys.modules[name]
            for key, value in self._saved_env.items():
                if value is None:
                    os.environ.pop(key, None)
                else:
                    os.environ[key] = value
            self._saved_env = {}
            entry = self._added_entry
            if entry is not None:
                # sys.path is replaced, never changed in place: another thread may be importing
                # (iterating the list) right now, and an in-place removal makes it skip an entry
                # (site-packages: "No module named ..." in a model's thread)
                path = list(sys.path)
                if entry in path:
                    path.remove(entry)
                sys.path = path
                self._added_entry = None
        elif ctx is not None:
            try:
                self._saved_cwd = os.getcwd()
            except OSError:  # the caller's directory was removed
                self._saved_cwd = None
        self._owner = ctx
        if ctx is None:
            if self._saved_cwd is not None:
                try:
                    os.chdir(self._saved_cwd)
                except OSError:
                    pass
            self._saved_cwd = None
            return
        os.chdir(ctx.directory)
        sys.path = [ctx.entry, *sys.path]  # a new list (see above)
        self._added_entry = ctx.entry
        environ = os.environ
        self._saved_env = {key: environ.get(key) for key in ctx.environment}
        environ.update(ctx.environment)
        for name, module in ctx.modules.items():
            sys.modules.setdefault(name, module)


GATE = Gate()


class Holding:
    """``with holding(ctx):`` for sync code (binding): the context applied for the block, the
    process state restored when nothing else holds the gate."""

    __slots__ = ("ctx", "token")

    def __init__(self, ctx: FlowContext) -> None:
        self.ctx = ctx
        self.token: Any = None

    def __enter__(self) -> FlowContext:
        GATE.enter_blocking(self.ctx)
        # code run now (a tool script importing, which may load another flow) is this flow's
        self.token = calling_flows.set((*calling_flows.get(), self.ctx))
        return self.ctx

    def __exit__(self, *exc: Any) -> None:
        calling_flows.reset(self.token)
        GATE.leave(None)


def own_modules(ctx: FlowContext, before: Mapping[str, Any]) -> None:
    """After binding: the modules imported from the flow folder (new since ``before``, a copy of
    ``sys.modules`` taken with the context applied) become the flow's own (see the module
    docstring); they leave ``sys.modules`` with the flow's context."""
    root = ctx.directory.rstrip(os.sep) + os.sep
    for name, module in list(sys.modules.items()):
        if module is None or before.get(name) is module:
            continue
        file = getattr(module, "__file__", None)
        if isinstance(file, str) and os.path.abspath(file).startswith(root):
            ctx.modules[name] = module


__all__ = ["GATE", "FlowContext", "Gate", "Holding", "own_modules"]
