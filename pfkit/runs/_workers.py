"""Running the lines of a batch in worker processes: :class:`WorkerRunner`.

Each worker is a plain child process (``python -c ...``, not ``fork``: the parent has threads
and an event loop) that binds the flow once from a picklable :class:`WorkerFlowSpec` and runs
lines concurrently on its own event loop. The parent reads the dataset, sends lines in small
batches, receives each line's records already encoded as JSON text, and sinks them: the
parent's writer writes every record, workers never touch the run folder, so resume and
``kill -9`` stay exact.

* Flow control: at most a small window of lines is in flight per worker (its concurrency plus
  two batches; four of quick lines), so memory stays flat; batches grow with a worker's
  measured rate (20 ms of work each; 50 ms of quick lines), so quick python lines amortise
  the pipe and never run dry, and slow model lines are spread evenly.
* A worker that dies (``kill -9``, a native crash) turns its in-flight lines into failed lines
  ("worker process 12345 died (SIGKILL) while running this line"), a replacement starts, and
  the run goes on; after ``max_restarts`` deaths the run stops with an error (resume re-runs
  what is missing).
* The parent killed: each worker sees end of file on its pipe (or its parent pid change) and
  exits at once. The run cancelled (Ctrl-C): workers are killed; lines not sunk are not
  recorded.

What a flow sees in a worker, compared with lines run in-process: its tools run in another
process (module-level state is per worker; prints go to stderr, stdin is empty); a connection's
``max_concurrency``, ``requests_per_minute`` and ``tokens_per_minute`` are split over the
workers, so the run keeps one budget per connection; an output or aggregation value that cannot
be pickled reaches the parent as its JSON record holds it (as the lines of a resumed run do).

See :func:`default_workers` for the number of workers a run gets when none is asked for.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .. import _secrets
from ..engine import FAILED, LineResult
from ..errors import ExecutionError, Location, PfkitError, UserError
from . import _worker_protocol as wire
from ._runner import FinishedLine, finished_line, input_failure

BATCH_SECONDS = 0.02       # a batch is about this much of a worker's work
QUICK_RATE = 1000          # lines/s: quicker lines go in bigger batches, more of them queued
QUICK_BATCH_SECONDS = 0.05
MAX_BATCH = 512            # lines
STOP_GRACE = 10.0          # seconds a stopping worker gets to exit before it is killed
SMALL_PYTHON_DATASET = 10_000   # lines: below this one process is faster (start-up ~0.3 s)
SMALL_LLM_DATASET = 500         # lines of a flow with model calls
MAX_DEFAULT_WORKERS = 4

HUNG_GRACE = 30.0          # seconds past the line timeout before a silent worker is killed
# How a worker starts. ``-c`` puts the current directory first on sys.path: it is taken off,
# so a file of the caller's folder never shadows a module the worker imports. The worker needs
# only a few modules of ``pfkit.runs``, not what its ``__init__`` gathers for users (the store,
# the run API): the package is registered without running ``__init__``, which runs on the first
# use of a public name (module ``__getattr__``). That is a quarter of a worker's start-up.
_WORKER_CODE = """\
import sys
if sys.path and sys.path[0] == '':
    del sys.path[0]
import importlib.util, os, pfkit
folder = os.path.join(pfkit.__path__[0], 'runs')
init = os.path.join(folder, '__init__.py')
runs = importlib.util.module_from_spec(importlib.util.spec_from_file_location(
    'pfkit.runs', init, submodule_search_locations=[folder]))
def __getattr__(name, runs=runs, init=init):
    if name.startswith('_'):  # private modules are imported as submodules, not from __init__
        raise AttributeError(name)
    del runs.__dict__['__getattr__']
    with open(init, encoding='utf-8') as fh:
        exec(compile(fh.read(), init, 'exec'), runs.__dict__)
    return getattr(runs, name)
runs.__getattr__ = __getattr__
sys.modules['pfkit.runs'] = pfkit.runs = runs
del folder, init, runs, __getattr__
from pfkit.runs._worker_main import main
main()
"""


@dataclass(frozen=True)
class WorkerFlowSpec:
    """How a worker process loads the flow: everything ``pfkit run create`` resolved, small and
    picklable. Paths are made absolute at creation (the parent may change directory later).

    ``environment``: the run's extra environment variables, over the flow's own.
    ``models``: an optional picklable callable (importable by name, e.g. a module-level
    function) returning ``(models, connections)`` as ``load_bound_flow`` takes them; without
    it, models come from the connection store with the cache mode and cassette given.
    ``concurrency`` and ``line_timeout`` are set by :class:`WorkerRunner`."""

    flow: str
    variant: str | None = None
    connection_overrides: Mapping[str, str] = field(default_factory=dict)
    environment: Mapping[str, str] = field(default_factory=dict)
    cache: str | None = None
    cassette: str | None = None
    pfkit_home: str | None = None
    line_timeout: float | None = None
    concurrency: int | None = None
    models: Callable[[], tuple[Any, Any]] | None = None
    init: Mapping[str, Any] = field(default_factory=dict)  # a flex flow's class init values

    def __post_init__(self) -> None:
        object.__setattr__(self, "flow", str(Path(self.flow).expanduser().absolute()))
        for name in ("cassette", "pfkit_home"):
            value = getattr(self, name)
            if value is not None:
                object.__setattr__(self, name, str(Path(value).expanduser().absolute()))
        object.__setattr__(self, "connection_overrides", dict(self.connection_overrides))
        object.__setattr__(self, "environment", dict(self.environment))


def default_workers(flow: Any, total_lines: int | None, *, concurrency: int,
                    cpu_count: int | None = None) -> int:
    """The number of worker processes when the run does not ask for one: what suits the flow.

    One (lines run in-process) on Windows, when the machine has one core, the dataset's size is unknown or
    small (a worker costs ~0.3 s to start: under 10,000 lines of a python flow, or 500 lines
    of a flow with model calls, one process finishes first), the flow uses the embedded local
    model (each worker would load its own copy), or the concurrency is 1. Otherwise
    ``min(cores, 4, concurrency)``."""
    cores = cpu_count if cpu_count is not None else (os.cpu_count() or 1)
    if sys.platform == "win32" or cores < 2 or concurrency < 2 or total_lines is None:
        return 1
    llm_nodes = [node for node in _nodes_of(flow) if _calls_model(node)]
    if any(_connection_of(node) == "local" for node in llm_nodes):
        return 1
    small = SMALL_LLM_DATASET if llm_nodes else SMALL_PYTHON_DATASET
    if total_lines < small:
        return 1
    return max(1, min(cores, MAX_DEFAULT_WORKERS, concurrency))


def _nodes_of(flow: Any) -> list[Any]:
    """The flow's nodes as bound (the chosen variant of each), or as written."""
    flow = getattr(flow, "bound", flow)
    nodes = getattr(flow, "nodes", None)
    if nodes is None:
        spec = getattr(flow, "spec", None)
        nodes = getattr(spec, "nodes", ()) if spec is not None else ()
    return list(nodes or ())


def _node_spec(node: Any) -> Any:
    return getattr(node, "spec", node)


def _calls_model(node: Any) -> bool:
    spec = _node_spec(node)
    return bool(getattr(spec, "connection", None)) or getattr(spec, "type", None) == "llm"


def _connection_of(node: Any) -> str | None:
    return getattr(_node_spec(node), "connection", None)


def _signal_text(returncode: int | None) -> str:
    if returncode is None:
        return "closed its pipe"
    if returncode < 0:
        try:
            return f"died ({signal.Signals(-returncode).name})"
        except ValueError:
            return f"died (signal {-returncode})"
    return f"exited with code {returncode}"


class _Reader(asyncio.Protocol):
    def __init__(self, worker: _Worker, events: asyncio.Queue) -> None:
        self.worker = worker
        self.events = events
        self.buffer = wire.FrameBuffer()

    def data_received(self, data: bytes) -> None:
        try:
            messages = self.buffer.feed(data)
        except Exception as exc:  # noqa: BLE001 - a corrupt frame: treat the worker as dead
            self.events.put_nowait((self.worker, ("corrupt", exc)))
            return
        for message in messages:
            self.events.put_nowait((self.worker, message))

    def eof_received(self) -> bool:
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        self.events.put_nowait((self.worker, ("eof",)))


class _Worker:
    """The parent's view of one worker process."""

    def __init__(self, slot: int, concurrency: int) -> None:
        self.slot = slot
        self.concurrency = concurrency
        self.batch = concurrency
        self.proc: subprocess.Popen | None = None
        self.pid = 0
        self.transport: asyncio.WriteTransport | None = None
        self.read_transport: asyncio.ReadTransport | None = None
        self.inflight: dict[int, dict[str, Any]] = {}
        self.ready = False
        self.stopping = False
        self.gone = False
        self.stats: dict[str, Any] | None = None
        self.returned = 0
        self.busy_since: float | None = None
        self.busy_time = 0.0
        self.last_heard = 0.0
        self.hung: str | None = None
        self.secrets: list[str] = []  # the secrets it was given
        self.queued = 2 * self.batch  # lines it may hold beyond those running

    @property
    def window(self) -> int:
        return self.concurrency + self.queued

    def note_returned(self, count: int, now: float) -> None:
        """Adapt the batch size to the worker's measured rate (lines per second busy)."""
        self.returned += count
        if self.busy_since is not None:
            self.busy_time += now - self.busy_since
            self.busy_since = now if self.inflight else None
        if self.busy_time > 0.05:
            rate = self.returned / self.busy_time
            # quick lines: big batches (few messages); slow lines (model calls): small ones,
            # so that the last lines are spread evenly over the workers. Of quick lines (python
            # tools) four batches of 50 ms wait in the worker, so that it never runs dry while
            # this process, busy or waiting for a core, answers late (two batches of 20 ms
            # starved each worker a sixth of the time on 2 cores)
            quick = rate >= QUICK_RATE
            seconds = QUICK_BATCH_SECONDS if quick else BATCH_SECONDS
            self.batch = max(1, min(MAX_BATCH, int(rate * seconds)))
            self.queued = (4 if quick else 2) * self.batch

    def send(self, message: Any) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(wire.frame(message))


class WorkerRunner:
    """A :class:`~pfkit.runs._runner.LineRunner` that runs lines in ``workers`` processes.

    ``concurrency`` is the total number of lines running at once, split over the workers
    (each at least 1; never more workers than ``concurrency``); ``timeout`` is the line
    timeout; ``outputs=False`` when the sink reads only the records, not
    ``FinishedLine.outputs`` (then left empty: workers send no copy of them). After
    :meth:`run`, ``cache_stats`` sums the workers' response-cache counters and ``cache_keys``
    lists the cache entries they used (see :meth:`absorb_cache_usage`)."""

    def __init__(self, spec: WorkerFlowSpec, *, workers: int, concurrency: int = 16,
                 timeout: float | None = None, max_restarts: int | None = None,
                 hung_grace: float = HUNG_GRACE, outputs: bool = True) -> None:
        if workers < 1:
            raise UserError(f"--workers must be at least 1, not {workers}", code="InvalidWorkers",
                            hint="Pass --workers 1 to run lines in this process.")
        if sys.platform == "win32" and workers > 1:
            raise UserError("worker processes are not supported on Windows yet",
                            code="InvalidWorkers", hint="Run with --workers 1 (the default).")
        self.spec = spec
        self.concurrency = max(1, int(concurrency))
        self.workers = max(1, min(int(workers), self.concurrency))
        self.timeout = timeout if timeout is not None else spec.line_timeout
        self.max_restarts = max_restarts if max_restarts is not None else max(4, 2 * self.workers)
        self.hung_grace = hung_grace
        self.outputs = bool(outputs)
        self.restarts = 0
        self.cache_stats: dict[str, int] = {}
        self.cache_keys: list[str] = []
        self.pids: list[int] = []  # every worker process started, in order (for tests, logs)
        self._pool: list[_Worker] | None = None  # prestarted, not yet running
        try:
            wire.frame(("init", spec, 0, self.timeout, 0, self.workers, self.outputs))
        except Exception as exc:  # noqa: BLE001 - e.g. a lambda as the models factory
            raise UserError(f"the worker processes cannot be given this flow description: {exc}",
                            code="InvalidWorkers",
                            hint="A models factory must be a module-level function (importable "
                                 "by name); or run with --workers 1.") from None

    def _share(self, slot: int) -> int:
        base, extra = divmod(self.concurrency, self.workers)
        return base + (1 if slot < extra else 0)

    # -- processes -------------------------------------------------------------------------

    def _environment(self) -> dict[str, str]:
        env = dict(os.environ)
        if self.spec.pfkit_home:
            env["PFKIT_HOME"] = self.spec.pfkit_home
        return env

    def _spawn(self, worker: _Worker) -> None:
        """Start the process and hand it the flow (it loads it at once, on its own)."""
        try:
            if not sys.executable:
                raise OSError("this Python does not know its own interpreter (sys.executable)")
            proc = subprocess.Popen(  # noqa: S603 - our own interpreter and module
                [sys.executable, "-c", _WORKER_CODE], stdin=subprocess.PIPE,
                stdout=subprocess.PIPE, env=self._environment(), close_fds=True)
        except OSError as exc:
            raise ExecutionError(f"could not start a worker process: {exc}",
                                 code="WorkerStartFailed",
                                 hint="Finished lines are saved; resume the run with "
                                      "--resume-from, with fewer --workers (or 1).") from None
        worker.proc = proc
        worker.pid = proc.pid
        self.pids.append(proc.pid)
        worker.secrets = secrets = _secrets.registered()
        hello = wire.frame(("hello", {"sys_path": list(sys.path), "secrets": secrets,
                                      "parent_pid": os.getpid()}))
        init = wire.frame(("init", self.spec, worker.concurrency, self.timeout, worker.slot,
                           self.workers, self.outputs))
        try:  # a few kilobytes: the pipe takes them without waiting
            proc.stdin.write(hello + init)
            proc.stdin.flush()
        except OSError:
            pass  # it died at once: seen as end of file when the run reads it
        worker.last_heard = time.monotonic()

    async def _start(self, worker: _Worker, events: asyncio.Queue) -> None:
        if worker.proc is None:
            self._spawn(worker)
        loop = asyncio.get_running_loop()
        proc = worker.proc
        worker.transport, _ = await loop.connect_write_pipe(asyncio.Protocol, proc.stdin)
        worker.read_transport, _ = await loop.connect_read_pipe(
            lambda: _Reader(worker, events), proc.stdout)
        worker.last_heard = time.monotonic()
        secrets = _secrets.registered()
        if secrets != worker.secrets:  # registered since it started (the flow's connections)
            worker.secrets = secrets
            worker.send(("secrets", secrets))

    def prestart(self) -> None:
        """Start the worker processes now (they import pfkit and load the flow while the
        caller prepares the run); :meth:`run` uses them. Call :meth:`close` if the run does
        not happen."""
        if self._pool is None:
            self._pool = [_Worker(slot, self._share(slot)) for slot in range(self.workers)]
            for worker in self._pool:
                self._spawn(worker)

    def close(self) -> None:
        """Stop prestarted workers that no run used (a no-op after :meth:`run`)."""
        pool, self._pool = self._pool, None
        for worker in pool or ():
            self._kill_now(worker)
            if worker.proc is not None:
                try:
                    worker.proc.wait(5)
                except subprocess.TimeoutExpired:  # pragma: no cover - SIGKILL was sent
                    pass
                for pipe in (worker.proc.stdin, worker.proc.stdout):
                    if pipe is not None:
                        pipe.close()

    async def _reap(self, worker: _Worker, *, kill: bool) -> int | None:
        """Wait for the process to end (killing it first when asked, or when it does not end
        within the grace period); its return code."""
        proc = worker.proc
        if proc is None:
            return None
        for transport in (worker.transport, worker.read_transport):
            if transport is not None:
                transport.close()
        if kill and proc.poll() is None:
            proc.kill()
        deadline = time.monotonic() + (STOP_GRACE if not kill else 5.0)
        delay = 0.001
        while proc.poll() is None:
            if time.monotonic() > deadline:
                proc.kill()
                deadline = time.monotonic() + 5.0
            await asyncio.sleep(delay)
            delay = min(delay * 2, 0.05)
        worker.gone = True
        return proc.returncode

    def _kill_now(self, worker: _Worker) -> None:
        proc = worker.proc
        for transport in (worker.transport, worker.read_transport):
            if transport is not None:
                transport.close()
        if proc is not None and proc.poll() is None:
            try:
                proc.kill()
            except OSError:
                pass

    # -- the run ---------------------------------------------------------------------------

    async def run(self, items: Iterator[tuple[int, dict[str, Any] | PfkitError]],
                  sink: Callable[[FinishedLine], None]) -> None:
        events: asyncio.Queue = asyncio.Queue()
        source = iter(items)
        exhausted = False
        pool = self._pool or [_Worker(slot, self._share(slot)) for slot in range(self.workers)]
        self._pool = None
        finished_type = FinishedLine

        def fill(worker: _Worker) -> None:
            nonlocal exhausted
            if not worker.ready or worker.stopping or worker.gone:
                return
            while not exhausted and (len(worker.inflight) + worker.batch <= worker.window
                                     or not worker.inflight):
                batch = []
                while len(batch) < worker.batch:
                    try:
                        line_number, value = next(source)
                    except StopIteration:
                        exhausted = True
                        break
                    if isinstance(value, PfkitError):
                        sink(finished_line(input_failure(line_number, value)))
                        continue
                    batch.append((line_number, value))
                if batch:
                    if not worker.inflight:
                        worker.busy_since = time.monotonic()
                    worker.inflight.update(batch)
                    worker.send(("lines", batch))

        async def replace(worker: _Worker, cause: str) -> None:
            returncode = await self._reap(worker, kill=True)
            lost = worker.inflight
            worker.inflight = {}
            what = f"worker process {worker.pid} {_signal_text(returncode)}"
            if cause:
                what += f" ({cause})"
            now = time.time()
            for line_number, inputs in lost.items():
                error = ExecutionError(
                    f"{what} while running this line", code="WorkerProcessDied",
                    location=Location(row=line_number),
                    hint="The line was not finished; resume the run (--resume-from) to run it "
                         "again. A tool that crashes the interpreter (native code, memory) "
                         "kills its worker.").to_dict()
                sink(finished_line(LineResult(line_number, FAILED, inputs, {}, {}, error,
                                              now, now)))
            self.restarts += 1
            if self.restarts > self.max_restarts:
                raise ExecutionError(
                    f"worker processes died {self.restarts} times (last: {what}); the run "
                    "stops", code="WorkerRestartsExhausted",
                    hint="Finished lines are saved: fix the cause (see the lines' errors and "
                         "the worker output above), then resume with --resume-from, or run "
                         "with --workers 1.")
            if exhausted:
                return  # nothing left to give a replacement; the others finish what they hold
            fresh = _Worker(worker.slot, worker.concurrency)
            pool[pool.index(worker)] = fresh
            await self._start(fresh, events)

        def done_yet() -> bool:
            return exhausted and not any(w.inflight for w in pool)

        watchdog = asyncio.ensure_future(self._watch(pool)) if self.timeout else None
        try:
            for worker in pool:
                await self._start(worker, events)
            stopping = False
            while True:
                if not stopping and done_yet():
                    stopping = True
                    for worker in pool:
                        if worker.ready and not worker.gone:
                            worker.stopping = True
                            worker.send(("stop",))
                if stopping and all(w.gone or w.stats is not None for w in pool):
                    break
                worker, message = await events.get()
                if worker not in pool:
                    continue  # a replaced worker's last words
                worker.last_heard = time.monotonic()
                kind = message[0]
                if kind == "done":
                    inflight = worker.inflight
                    entries = message[1]
                    for entry in entries:
                        inflight.pop(entry[0], None)
                        sink(wire.decode_line(entry, finished_type))
                    worker.note_returned(len(entries), time.monotonic())
                    fill(worker)
                elif kind == "ready":
                    worker.ready = True
                    if stopping:  # a replacement that is no longer needed
                        worker.stopping = True
                        worker.send(("stop",))
                    else:
                        fill(worker)
                elif kind == "stats":
                    worker.stats = message[1]
                    self._add_stats(message[1])
                    await self._reap(worker, kill=False)
                elif kind == "load_error":
                    raise _load_error(message[1], self.spec)
                elif kind in ("eof", "corrupt"):
                    if worker.stats is not None or worker.gone:
                        continue
                    cause = f"unreadable message: {message[1]}" if kind == "corrupt" else \
                        worker.hung or ""
                    if stopping and not worker.inflight:
                        await self._reap(worker, kill=True)
                        continue
                    await replace(worker, cause)
                    if not stopping:
                        # lines the dead worker held are sunk; the others carry on
                        for other in pool:
                            fill(other)
        finally:
            if watchdog is not None:
                watchdog.cancel()
            for worker in pool:
                if not worker.gone:
                    self._kill_now(worker)
            for worker in pool:
                if not worker.gone:
                    try:
                        await asyncio.shield(self._reap(worker, kill=True))
                    except asyncio.CancelledError:
                        pass

    async def _watch(self, pool: list[_Worker]) -> None:
        """A worker with lines in flight that says nothing for longer than the line timeout
        (plus a grace period) is stuck where its own timeout cannot reach (native code holding
        the interpreter): kill it, so its lines fail and a replacement carries on."""
        limit = (self.timeout or 0) + self.hung_grace
        while True:
            await asyncio.sleep(min(5.0, limit / 4))
            now = time.monotonic()
            for worker in list(pool):
                if worker.inflight and not worker.gone and worker.hung is None \
                        and now - worker.last_heard > limit:
                    worker.hung = f"it sent nothing for {limit:g} s and was stopped"
                    self._kill_now(worker)

    def _add_stats(self, stats: Mapping[str, Any]) -> None:
        for key, value in (stats.get("cache_stats") or {}).items():
            if isinstance(value, int):
                self.cache_stats[key] = self.cache_stats.get(key, 0) + value
        known = set(self.cache_keys)
        for key in stats.get("cache_keys") or ():
            if key not in known:
                known.add(key)
                self.cache_keys.append(key)

    def absorb_cache_usage(self, session: Any) -> None:
        """Give the parent's model session (a ``LazyModelSession``) what the workers' caches
        did, before it finishes: their counters (for the run's ``cache`` metrics) and the keys
        they used (so ``--cache record`` writes the cassette of the whole run)."""
        if not self.cache_keys and not self.cache_stats:
            return
        model_session = getattr(session, "session", None)
        cache = getattr(model_session, "cache", None)
        if cache is None:
            return
        with cache._lock:
            cache._used.update(dict.fromkeys(self.cache_keys))
            fields = {k: v for k, v in self.cache_stats.items() if hasattr(cache._stats, k)}
            cache._count(**fields)


def _load_error(data: Mapping[str, Any], spec: WorkerFlowSpec) -> PfkitError:
    """The error of a worker that could not load the flow, as the parent raises it."""
    message = str(data.get("message") or "the flow could not be loaded")
    location = None
    if isinstance(data.get("location"), Mapping):
        fields = {k: v for k, v in data["location"].items()
                  if k in ("file", "line", "node", "field", "row")}
        location = Location(**fields)
    kind = UserError if data.get("category") == "UserError" else ExecutionError
    hint = data.get("hint") or (f"The flow {spec.flow} loads in this process but not in a worker "
                                "process; run with --workers 1, or check what the flow imports.")
    return kind(f"a worker process could not load the flow: {message}",
                code=str(data.get("code") or "WorkerLoadError"), location=location, hint=hint)


__all__ = ["WorkerFlowSpec", "WorkerRunner", "default_workers"]
