"""Running the evaluation runs of one ``evaluate(...)`` call together.

Each flow evaluator is still its own promptflow evaluation run (linked to the base run, in the
run store), but the runs no longer wait for each other:

* Evaluators that call models (LLM judges, embeddings, flex flows, prompty files) run at once
  on the session's event loop: their model calls overlap, each with the runner that suits it.
* Evaluators of plain python tools (and prompts) are CPU-bound: when there are several, their
  lines run in-process (``workers=1``: worker processes per run would only share the cores),
  one run after another. Over a large base run (``HELPER_MIN_LINES`` lines or more) they share
  the work with one **helper process** (the same Python and code on the same store, started
  once for all of them, as early as possible): this process and the helper each take the next
  run from one queue, so the second core is used without a worker pool per run.

The helper is used only with the local run store, when the session has no ``models=`` and no
observers of its own (they live in this process), the machine has more than one core and
``PFKIT_EVAL_HELPER`` is not ``0``; otherwise every run is in this process. A run the helper
made is an ordinary run in the store; it reads the run back and sends its lines (the fields
``evaluate`` uses) and statistics, so this process does not parse the records again. Its errors
come back as the same errors, with the same message (a failed run is recorded as Failed, as
any run); a helper that dies fails its run with a clear error, and the others go on.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import Location, PfkitError, UserError

HELPER_MIN_LINES = 2_000  # lines per evaluation run: below this one process finishes first
PROGRESS_EVERY = 0.25  # seconds between the helper's progress reports


@dataclass
class Job:
    """One evaluation run to create."""

    alias: str
    flow: str
    data: str | None
    run: str | None
    column_mapping: dict[str, Any]
    connections: dict[str, str] = field(default_factory=dict)
    tags: dict[str, str] = field(default_factory=dict)
    cpu_bound: bool = False  # python tools only: lines in-process, may go to the helper
    cost: int = 1  # a rough size (outputs + nodes): larger runs are started first

    def to_wire(self) -> dict[str, Any]:
        return {"flow": self.flow, "data": self.data, "run": self.run,
                "column_mapping": self.column_mapping, "connections": self.connections,
                "tags": self.tags}


@dataclass
class Outcome:
    """What came of a job: the run's name, its lines (the fields evaluate uses) and its
    statistics, or the error that stopped it."""

    run: str | None = None
    lines: list[dict[str, Any]] | None = None
    statistics: dict[str, Any] | None = None  # metric -> MetricSummary
    error: BaseException | None = None

    def finish(self, store: Any, name: str, statistics: dict[str, Any] | None = None,
               lines: list[dict[str, Any]] | None = None) -> None:
        """Read the finished run back (as soon as it ends, while other runs go on), or take
        what the helper process read back."""
        from ..stats import MetricSummary
        from ._api import evaluation_statistics

        self.run = name
        if statistics is not None and lines is not None:  # from the helper process
            self.lines = lines
            self.statistics = {k: MetricSummary(**d) for k, d in statistics.items()}
        else:
            self.lines, self.statistics = evaluation_statistics(store, name)


def flow_profile(flow: Path) -> tuple[bool, int]:
    """(only python tools and prompts: no model call, a DAG), rough size."""
    from ..flex._describe import input_defaults
    from ..spec import load_flow_spec

    if input_defaults(flow) is not None:
        return False, 1  # a flex flow or prompty: may call anything
    spec = load_flow_spec(flow)
    cpu_bound = all(node.type in ("python", "prompt") and "connection" not in node.inputs
                    and not getattr(node, "connection", None) for node in spec.nodes)
    return cpu_bound, len(spec.outputs) + len(spec.nodes)


def helper_wanted(store: Any, session: Any, cpu_bound_runs: int, lines: int) -> bool:
    """Whether CPU-bound evaluation runs should share the work with a helper process."""
    from ..runs._local_store import LocalRunStore

    return (cpu_bound_runs >= 2 and lines >= HELPER_MIN_LINES
            and isinstance(store, LocalRunStore) and session.models is None
            and not session.observers.members  # the session's observers live in this process
            and bool(sys.executable) and (os.cpu_count() or 1) >= 2
            and os.environ.get("PFKIT_EVAL_HELPER", "1") != "0")


class Helper:
    """The helper process, started as early as possible (its imports overlap with this
    process's reading of the base run and binding of the flows). Its replies are read by a
    thread: this process's event loop is busy with its own lines, and the helper must never
    wait for it to write a reply."""

    def __init__(self, store: Any) -> None:
        import queue
        import subprocess
        import threading

        env = dict(os.environ)
        env["PFKIT_HOME"] = str(store.home)
        env["PFKIT_EVAL_HELPER"] = "0"
        self.proc = subprocess.Popen(  # noqa: S603 - our own interpreter and module
            [sys.executable, "-c", _HELPER_CODE], stdin=subprocess.PIPE,
            stdout=subprocess.PIPE, env=env, close_fds=True)
        self.replies: queue.SimpleQueue = queue.SimpleQueue()
        self.used = False
        self.reader = threading.Thread(target=self._read, name="pfkit-eval-helper-reader",
                                       daemon=True)
        self.reader.start()

    @classmethod
    def start(cls, store: Any) -> Helper | None:
        try:
            return cls(store)
        except OSError:
            return None  # this process runs every evaluator

    def _read(self) -> None:
        try:
            for raw in self.proc.stdout:
                self.replies.put(json.loads(raw))
        except (OSError, ValueError):
            pass  # a closed pipe: the process's exit code says the rest
        finally:
            self.replies.put(None)

    def send(self, job: Job) -> None:
        self.used = True
        self.proc.stdin.write((json.dumps(job.to_wire()) + "\n").encode("utf-8"))
        self.proc.stdin.flush()

    async def reply(self) -> dict[str, Any] | None:
        """The helper's next message; None when it has exited."""
        try:
            return self.replies.get_nowait()
        except Exception:  # noqa: BLE001 - queue.Empty: wait in a thread
            return await asyncio.to_thread(self.replies.get)

    def close(self, kill: bool = False) -> int:
        """End the helper: at the end of its input (it exits), or killed (also when it was
        never given a job: an error stopped the evaluation before any run)."""
        if self.proc.poll() is None:
            if kill or not self.used:
                self.proc.kill()
            else:
                try:
                    self.proc.stdin.close()
                except OSError:
                    pass
        code = self.proc.wait()
        self.reader.join()
        for pipe in (self.proc.stdin, self.proc.stdout):
            try:
                pipe.close()
            except OSError:
                pass
        return code


class _Counter:
    """An observer of this process's runs: every finished line moves the progress on."""

    def __init__(self, tick: Callable[[bool], None]) -> None:
        self.tick = tick

    def on_line_end(self, result: Any) -> None:
        self.tick(getattr(result, "status", "Completed") != "Completed")


async def run_jobs(jobs: list[Job], *, store: Any, session: Any, helper: Helper | None = None,
                   progress: Any = None) -> list[Outcome]:
    """Create every job's run, concurrently (see the module's docstring); one outcome per job,
    in the jobs' order; CPU-bound runs are shared with ``helper`` when given (the caller
    closes it). Never raises for a failed run: its error is in its outcome."""
    outcomes = [Outcome() for _ in jobs]
    several = sum(1 for j in jobs if j.cpu_bound) >= 2
    tick = progress.update if progress is not None else (lambda failed: None)
    observers = (_Counter(tick),) if progress is not None else ()

    async def local(index: int) -> None:
        from ..runs._api import _request, acreate_run

        job = jobs[index]
        # several CPU-bound runs at once: worker processes per run would only share the cores
        request = _request(job.flow, job.data, run=job.run, column_mapping=job.column_mapping,
                           connections=job.connections, tags=job.tags,
                           workers=1 if job.cpu_bound and several else None)
        try:
            run = await acreate_run(request, store=store, progress=False, observers=observers,
                                    session=session)
            outcomes[index].finish(store, run.name)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001 - reported in plan order by the caller
            outcomes[index].error = exc

    # CPU-bound runs one after another (at once they would only share this core), with the
    # helper when there is one: it takes the largest runs first, this process the smallest (it
    # also reads every run back and prints the result), so both end at about the same time.
    # Runs that call models overlap.
    queue = [i for i, j in enumerate(jobs) if j.cpu_bound]
    others = [i for i in range(len(jobs)) if i not in queue]
    if helper is not None:
        queue.sort(key=lambda i: -jobs[i].cost)

    async def local_worker() -> None:
        while queue:
            await local(queue.pop() if helper is not None else queue.pop(0))

    tasks = [asyncio.ensure_future(local(i)) for i in others]
    if queue:
        tasks.append(asyncio.ensure_future(local_worker()))
    if queue and helper is not None:
        tasks.append(asyncio.ensure_future(_helper_worker(helper, jobs, queue, outcomes, store,
                                                          tick, local)))
    try:
        await asyncio.gather(*tasks)
    finally:
        for task in tasks:
            if not task.done():
                task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    return outcomes


# -- the helper process ---------------------------------------------------------------------

_HELPER_CODE = """\
import sys
if sys.path and sys.path[0] == '':
    del sys.path[0]
from pfkit.evaluate._parallel import helper_main
helper_main()
"""


async def _helper_worker(helper: Helper, jobs: list[Job], queue: list[int],
                         outcomes: list[Outcome], store: Any, tick: Callable[[bool], None],
                         local: Callable[[int], Any]) -> None:
    """Hand the helper the next queued job until none is left."""
    try:
        while queue:
            index = queue.pop(0)
            job = jobs[index]
            try:
                helper.send(job)
            except OSError:  # the helper died before it took the job: run it here
                await local(index)
                return
            while True:
                message = await helper.reply()
                if message is None:
                    code = await asyncio.to_thread(helper.proc.wait)
                    outcomes[index].error = PfkitError(
                        f"the evaluation helper process exited (code {code}) while running "
                        f"evaluator '{job.alias}'", code="EvaluationHelperFailed",
                        hint="Run pfkit eval again; set PFKIT_EVAL_HELPER=0 to run every "
                             "evaluator in this process.")
                    return
                if "progress" in message:
                    for failed in (False,) * message["progress"] + (True,) * message["failed"]:
                        tick(failed)
                    continue
                if "error" in message:
                    outcomes[index].error = _rebuild_error(message["error"])
                else:
                    outcomes[index].finish(store, message["run"], message["statistics"],
                                           message["lines"])
                break
    except BaseException:
        if helper.proc.poll() is None:  # canceled (Ctrl-C): the helper's run stops with it
            helper.proc.kill()
        raise


def _error_payload(exc: BaseException) -> dict[str, Any]:
    if isinstance(exc, PfkitError):
        loc = exc.location
        return {"type": type(exc).__name__, "user": isinstance(exc, UserError),
                "message": exc.message, "code": exc.code, "hint": exc.hint,
                "location": {k: getattr(loc, k) for k in ("file", "line", "node", "field",
                                                          "row")}}
    return {"type": type(exc).__name__, "user": False, "message": f"{type(exc).__name__}: {exc}",
            "code": "InternalError", "hint": None, "location": {}}


def _rebuild_error(data: dict[str, Any]) -> PfkitError:
    """The helper's error as this process would have raised it: same class when pfkit.errors
    has it (same message, code, hint and location), else a PfkitError that says the same."""
    import pfkit.errors as errors

    location = Location(**{k: v for k, v in (data.get("location") or {}).items()
                           if v is not None})
    cls = getattr(errors, str(data.get("type")), None)
    base = UserError if data.get("user") else PfkitError
    if not (isinstance(cls, type) and issubclass(cls, base)):
        cls = base
    exc = cls.__new__(cls)
    PfkitError.__init__(exc, data["message"], code=data.get("code"), location=location,
                        hint=data.get("hint"))
    return exc


def helper_main() -> None:
    """The helper process: one job (JSON) per line on stdin, one reply per line on its
    protocol pipe; tools' prints go to stderr. Exits at end of input."""
    import time

    proto_in = os.fdopen(os.dup(0), "rb")
    proto_out = os.fdopen(os.dup(1), "wb")
    devnull = os.open(os.devnull, os.O_RDONLY)
    os.dup2(devnull, 0)
    os.close(devnull)
    os.dup2(2, 1)

    from ..runs import Run
    from ..runs._api import _request, create_run
    from ..session import Session
    from ._api import EVALUATION_FIELDS, read_lines, run_statistics

    session = Session.default()

    def send(message: dict[str, Any]) -> None:
        proto_out.write((json.dumps(message, ensure_ascii=False, default=repr) + "\n")
                        .encode("utf-8"))
        proto_out.flush()

    class Reporter:
        def __init__(self) -> None:
            self.done = self.failed = 0
            self.last = time.monotonic()

        def on_line_end(self, result: Any) -> None:
            if getattr(result, "status", "Completed") == "Completed":
                self.done += 1
            else:
                self.failed += 1
            now = time.monotonic()
            if now - self.last >= PROGRESS_EVERY:
                self.flush()
                self.last = now

        def flush(self) -> None:
            if self.done or self.failed:
                send({"progress": self.done, "failed": self.failed})
                self.done = self.failed = 0

    for raw in proto_in:
        job = json.loads(raw)
        reporter = Reporter()
        try:
            request = _request(job["flow"], job["data"], run=job["run"],
                               column_mapping=job["column_mapping"],
                               connections=job["connections"], tags=job["tags"], workers=1)
            run = create_run(request, progress=False, observers=(reporter,), session=session)
            reporter.flush()
            run = Run(run.name, session.store)
            lines = read_lines(session.store, run.name, EVALUATION_FIELDS)
            stats = run_statistics(run, lines)
            # the lines as the parent would read them back: it need not parse the records again
            send({"run": run.name, "statistics": {k: s.to_dict() for k, s in stats.items()},
                  "lines": lines})
        except Exception as exc:  # noqa: BLE001 - the parent raises it
            reporter.flush()
            send({"error": _error_payload(exc)})
