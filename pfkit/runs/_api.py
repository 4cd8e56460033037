"""Creating runs and reading them back: ``pfkit.run(...)``, ``pfkit.get_run(name)``."""

from __future__ import annotations

import asyncio
import json
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

from .._aio import run_sync
from ..engine import AggregationInputs, execute_aggregation, working_directory
from ..errors import PfkitError, UserError
from ..spec import resolve_flow_file
from ._batch import (
    BatchOutcome,
    RunRequest,
    default_run_name,
    execute_rows,
    line_timeout,
    resolved_flow_yaml,
    rows_for_run,
    run_error_record,
    summarize_errors,
)
from ._progress import Progress
from ._store import (
    CANCELED,
    COMPLETED,
    FAILED,
    PREPARING,
    RUNNING,
    LineFile,
    RunStore,
    RunWriter,
    copy_snapshot,
    read_line_records,
)


class RunCanceled(KeyboardInterrupt):
    """Ctrl-C stopped a run; its finished lines are saved and it can be resumed."""

    def __init__(self, name: str) -> None:
        super().__init__(name)
        self.name = name


class Run:
    """A run in the store. ``status``, ``metrics()``, ``details()`` (a pandas DataFrame),
    ``outputs()`` and ``lines()`` read its records."""

    def __init__(self, name: str, store: RunStore | None = None) -> None:
        self.store = store or RunStore()
        self.name = name
        self._record = self.store.get(name)

    def refresh(self) -> Run:
        self._record = self.store.get(self.name)
        return self

    @property
    def info(self) -> dict[str, Any]:
        return dict(self._record)

    @property
    def status(self) -> str:
        return self._record["status"]

    @property
    def path(self) -> Path:
        return self.store.run_dir(self.name)

    def metrics(self) -> dict[str, Any]:
        file = self.path / "metrics.json"
        return json.loads(file.read_text(encoding="utf-8")) if file.is_file() else {}

    def lines(self) -> list[dict[str, Any]]:
        """One record per line, in line order: line_number, status, inputs, outputs, error."""
        records = read_line_records(self.path / "lines.jsonl")
        return [records[k] for k in sorted(records)]

    def outputs(self) -> list[dict[str, Any]]:
        return [{"line_number": r["line_number"], **r["outputs"]} for r in self.lines()
                if r["status"] == COMPLETED]

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
        for record in self.lines():
            row = {f"inputs.{k}": v for k, v in record["inputs"].items()}
            row["inputs.line_number"] = record["line_number"]
            row.update({f"outputs.{k}": v for k, v in (record["outputs"] or {}).items()})
            rows.append(row)
        return pd.DataFrame(rows)

    def __repr__(self) -> str:
        return f"Run(name={self.name!r}, status={self.status!r})"


def get_run(name: str) -> Run:
    """A run from the store (``$PFKIT_HOME``), by name."""
    return Run(name)


def run(flow: str | Path, data: str | Path | None = None, *,
        column_mapping: dict[str, Any] | None = None, variant: str | None = None,
        run: str | Run | None = None, name: str | None = None, display_name: str | None = None,
        concurrency: int = 16, resume_from: str | Run | None = None,
        environment_variables: dict[str, str] | None = None,
        connections: dict[str, str] | None = None, cache: str | None = None,
        line_timeout: float | None = None, tags: dict[str, str] | None = None,
        progress: bool = False, models: Any = None) -> Run:
    """Run ``flow`` over ``data`` and return the :class:`Run` (works in Jupyter too).

    ``column_mapping`` maps flow inputs to ``${data.col}``, ``${run.outputs.col}`` or
    ``${run.inputs.col}`` (with ``run=`` a base run) or literals; ``connections`` overrides
    ``{"node.connection": name, "node.deployment_name": x}``; ``models`` replaces the connection
    store (e.g. ``{"*": EchoModel()}`` in tests)."""
    request = RunRequest(
        flow=str(flow), data=str(data) if data is not None else None,
        column_mapping=dict(column_mapping or {}), variant=variant,
        run=run.name if isinstance(run, Run) else run, name=name, display_name=display_name,
        concurrency=concurrency,
        resume_from=resume_from.name if isinstance(resume_from, Run) else resume_from,
        environment_variables=dict(environment_variables or {}),
        connections=dict(connections or {}), cache=cache, line_timeout=line_timeout,
        tags=dict(tags or {}),
    )
    return create_run(request, progress=progress, models=models)


def _base_record(request: RunRequest, flow_file: Path, name: str, graph: Any) -> dict[str, Any]:
    now = time.time()
    return {
        "name": name, "display_name": request.display_name or name,
        "description": request.description, "tags": request.tags, "status": PREPARING,
        "created_on": now, "start_time": None, "end_time": None,
        "flow_path": str(flow_file.parent), "flow_name": flow_file.parent.name,
        "data": str(Path(request.data).resolve()) if request.data else None,
        "run": request.run, "resume_from": request.resume_from,
        "variant": graph.variants_used if graph is not None else None,
        "column_mapping": request.column_mapping, "group": request.group,
        "output_path": None, "error": None, "archived": False,
        "properties": {"system_metrics": {}},
    }


def create_run(request: RunRequest, *, store: RunStore | None = None, progress: bool = True,
               models: Any = None) -> Run:
    """Run a flow over a dataset and record it. Lines that fail are data; an error that stops
    the run (a bad flow, bad data, a bad mapping) marks the run Failed and is raised."""
    return run_sync(acreate_run(request, store=store, progress=progress, models=models))


async def acreate_run(request: RunRequest, *, store: RunStore | None = None, progress: bool = True,
                      models: Any = None) -> Run:
    from .._flows import flow_environment, load_bound_flow
    from ..providers._lazy import CASSETTE_NAME, LazyModelSession

    store = store or RunStore()
    flow_file = resolve_flow_file(request.flow)
    # relative paths mean the caller's folder: fix them before anything changes directory
    if request.data and not request.data.startswith("hf:"):
        request = replace(request, data=str(Path(request.data).expanduser().absolute()))
    if request.cassette:
        request = replace(request, cassette=str(Path(request.cassette).expanduser().absolute()))
    session = None
    if models is None:
        session = LazyModelSession(request.cache,
                                   request.cassette or flow_file.parent / CASSETTE_NAME)
        models = session
    name = request.name
    record: dict[str, Any] | None = None
    try:
        try:
            flow = load_bound_flow(flow_file, variant=request.variant, models=models,
                                   connections=getattr(models, "connection", None),
                                   connection_overrides=request.connections)
        except PfkitError:
            if name is None:
                name = default_run_name(flow_file.parent, None)
            raise
        if name is None:
            variant_id = "_".join(flow.graph.variants_used.values()) or None
            name = default_run_name(flow_file.parent, variant_id)
        if store.exists(name):
            raise UserError(f"a run named '{name}' already exists", code="RunExists",
                            hint="Pick another --name, or delete it with  pfkit run delete -n NAME.")
        record = _base_record(request, flow_file, name, flow.graph)
        folder = store.run_dir(name)
        record["output_path"] = str(folder)
        store.save(record)
        return await _execute(request, flow, store, record, folder, progress, flow_environment,
                              session)
    except PfkitError as exc:
        if name is not None:
            if record is None:
                record = _base_record(request, flow_file, name, None)
            record.update(status=FAILED, error=run_error_record(exc), end_time=time.time())
            if not store.exists(name) or store.get(name)["status"] in (PREPARING, RUNNING):
                store.save(record)
        raise
    finally:
        if session is not None:
            written = session.finish()
            if written is not None and progress:
                print(f"pfkit: wrote {written} model calls to {session.cassette}", file=sys.stderr)


async def _execute(request: RunRequest, flow: Any, store: RunStore, record: dict[str, Any],
                   folder: Path, show_progress: bool, flow_environment: Any, session: Any) -> Run:
    copy_snapshot(flow.spec.code_dir, folder / "snapshot", resolved_flow_yaml(flow))
    writer = RunWriter(folder)
    collected = AggregationInputs(flow)
    outcome = BatchOutcome()
    reused = _reuse_lines(request, store, writer, collected, flow, outcome)
    env = {**flow.environment, **request.environment_variables}
    flow.environment = env
    record.update(status=RUNNING, start_time=time.time())
    store.save(record)
    writer.log(f"run {record['name']} started: flow {record['flow_path']}, "
               f"concurrency {request.concurrency}, reused {len(reused)} lines")
    aggregation = None
    run_error = None
    progress = None
    try:
        with working_directory(flow.working_dir), flow_environment(flow):
            rows, total, warnings = rows_for_run(flow, request, store, reused)
            for note in warnings:
                writer.log(f"warning: {note}")
                if show_progress:
                    print(f"pfkit: warning: {note}", file=sys.stderr)
            progress = Progress(total, label=f"{record['name']}: ", enabled=show_progress)
            progress.done = len(reused)
            try:
                await execute_rows(flow, rows, writer, collected, outcome, progress,
                                   concurrency=request.concurrency,
                                   timeout=line_timeout(request.line_timeout),
                                   stream=request.stream)
            except (asyncio.CancelledError, KeyboardInterrupt):
                outcome.canceled = True
            if flow.aggregation_nodes and not outcome.canceled:
                aggregation = await execute_aggregation(flow, collected)
    except PfkitError as exc:
        run_error = run_error_record(exc)
        raise
    finally:
        if progress is not None:
            progress.close()
        _finalize(store, record, writer, outcome, aggregation, run_error, session)
    if outcome.canceled:
        raise RunCanceled(record["name"])
    return Run(record["name"], store)


def _reuse_lines(request: RunRequest, store: RunStore, writer: RunWriter,
                 collected: AggregationInputs, flow: Any, outcome: BatchOutcome) -> dict[int, Any]:
    """From ``--resume-from``: completed lines are copied (with their aggregation inputs) and
    not run again; failed and missing lines run."""
    if not request.resume_from:
        return {}
    old = store.get(request.resume_from)
    if old["flow_path"] != str(resolve_flow_file(request.flow).parent):
        raise UserError(f"run '{request.resume_from}' ran another flow ({old['flow_path']})",
                        code="InvalidResume", hint="Resume with the same --flow.")
    reused = {}
    old_dir = store.run_dir(request.resume_from)
    node_files = [LineFile(f) for f in sorted((old_dir / "node_outputs").glob("*.jsonl"))]
    for number, rec in LineFile(old_dir / "lines.jsonl").iter_sorted():
        if rec["status"] != COMPLETED:
            continue
        nodes = {f.path.stem: f.get(number) for f in node_files if number in f}
        writer.write_line(rec, nodes)
        if flow.aggregation_nodes:
            values = rec.get("aggregation_inputs")
            if values is None:
                raise UserError(f"run '{request.resume_from}' has no aggregation inputs for line "
                                f"{number}", code="InvalidResume")
            collected.add(number, values)
        reused[number] = True
        outcome.completed += 1
        outcome.reused += 1
        for key, value in (rec.get("usage") or {}).items():
            if key.endswith("_tokens"):
                outcome.tokens[key] = outcome.tokens.get(key, 0) + value
    return reused


def _finalize(store: RunStore, record: dict[str, Any], writer: RunWriter, outcome: BatchOutcome,
              aggregation: Any, run_error: dict | None, session: Any) -> None:
    metrics = aggregation.metrics if aggregation is not None else {}
    aggregation_error = aggregation.error if aggregation is not None else None
    total = outcome.completed + outcome.failed
    errors = summarize_errors(outcome, total, aggregation_error, run_error)
    end = time.time()
    from ..providers._usage import estimate_cost

    system = {
        "duration": round(end - (record.get("start_time") or end), 6),
        "__pf__.lines.completed": outcome.completed,
        "__pf__.lines.failed": outcome.failed,
        "lines.reused": outcome.reused,
        **outcome.tokens,
    }
    cost = estimate_cost(outcome.by_model)
    if cost is not None:
        system["cost_usd"] = cost
    if session is not None and session.stats:
        system["cache"] = session.stats
    if aggregation is not None:
        for name, run in aggregation.node_runs.items():
            system[f"__pf__.nodes.{name}.{run.status.lower()}"] = 1
    meta = {"batch_size": total, "schema_version": 1}
    writer.finish(metrics, errors, meta)
    status = FAILED if run_error else CANCELED if outcome.canceled else COMPLETED
    record.update(status=status, end_time=end, properties={"system_metrics": system},
                  error=(errors or {}).get("run") or (errors or {}).get("lines"))
    if aggregation_error:
        record["aggregation_error"] = aggregation_error
        writer_log = writer.folder / "logs.txt"
        with writer_log.open("a", encoding="utf-8") as fh:
            fh.write(f"aggregation nodes failed in batch run: {aggregation_error['message']}\n")
    store.save(record)
