"""Creating runs and reading them back: ``pfkit.run(...)``, ``pfkit.get_run(name)``.

The batch orchestrator is here: it creates the run's record (atomically), picks a line runner,
and emits ``on_run_start``, ``on_line_end`` and ``on_run_end`` to the run's observers (the run
writer, the line counts, the progress line, ``--stream`` printing, the caller's observers), each
from exactly one place.
"""

from __future__ import annotations

import asyncio
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

from ..errors import PfkitError, UserError
from ..observe import Observers, RunFinished, RunStarted
from ..spec import resolve_flow_file
from ._batch import (
    BatchOutcome,
    CountedRows,
    LineWriter,
    RunRequest,
    StreamPrinter,
    default_run_name,
    line_timeout,
    rows_for_run,
    run_error_record,
    summarize_errors,
)
from ._fingerprint import data_changes, data_fingerprint, flow_changes, flow_fingerprint
from ._progress import Progress
from ._records import CANCELED, COMPLETED, FAILED, PREPARING, RUNNING, RunRecord
from ._runner import InProcessRunner
from ._store_api import InvalidRunName, RunExists, RunStore, StoreWriteError, check_run_name


class RunCanceled(KeyboardInterrupt):
    """Ctrl-C stopped a run; its finished lines are saved and it can be resumed."""

    def __init__(self, name: str) -> None:
        super().__init__(name)
        self.name = name


def default_store() -> RunStore:
    """The store of the default session (the local store under ``$PFKIT_HOME``)."""
    from ..session import Session

    return Session.default().store


class Run:
    """A run in the store. ``status``, ``metrics()``, ``details()`` (a pandas DataFrame),
    ``outputs()`` and ``lines()`` read its records."""

    def __init__(self, name: str, store: RunStore | None = None) -> None:
        self.store = store or default_store()
        self.name = check_run_name(name)
        self._record = self.store.get(name)

    def refresh(self) -> Run:
        self._record = self.store.get(self.name)
        return self

    @property
    def record(self) -> RunRecord:
        return self._record

    @property
    def info(self) -> dict[str, Any]:
        return self._record.to_dict()

    @property
    def status(self) -> str:
        return self._record.status

    @property
    def path(self) -> Path | None:
        return self.store.run_path(self.name)

    def metrics(self) -> dict[str, Any]:
        from ..authoring._display import Metrics  # a dict that shows as a table in Jupyter

        return Metrics(self.store.metrics(self.name))

    def _repr_html_(self) -> str:
        from ..authoring._display import run_html

        return run_html(self)

    def lines(self) -> list[dict[str, Any]]:
        """One record per line, in line order: line_number, status, inputs, outputs, error."""
        return [line.to_dict() for line in self.store.lines(self.name)]

    def outputs(self) -> list[dict[str, Any]]:
        return [{"line_number": r.line_number, **r.outputs} for r in self.store.lines(self.name)
                if r.status == COMPLETED]

    def details(self):
        """A pandas DataFrame: ``inputs.*``, ``inputs.line_number``, ``outputs.*`` per line
        (failed lines have empty outputs), as promptflow's ``get_details``. Needs pandas
        (``pip install 'pfkit[pandas]'``); :meth:`lines` gives the same as plain dicts."""
        try:
            import pandas as pd
        except ImportError:
            raise UserError("Run.details() needs pandas, which is not installed",
                            code="MissingDependency",
                            hint="pip install 'pfkit[pandas]'  (or use run.lines()).") from None

        rows = []
        for record in self.store.lines(self.name):
            row = {f"inputs.{k}": v for k, v in record.inputs.items()}
            row["inputs.line_number"] = record.line_number
            row.update({f"outputs.{k}": v for k, v in (record.outputs or {}).items()})
            rows.append(row)
        return pd.DataFrame(rows)

    def __repr__(self) -> str:
        return f"Run(name={self.name!r}, status={self.status!r})"


def get_run(name: str, *, store: RunStore | None = None) -> Run:
    """A run from the store (``$PFKIT_HOME``), by name."""
    return Run(name, store)


def _request(flow: str | Path, data: str | Path | None = None, *,
             column_mapping: dict[str, Any] | None = None, variant: str | None = None,
             run: str | Run | None = None, name: str | None = None,
             display_name: str | None = None, concurrency: int = 16,
             resume_from: str | Run | None = None,
             environment_variables: dict[str, str] | None = None,
             connections: dict[str, str] | None = None, cache: str | None = None,
             cassette: str | None = None, line_timeout: float | None = None,
             tags: dict[str, str] | None = None, workers: int | None = None,
             description: str | None = None, init: dict[str, Any] | None = None) -> RunRequest:
    return RunRequest(
        flow=str(flow), data=str(data) if data is not None else None,
        column_mapping=dict(column_mapping or {}), variant=variant,
        run=run.name if isinstance(run, Run) else run, name=name, display_name=display_name,
        description=description, concurrency=concurrency,
        resume_from=resume_from.name if isinstance(resume_from, Run) else resume_from,
        environment_variables=dict(environment_variables or {}),
        connections=dict(connections or {}), cache=cache, cassette=cassette,
        line_timeout=line_timeout, tags=dict(tags or {}), workers=workers,
        init=dict(init or {}),
    )


def run(flow: str | Path, data: str | Path | None = None, *,
        column_mapping: dict[str, Any] | None = None, variant: str | None = None,
        run: str | Run | None = None, name: str | None = None, display_name: str | None = None,
        concurrency: int = 16, resume_from: str | Run | None = None,
        environment_variables: dict[str, str] | None = None,
        connections: dict[str, str] | None = None, cache: str | None = None,
        line_timeout: float | None = None, tags: dict[str, str] | None = None,
        progress: bool = False, models: Any = None, workers: int | None = None,
        store: RunStore | None = None, observers: Any = (), session: Any = None,
        cassette: str | None = None, description: str | None = None,
        init: dict[str, Any] | None = None) -> Run:
    """Run ``flow`` over ``data`` and return the :class:`Run` (works in Jupyter too).

    ``column_mapping`` maps flow inputs to ``${data.col}``, ``${run.outputs.col}`` or
    ``${run.inputs.col}`` (with ``run=`` a base run) or literals; ``connections`` overrides
    ``{"node.connection": name, "node.deployment_name": x}``; ``models`` replaces the connection
    store (e.g. ``{"*": EchoModel()}`` in tests); ``workers`` runs lines in that many worker
    processes (default: what suits the flow); ``observers`` receive the run's events;
    ``session`` (default ``pfkit.Session.default()``) provides models, cache and store."""
    request = _request(flow, data, column_mapping=column_mapping, variant=variant, run=run,
                       name=name, display_name=display_name, concurrency=concurrency,
                       resume_from=resume_from, environment_variables=environment_variables,
                       connections=connections, cache=cache, cassette=cassette,
                       line_timeout=line_timeout, tags=tags, workers=workers,
                       description=description, init=init)
    return create_run(request, progress=progress, models=models, store=store,
                      observers=observers, session=session)


async def arun(flow: str | Path, data: str | Path | None = None, *, progress: bool = False,
               models: Any = None, store: RunStore | None = None, observers: Any = (),
               session: Any = None, **options: Any) -> Run:
    """:func:`run` for async code: ``await pfkit.arun(...)`` on the caller's event loop."""
    return await acreate_run(_request(flow, data, **options), store=store, progress=progress,
                             models=models, observers=observers, session=session)


def _base_record(request: RunRequest, flow_file: Path, name: str,
                 variants: Any) -> RunRecord:
    return RunRecord(
        name=name, display_name=request.display_name or name,
        description=request.description, tags=dict(request.tags), status=PREPARING,
        created_on=time.time(), flow_path=str(flow_file.parent), flow_name=flow_file.parent.name,
        data=str(Path(request.data).resolve()) if request.data and not request.data.startswith("hf:")
        else request.data,
        run=request.run, resume_from=request.resume_from,
        variant=dict(variants) if variants is not None else None,
        column_mapping=dict(request.column_mapping), group=request.group,
    )


def check_request_names(request: RunRequest) -> None:
    """Every name in the request that names a run (and so a folder) is safe, or a clear
    error before anything happens."""
    if request.name is not None:
        check_run_name(request.name)
    if request.resume_from is not None:
        check_run_name(request.resume_from, "--resume-from run name")
    if request.run is not None:
        check_run_name(request.run, "--run (base run) name")
    if request.group is not None:
        check_run_name(request.group, "group name")


def create_run(request: RunRequest, *, store: RunStore | None = None, progress: bool = True,
               models: Any = None, observers: Any = (), session: Any = None) -> Run:
    """Run a flow over a dataset and record it. Lines that fail are data; an error that stops
    the run (a bad flow, bad data, a bad mapping) marks the run Failed and is raised."""
    from ..session import Session

    session = session or Session.default()
    return session.run_sync(acreate_run(request, store=store, progress=progress, models=models,
                                        observers=observers, session=session))


async def acreate_run(request: RunRequest, *, store: RunStore | None = None, progress: bool = True,
                      models: Any = None, observers: Any = (), session: Any = None) -> Run:
    from ..providers._lazy import CASSETTE_NAME
    from ..session import Session

    check_request_names(request)
    session = session or Session.default()
    store = store or session.store
    flow_file = resolve_flow_file(request.flow)
    # relative paths mean the caller's folder: fix them before anything changes directory
    if request.data and not request.data.startswith("hf:"):
        request = replace(request, data=str(Path(request.data).expanduser().absolute()))
    if request.cassette:
        request = replace(request, cassette=str(Path(request.cassette).expanduser().absolute()))
    given_models = models is not None or session.models is not None
    layer = None
    if models is None and session.models is None:
        layer = session.model_layer(request.cache,
                                    request.cassette or flow_file.parent / CASSETTE_NAME)
        models = layer
    users = observers if isinstance(observers, Observers) else Observers(tuple(observers))
    user_observers = session.observers.with_(*users.members)
    # worker processes asked for by number start now: they import pfkit and bind the flow
    # while this process loads it and prepares the run
    early = _prestart_workers(request, given_models, user_observers)
    name = request.name
    record: RunRecord | None = None
    created = False
    try:
        try:
            flow = session.load_executable(flow_file, variant=request.variant,
                                           connection_overrides=request.connections,
                                           **({"init": request.init} if request.init else {}),
                                           models=models,
                                           connections=getattr(models, "connection", None))
        except PfkitError:
            if name is None:
                name = default_run_name(flow_file.parent, None)
            raise
        if name is None:
            variant_id = "_".join(flow.variants_used.values()) or None
            name = default_run_name(flow_file.parent, variant_id)
        resolved_yaml = flow.resolved_yaml()
        record = _base_record(request, flow_file, name, flow.variants_used)
        record.fingerprints = {"data": data_fingerprint(request.data),
                               "flow": flow_fingerprint(flow.code_dir, resolved_yaml)}
        if request.resume_from:
            _check_resumable(request, store, flow_file, record)
        record.output_path = store.location(name)
        store.create(record)  # atomic: RunExists when the name is taken, nothing touched
        created = True
        return await _execute(request, flow, store, record, resolved_yaml, progress, layer,
                              given_models, user_observers, early)
    except PfkitError as exc:
        if isinstance(exc, (RunExists, InvalidRunName)) or name is None:
            raise
        if record is None:
            record = _base_record(request, flow_file, name, None)
        record.status, record.end_time = FAILED, time.time()
        record.error = run_error_record(exc)
        try:
            if created:
                store.save(record)
            else:  # a run that could not start is recorded, unless the name is taken
                store.create(record)
        except (RunExists, StoreWriteError):
            pass
        raise
    finally:
        if early is not None:
            early.close()  # workers that no run used (a no-op once the run used them)
        if layer is not None:
            written = layer.finish()
            if written is not None and progress:
                print(f"pfkit: wrote {written} model calls to {layer.cassette}", file=sys.stderr)


def _check_resumable(request: RunRequest, store: RunStore, flow_file: Path,
                     record: RunRecord) -> None:
    """``--resume-from`` reuses lines only when they were made by the same flow on the same
    data: otherwise say what changed, and refuse."""
    old = store.get(request.resume_from)
    name = request.resume_from
    if old.flow_path != str(flow_file.parent):
        raise UserError(f"run '{name}' ran another flow ({old.flow_path})",
                        code="InvalidResume", hint="Resume with the same --flow.")
    if old.status in (PREPARING, RUNNING):
        raise UserError(f"run '{name}' is still running", code="InvalidResume",
                        hint="Wait for it to finish (or stop it) before resuming it.")
    before = old.fingerprints or {}
    now = record.fingerprints or {}
    changes = data_changes(before.get("data"), now.get("data"))
    changes += flow_changes(before.get("flow"), now.get("flow"))
    if changes:
        raise UserError(
            f"cannot resume run '{name}': " + "; ".join(changes) + ". Its completed lines were "
            "made from the old version and would be mixed with new ones",
            code="InvalidResume",
            hint="Start a new run without --resume-from, or restore the data and flow the run "
                 "used.")


def _resident_in_own_process(flow: Any, workers: int) -> Any:
    """In a process pfkit owns (the ``pfkit`` command), lines run in-process keep the flow's
    folder and environment applied for the whole run (``pfkit._runtime``); in a user's own
    process they are applied around each tool call only."""
    import contextlib

    from .._runtime import owned

    if workers > 1 or not owned():
        return contextlib.nullcontext()
    from ..engine import resident

    return resident(flow)


async def _execute(request: RunRequest, flow: Any, store: RunStore, record: RunRecord,
                   resolved_yaml: str, show_progress: bool, layer: Any,
                   given_models: bool, user_observers: Observers, early: Any = None) -> Run:
    writer = store.open_writer(record.name)
    collected = flow.aggregation_collector()
    outcome = BatchOutcome(collected=collected if flow.has_aggregation else None)
    aggregation = None
    run_error = None
    progress = None
    observers = run_observers = None
    counted = None
    try:
        # a DAG's resolved YAML is promptflow's snapshot/flow.dag.yaml; flex and prompty files
        # keep their own names (a prompty's text is no flow.dag.yaml)
        writer.save_snapshot(flow.code_dir, resolved_yaml,
                             "flow.dag.yaml" if flow.kind == "dag" else flow.file.name)
        reused = _reuse_lines(request, store, writer, flow, outcome)
        flow = flow.with_environment(request.environment_variables)
        # the HTTP client library of the flow's models, imported in the background since they
        # were bound, is loaded before the first line (startup, as for any import)
        from ..providers._http import prefetched

        await prefetched()
        record.status, record.start_time = RUNNING, time.time()
        store.save(record)
        # flows apply their own folder and environment around their tool calls (for the whole
        # run in a process pfkit owns: _resident_in_own_process)
        rows, total, warnings = rows_for_run(flow, request, store, reused)
        runner, workers = _runner_for(request, flow, store, total, given_models,
                                      user_observers, early)
        writer.log(f"run {record.name} started: flow {record.flow_path}, "
                   f"concurrency {request.concurrency}, workers {workers}, "
                   f"reused {len(reused)} lines")
        for note in warnings:
            writer.log(f"warning: {note}")
            if show_progress:
                print(f"pfkit: warning: {note}", file=sys.stderr)
        progress: Any = Progress(total, label=f"{record.name}: ", enabled=show_progress)
        if show_progress:  # in Jupyter, a tqdm bar redrawn in place (when tqdm is installed)
            from ..authoring._display import notebook_progress

            progress = notebook_progress(record.name) or progress
        members: list[Any] = [LineWriter(writer), outcome, progress]
        if request.stream:
            members.append(StreamPrinter())
        # in this process the engine gives the caller's observers every line event; lines
        # run in worker processes reach them as FinishedLine from here
        observers = Observers((*members, *(user_observers.members if workers > 1 else ())))
        run_observers = Observers((*members, *user_observers.members))
        run_observers.on_run_start(RunStarted(record.name, record.flow_path or "", total,
                                              len(reused)))
        counted = CountedRows(rows)
        try:
            with _resident_in_own_process(flow, workers):
                await runner.run(counted, observers.on_line_end)
        except (asyncio.CancelledError, KeyboardInterrupt):
            outcome.canceled = True
        finally:
            absorb = getattr(runner, "absorb_cache_usage", None)
            if absorb is not None and layer is not None:
                absorb(_CacheView(layer))
        if not outcome.canceled:
            missing = counted.read - (outcome.recorded - outcome.reused)
            if missing > 0:
                raise PfkitError(
                    f"{missing} of {counted.read} lines were started but never recorded",
                    code="LinesMissing",
                    hint=f"Finish the run with  --resume-from {record.name}, and please "
                         "report this.")
        if flow.has_aggregation and not outcome.canceled:
            aggregation = await flow.aggregate(collected, observers=user_observers)
    except Exception as exc:  # noqa: BLE001 - recorded, then raised: never "Completed"
        if isinstance(exc, StoreWriteError):
            data = f" --data {record.data}" if record.data else ""
            exc.hint = (f"Free space (or fix the permissions) where the run store lives; the "
                        f"lines written so far are kept: finish the run with  pfkit run create "
                        f"--flow {record.flow_path}{data} --resume-from {record.name}")
        run_error = run_error_record(exc)
        raise
    finally:
        _finalize(store, record, writer, outcome, aggregation, run_error, layer, run_observers)
    if outcome.canceled:
        raise RunCanceled(record.name)
    return Run(record.name, store)


class _CacheView:
    """What WorkerRunner.absorb_cache_usage reads from the run's models (``.session.cache``)."""

    def __init__(self, layer: Any) -> None:
        self.session = layer._cache_session


def _worker_spec(request: RunRequest) -> Any:
    from ..connections._store import pfkit_home
    from ._workers import WorkerFlowSpec

    return WorkerFlowSpec(flow=str(resolve_flow_file(request.flow)),
                          variant=request.variant,  # text, or {node: variant id}
                          connection_overrides=dict(request.connections),
                          environment=dict(request.environment_variables),
                          cache=request.cache, cassette=request.cassette,
                          pfkit_home=str(pfkit_home()),  # connections; the parent writes runs
                          line_timeout=line_timeout(request.line_timeout),
                          init=dict(request.init))


def _outputs_needed(request: RunRequest, workers: int, user_observers: Observers) -> bool:
    """Whether the run's sink reads ``FinishedLine.outputs`` (not only the records): to print
    them (``--stream``), or for the caller's observers, which get the lines of worker
    processes as FinishedLine (in this process the engine gives them its own line events).
    Otherwise lines leave them empty, and worker processes send no copy of them."""
    return bool(request.stream) or (workers > 1 and bool(user_observers))


def _prestart_workers(request: RunRequest, given_models: bool,
                      user_observers: Observers) -> Any:
    """``--workers N`` (N > 1): the worker runner, its processes started; None otherwise (or
    when they cannot start: the run then says why when it starts them)."""
    if given_models or request.workers is None or request.workers < 2 \
            or sys.platform == "win32":
        return None
    try:
        from ._workers import WorkerRunner

        runner = WorkerRunner(_worker_spec(request), workers=request.workers,
                              concurrency=request.concurrency,
                              timeout=line_timeout(request.line_timeout),
                              outputs=_outputs_needed(request, request.workers, user_observers))
        runner.prestart()
    except (PfkitError, OSError):
        return None
    return runner


def _runner_for(request: RunRequest, flow: Any, store: RunStore, total: int | None,
                given_models: bool, observers: Observers | None = None,
                early: Any = None) -> tuple[Any, int]:
    """The in-process runner, or worker processes (``--workers N``; by default what suits
    the flow: see ``pfkit.runs._workers.default_workers``). ``early``: the runner that
    :func:`_prestart_workers` started."""
    timeout = line_timeout(request.line_timeout)
    workers = request.workers
    if workers is not None and workers < 1:
        raise UserError(f"--workers must be at least 1, not {workers}", code="InvalidWorkers",
                        hint="Pass --workers 1 to run lines in this process.")
    try:
        from ._workers import WorkerRunner, default_workers
    except ImportError:  # pragma: no cover - the worker runner ships with pfkit
        return InProcessRunner(flow, concurrency=request.concurrency, timeout=timeout,
                               observers=observers), 1
    if workers is None:
        workers = 1 if given_models else default_workers(flow, total,
                                                         concurrency=request.concurrency)
    if workers <= 1:
        return InProcessRunner(flow, concurrency=request.concurrency, timeout=timeout,
                               observers=observers,
                               outputs=_outputs_needed(request, 1, observers)), 1
    if given_models:
        raise UserError("workers > 1 cannot use the models= given to this call (they live in "
                        "this process)", code="InvalidWorkers",
                        hint="Pass workers=1, or configure connections instead of models=.")
    if early is not None:
        return early, workers
    return WorkerRunner(_worker_spec(request), workers=workers, concurrency=request.concurrency,
                        timeout=timeout,
                        outputs=_outputs_needed(request, workers, observers)), workers


def _reuse_lines(request: RunRequest, store: RunStore, writer: Any, flow: Any,
                 outcome: BatchOutcome) -> dict[int, Any]:
    """From ``--resume-from``: completed lines are copied (with their aggregation inputs) and
    not run again; failed and missing lines run."""
    if not request.resume_from:
        return {}
    reused: dict[int, Any] = {}
    for line in store.finished_lines(request.resume_from, status=COMPLETED):
        if flow.has_aggregation and line.aggregation_values is None:
            raise UserError(f"run '{request.resume_from}' has no aggregation inputs for line "
                            f"{line.line_number}", code="InvalidResume")
        writer.write_line(line)
        outcome.add_reused(line)
        reused[line.line_number] = True
    return reused


def _finalize(store: RunStore, record: RunRecord, writer: Any, outcome: BatchOutcome,
              aggregation: Any, run_error: dict | None, layer: Any,
              observers: Observers | None) -> None:
    metrics = aggregation.metrics if aggregation is not None else {}
    aggregation_error = aggregation.error if aggregation is not None else None
    total = outcome.completed + outcome.failed
    errors = summarize_errors(outcome, total, aggregation_error, run_error)
    end = time.time()
    from ..providers._usage import estimate_cost

    system = {
        "duration": round(end - (record.start_time or end), 6),
        "__pf__.lines.completed": outcome.completed,
        "__pf__.lines.failed": outcome.failed,
        "lines.reused": outcome.reused,
        **outcome.tokens,
    }
    cost = estimate_cost(outcome.by_model)
    if cost is not None:
        system["cost_usd"] = cost
    if layer is not None and layer.stats:
        system["cache"] = layer.stats
    if aggregation is not None:
        for name, node_run in aggregation.node_runs.items():
            system[f"__pf__.nodes.{name}.{node_run.status.lower()}"] = 1
    if aggregation_error:
        try:
            writer.log(f"aggregation nodes failed in batch run: {aggregation_error['message']}")
        except StoreWriteError:
            pass
    meta = {"batch_size": total, "schema_version": 1}
    try:
        writer.finish(metrics, errors, meta)
    except StoreWriteError as exc:
        if run_error is None:
            run_error = run_error_record(exc)
            errors = summarize_errors(outcome, total, aggregation_error, run_error)
    finally:
        writer.close()
    status = FAILED if run_error else CANCELED if outcome.canceled else COMPLETED
    record.status, record.end_time = status, end
    record.properties = {"system_metrics": system}
    record.error = (errors or {}).get("run") or (errors or {}).get("lines")
    if status == FAILED and run_error and run_error.get("code") == "StoreWriteFailed":
        record.status_detail = ("stopped: the run store could not be written; the lines "
                                f"written are kept: resume with --resume-from {record.name}")
    if aggregation_error:
        record.aggregation_error = aggregation_error
    try:
        store.save(record)
    except StoreWriteError:
        pass  # the run stays "Running" in the store; once this process ends it shows Canceled
    if observers is not None:
        observers.on_run_end(RunFinished(record.name, status, outcome.completed, outcome.failed,
                                         record.error))
