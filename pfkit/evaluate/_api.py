"""``pfkit.evaluate(...)``: evaluators (built-in names, flow folders, plain callables) over a
dataset or a finished run, with every metric's n, missing count and 95% interval.

Flow evaluators run as promptflow evaluation runs (``pfkit run create --run BASE``), linked to
the base run in the store. Callables (functions, or objects with ``__call__``, sync or async, as
azure-ai-evaluation's evaluators) are called once per line with keyword arguments. The result is
shaped like azure-ai-evaluation's: ``result["rows"]`` and ``result["metrics"]``
(``{"alias.metric": value}``), plus :attr:`EvaluationResult.statistics`.
"""

from __future__ import annotations

import asyncio
import inspect
import json
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import UserError
from ..stats import MetricSummary, as_score, summarize
from ._mapping_guess import guess_mapping
from ._report import summary_of

BUILTIN_DIR = Path(__file__).resolve().parent.parent / "evaluators"


def builtin_evaluators() -> list[str]:
    return sorted(p.name for p in BUILTIN_DIR.iterdir() if (p / "flow.dag.yaml").is_file())


def evaluator_path(name: str | Path) -> Path | None:
    """A built-in evaluator's folder, or the flow folder/file given; None if neither."""
    text = str(name)
    builtin = BUILTIN_DIR / text
    if "/" not in text and "\\" not in text and (builtin / "flow.dag.yaml").is_file():
        return builtin
    path = Path(text).expanduser()
    if path.is_dir() and any((path / f).is_file() for f in ("flow.dag.yaml", "flow.dag.yml")):
        return path
    if path.is_file() and path.suffix in (".yaml", ".yml", ".prompty"):
        return path
    if path.is_dir() and any((path / f).is_file() for f in ("flow.flex.yaml", "flow.flex.yml")):
        return path  # a flex flow (pfkit.flex)
    return None


def run_statistics(run: Any, lines: list[dict[str, Any]] | None = None
                   ) -> dict[str, MetricSummary]:
    """Each logged metric of a run with n, missing, errors and a 95% interval, from the line
    output of the same name (a metric no line output carries keeps its value, with no
    interval). ``lines``: the run's line records, when the caller has read them already."""
    metrics = run.metrics()
    lines = run.lines() if lines is None else lines
    failed = sum(1 for line in lines if line.get("status") != "Completed")
    stats: dict[str, MetricSummary] = {}
    for name, value in metrics.items():
        column = [(line.get("outputs") or {}).get(name) for line in lines
                  if line.get("status") == "Completed"]
        if any(as_score(v) is not None for v in column):
            summary = summary_of(name, column, errors=failed)
            logged = as_score(value)
            if logged is not None and summary.value is not None and not math.isclose(
                    logged, summary.value, rel_tol=1e-9, abs_tol=1e-12):
                summary = _with_value(summary, logged)  # the flow's own aggregate (e.g. rounded)
            stats[name] = summary
        else:
            number = as_score(value)
            stats[name] = MetricSummary(name, number, len(column), 0, failed, None, None, "none")
    return stats


EVALUATION_FIELDS = ("line_number", "status", "outputs", "error")


def read_lines(store: Any, name: str, fields: tuple[str, ...] | None = None
               ) -> list[dict[str, Any]]:
    """A run's line records as dicts (line_number, status, inputs, outputs, error...), in line
    order, with only ``fields`` when given: the store's JSON records as written (no round trip
    through typed records)."""
    kept = []
    for record in store.line_dicts(name):
        for key in ("inputs", "outputs"):
            if not isinstance(record.get(key), dict):
                record[key] = {}
        kept.append(record if fields is None else {k: record.get(k) for k in fields})
    return kept


def evaluation_statistics(store: Any, name: str) -> tuple[list[dict[str, Any]],
                                                          dict[str, MetricSummary]]:
    """An evaluation run's lines (the fields ``evaluate`` uses) and its statistics."""
    from ..runs import Run

    lines = read_lines(store, name, EVALUATION_FIELDS)
    return lines, run_statistics(Run(name, store), lines)


def _with_value(summary: MetricSummary, value: float) -> MetricSummary:
    from dataclasses import replace

    return replace(summary, value=value)


@dataclass(frozen=True, slots=True)
class _Plan:
    alias: str
    flow: Path | None
    function: Callable[..., Any] | None
    mapping: dict[str, Any]


class EvaluationResult(dict):
    """``{"rows": [...], "metrics": {...}}`` as azure-ai-evaluation returns, with
    ``statistics`` (alias.metric -> MetricSummary), ``runs`` (alias -> evaluation run name, for
    flow evaluators), tables for notebooks and a readable ``str()``."""

    def __init__(self, rows: list[dict[str, Any]], statistics: dict[str, MetricSummary],
                 runs: dict[str, str]) -> None:
        metrics = {k: s.value for k, s in statistics.items() if s.value is not None}
        super().__init__(rows=rows, metrics=metrics, studio_url=None)
        self.statistics = statistics
        self.runs = runs

    @property
    def rows(self) -> list[dict[str, Any]]:
        return self["rows"]

    @property
    def metrics(self) -> dict[str, Any]:
        return self["metrics"]

    def table(self):
        import pandas as pd

        return pd.DataFrame([s.to_dict() for s in self.statistics.values()])

    def rows_table(self):
        import pandas as pd

        return pd.DataFrame(self.rows)

    def __str__(self) -> str:
        return render_statistics(self.statistics)

    def _repr_html_(self) -> str:
        import html

        cells = "".join(
            f"<tr><td>{html.escape(name)}</td><td>{_fmt(s.value)}</td><td>{s.n}</td>"
            f"<td>{s.missing}</td><td>{s.errors}</td><td>{_interval(s)}</td></tr>"
            for name, s in self.statistics.items())
        return ("<table><tr><th>metric</th><th>value</th><th>n</th><th>missing</th>"
                f"<th>errors</th><th>95% CI</th></tr>{cells}</table>")


def _fmt(value: float | None) -> str:
    return "—" if value is None else f"{value:.4g}"


def _interval(s: MetricSummary) -> str:
    return "—" if s.ci_low is None else f"[{s.ci_low:.4g}, {s.ci_high:.4g}]"


def render_statistics(statistics: Mapping[str, MetricSummary]) -> str:
    """One table of metrics: value, n, missing, errors, interval."""
    if not statistics:
        return "No metric was computed (no line had a score)."
    width = max(12, *(len(k) for k in statistics))
    rows = [f"{'metric':<{width}}  {'value':>9}  {'n':>6}  {'missing':>7}  {'errors':>6}  95% CI",
            "-" * (width + 56)]
    for name, s in statistics.items():
        alias, _, metric = name.partition(".")
        name = alias if metric == alias else name  # "f1_score.f1_score" reads as "f1_score"
        rows.append(f"{name:<{width}}  {_fmt(s.value):>9}  {s.n:>6}  {s.missing:>7}  "
                    f"{s.errors:>6}  {_interval(s)}")
    return "\n".join(rows)


def _connection_overrides(flow: Path, connection: str | None) -> dict[str, str]:
    """Point every model-using node of an evaluator flow at ``connection``."""
    if not connection:
        return {}
    from ..flex._describe import input_defaults
    from ..spec import load_flow_spec

    if input_defaults(flow) is not None:
        return {}  # a flex flow or prompty: no nodes to point at a connection

    spec = load_flow_spec(flow)
    overrides = {}
    for node in spec.nodes:
        if node.type == "llm" or "connection" in node.inputs:
            overrides[f"{node.name}.connection"] = connection
    return overrides


def _flow_inputs(flow: Path) -> dict[str, bool]:
    from ..flex._describe import input_defaults
    from ..spec import load_flow_spec

    described = input_defaults(flow)  # a flex flow or prompty file
    if described is not None:
        return described

    return {name: d.has_default for name, d in load_flow_spec(flow).inputs.items()}


def _callable_inputs(function: Callable[..., Any]) -> dict[str, bool]:
    try:
        signature = inspect.signature(function)
    except (TypeError, ValueError):
        raise UserError(f"evaluator {function!r} is not a function or callable object",
                        code="InvalidEvaluator") from None
    return {name: p.default is not inspect.Parameter.empty
            for name, p in signature.parameters.items()
            if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)}


def _normalise_mapping(mapping: Mapping[str, Any]) -> dict[str, Any]:
    """azure-ai-evaluation writes ``${target.x}`` for the outputs of what was evaluated."""
    out = {}
    for key, value in mapping.items():
        if isinstance(value, str) and value.startswith("${target.") and value.endswith("}"):
            value = "${run.outputs." + value[len("${target."):]
        elif isinstance(value, str) and value.startswith("${outputs."):
            value = "${run.outputs." + value[len("${outputs."):]
        out[key] = value
    return out


def _columns(data: str | None) -> list[str]:
    if not data:
        return []
    from ..data import open_dataset

    return list(open_dataset(data).columns())


def _plan(evaluators: Mapping[str, Any], config: Mapping[str, Any], outputs: list[str],
          columns: list[str]) -> list[_Plan]:
    if not evaluators:
        raise UserError("no evaluators given", code="NoEvaluators",
                        hint="Pass evaluators={'f1': 'f1_score'} (built-in: "
                             + ", ".join(builtin_evaluators()) + ").")
    default = dict((config.get("default") or {}).get("column_mapping") or {})
    plans = []
    for alias, evaluator in evaluators.items():
        given = _normalise_mapping({**default,
                                    **((config.get(alias) or {}).get("column_mapping") or {})})
        if callable(evaluator) and not isinstance(evaluator, (str, Path)):
            inputs = _callable_inputs(evaluator)
            given = {k: v for k, v in given.items() if k in inputs}
            plans.append(_Plan(alias, None, evaluator,
                               guess_mapping(alias, inputs, given, outputs, columns)))
            continue
        path = evaluator_path(evaluator)
        if path is None:
            raise UserError(f"evaluator '{evaluator}' is neither a built-in evaluator nor a flow",
                            code="EvaluatorNotFound",
                            hint="Built-in: " + ", ".join(builtin_evaluators())
                                 + "; or give a flow folder, or a Python callable.")
        inputs = _flow_inputs(path)
        given = {k: v for k, v in given.items() if k in inputs}
        plans.append(_Plan(alias, path, None, guess_mapping(alias, inputs, given, outputs,
                                                           columns)))
    return plans


def evaluate(*, data: str | Path | None = None, run: Any = None,
             evaluators: Mapping[str, Any], evaluator_config: Mapping[str, Any] | None = None,
             judge_connection: str | None = None, output_path: str | Path | None = None,
             store: Any = None, progress: bool = False, **_ignored: Any) -> EvaluationResult:
    """Run ``evaluators`` ({alias: built-in name | flow folder | callable}) over ``data``
    and/or the finished ``run`` (name or :class:`pfkit.Run`). Column mappings come from
    ``evaluator_config`` ({"default" or alias: {"column_mapping": {...}}}) or are guessed from
    common names. ``judge_connection`` points the evaluator flows' model nodes at a connection.
    """
    from ..runs import Run
    from ..runs._api import default_store

    store = store or default_store()
    base = None
    if run is not None:
        base = run if isinstance(run, Run) else Run(str(run), store)
        if base.status != "Completed":
            raise UserError(f"run '{base.name}' is {base.status}, not Completed",
                            code="InvalidBaseRun",
                            hint="Evaluate a finished run (resume it first with --resume-from).")
    data_text = str(data) if data is not None else (base.record.data if base else None)
    if data_text is None:
        raise UserError("evaluate needs data=... or run=...", code="NoData",
                        hint="Give the dataset, a finished run, or both.")
    from ._parallel import Helper

    profiles: dict[str, tuple[bool, int]] = {}  # flow -> flow_profile(flow), read once
    helper = Helper.start(store) if _helper_wanted(evaluators, base, data_text, store,
                                                   profiles) else None
    try:
        base_lines = read_lines(store, base.name, ("line_number", "status", "inputs", "outputs")) \
            if base else []
        if base and not any(line["status"] == "Completed" for line in base_lines):
            raise UserError(f"run '{base.name}' has no completed line to evaluate",
                            code="EmptyRun", hint="Check its errors with  pfkit run show-details.")
        outputs = sorted({k for line in base_lines for k in (line.get("outputs") or {})})
        columns = _columns(data_text)
        plans = _plan(evaluators, evaluator_config or {}, outputs, columns)
        statistics: dict[str, MetricSummary] = {}
        per_line: dict[int, dict[str, Any]] = {}
        runs: dict[str, str] = {}
        outcomes = _run_flows(plans, data_text, base, store, judge_connection, progress,
                              helper, profiles)
        for plan in plans:
            if plan.flow is not None:
                outcome = outcomes[plan.alias]
                runs[plan.alias] = outcome.run
                lines, found = outcome.lines, outcome.statistics
                for name, summary in found.items():
                    statistics[f"{plan.alias}.{name}"] = summary
                for line in lines:
                    row = per_line.setdefault(int(line["line_number"]), {})
                    prefix = f"outputs.{plan.alias}."
                    for key, value in (line.get("outputs") or {}).items():
                        row[prefix + key] = value
                    if line.get("status") != "Completed":
                        row[prefix + "error"] = (line.get("error") or {}).get("message")
            else:
                scores = _run_callable(plan, data_text, base_lines)
                failed = sum(1 for _, result in scores if isinstance(result, BaseException))
                keys: list[str] = []
                for number, result in scores:
                    row = per_line.setdefault(number, {})
                    if isinstance(result, BaseException):
                        row[f"outputs.{plan.alias}.error"] = f"({type(result).__name__}) {result}"
                        continue
                    for key, value in result.items():
                        row[f"outputs.{plan.alias}.{key}"] = value
                        if key not in keys:
                            keys.append(key)
                for key in keys:
                    values = [r.get(f"outputs.{plan.alias}.{key}") for n, r in sorted(per_line.items())
                              if f"outputs.{plan.alias}.error" not in r]
                    if any(as_score(v) is not None and not isinstance(v, str) for v in values):
                        statistics[f"{plan.alias}.{key}"] = summarize(f"{plan.alias}.{key}", values,
                                                                      errors=failed)
        rows = _rows(per_line, data_text, base_lines)
        result = EvaluationResult(rows, statistics, runs)
        if output_path:
            Path(output_path).write_text(json.dumps({"rows": rows, "metrics": result.metrics},
                                                    ensure_ascii=False, indent=2, default=repr),
                                         encoding="utf-8")
        return result
    finally:
        if helper is not None:
            helper.close()


def _profile(flow: Path, profiles: dict[str, tuple[bool, int]]) -> tuple[bool, int]:
    from ._parallel import flow_profile

    key = str(flow)
    if key not in profiles:
        profiles[key] = flow_profile(flow)
    return profiles[key]


def _helper_wanted(evaluators: Mapping[str, Any], base: Any, data: str, store: Any,
                   profiles: dict[str, tuple[bool, int]]) -> bool:
    """Before anything is read: will CPU-bound evaluation runs share the work with a helper
    process? (It starts now, so that its imports overlap with this process's preparations.)"""
    from ..session import Session
    from ._parallel import helper_wanted

    cpu_bound = 0
    for evaluator in evaluators.values():
        if callable(evaluator) and not isinstance(evaluator, (str, Path)):
            continue
        path = evaluator_path(evaluator)
        try:
            cpu_bound += path is not None and _profile(path, profiles)[0]
        except Exception:  # noqa: BLE001 - a broken flow is reported by the planning
            continue
    if cpu_bound < 2:
        return False
    lines = _count_lines(base) if base is not None else _count_rows(data)
    return helper_wanted(store, Session.default(), cpu_bound, lines)


def _run_flows(plans: list[_Plan], data: str, base: Any, store: Any,
               judge_connection: str | None, progress: bool, helper: Any,
               profiles: dict[str, tuple[bool, int]]) -> dict[str, Any]:
    """Every flow evaluator's evaluation run, created concurrently (``_parallel``): alias ->
    outcome. The first failed run's error (in the evaluators' order) is raised once all have
    ended."""
    from ..session import Session
    from ._parallel import Job, run_jobs

    jobs = []
    for plan in plans:
        if plan.flow is None:
            continue
        connections = _connection_overrides(plan.flow, judge_connection)
        cpu_bound, cost = _profile(plan.flow, profiles)
        jobs.append(Job(plan.alias, str(plan.flow), data, base.name if base else None,
                        dict(plan.mapping), connections, {"pfkit.evaluator": plan.alias},
                        cpu_bound=cpu_bound and not connections, cost=cost))
    if not jobs:
        return {}
    session = Session.default()
    meter = None
    if progress:
        from ..runs._progress import Progress

        lines = _count_lines(base) if base else _count_rows(data)
        meter = Progress(lines * len(jobs) or None, label=f"evaluation ({len(jobs)} runs): ")
    if helper is not None and sum(1 for job in jobs if job.cpu_bound) < 2:
        helper.close()  # the plans left fewer CPU-bound runs than foreseen
        helper = None
    try:
        outcomes = session.run_sync(run_jobs(jobs, store=store, session=session, helper=helper,
                                             progress=meter))
    finally:
        if meter is not None:
            meter.close()
        if helper is not None:
            helper.close()  # done: its memory is given back before the rows are built
    for outcome in outcomes:
        if outcome.error is not None:
            raise outcome.error
    return {job.alias: outcome for job, outcome in zip(jobs, outcomes, strict=True)}


def _count_lines(base: Any) -> int:
    """The base run's completed lines (what an evaluation run runs), from its record."""
    system = (base.record.properties or {}).get("system_metrics") or {}
    lines = system.get("__pf__.lines.completed")
    return int(lines) if isinstance(lines, (int, float)) else 0


def _count_rows(data: str) -> int:
    from ..data import open_dataset

    try:
        return int(open_dataset(data).count() or 0)
    except Exception:  # noqa: BLE001 - a size estimate only; the runs report a bad dataset
        return 0


def _lines_to_score(data: str, base_lines: list[dict[str, Any]]):
    from ..data import open_dataset

    base = {int(line["line_number"]): line for line in base_lines if line["status"] == "Completed"}
    for row in open_dataset(data):
        if base_lines and row.index not in base:
            continue
        line = base.get(row.index)
        yield row.index, row.data, (line or {}).get("outputs") or {}, (line or {}).get("inputs")


def _run_callable(plan: _Plan, data: str, base_lines: list[dict[str, Any]]
                  ) -> list[tuple[int, dict[str, Any] | BaseException]]:
    from .._aio import run_sync
    from ..data import ColumnMapping

    definitions = {name: _Input(name in plan.mapping or not has_default)
                   for name, has_default in _callable_inputs(plan.function).items()}
    mapping = ColumnMapping.build({k: v for k, v in definitions.items() if v.required},
                                  plan.mapping)
    function = plan.function
    is_async = inspect.iscoroutinefunction(function) or (
        not inspect.isfunction(function) and inspect.iscoroutinefunction(type(function).__call__))

    async def score_all() -> list[tuple[int, dict[str, Any] | BaseException]]:
        limit = asyncio.Semaphore(16)

        async def one(number: int, row: Any, outputs: Any, inputs: Any):
            try:
                kwargs = mapping.resolve(row, line_number=number, run_outputs=outputs,
                                         run_inputs=inputs)
                async with limit:
                    value = await function(**kwargs) if is_async else function(**kwargs)
            except Exception as exc:  # noqa: BLE001 - a failed line, reported in its row
                return number, exc
            return number, value if isinstance(value, dict) else {"score": value}

        return list(await asyncio.gather(*(one(*item) for item in
                                           _lines_to_score(data, base_lines))))

    return run_sync(score_all())


@dataclass(frozen=True, slots=True)
class _Input:
    required: bool

    @property
    def has_default(self) -> bool:
        return False

    default = None


def _rows(per_line: dict[int, dict[str, Any]], data: str, base_lines: list[dict[str, Any]]
          ) -> list[dict[str, Any]]:
    from ..data import open_dataset

    inputs = {row.index: row.data for row in open_dataset(data)}
    base = {int(line["line_number"]): line.get("outputs") or {} for line in base_lines}
    rows = []
    for number in sorted(per_line):
        row: dict[str, Any] = {"line_number": number}
        row.update({f"inputs.{k}": v for k, v in (inputs.get(number) or {}).items()})
        row.update({f"outputs.{k}": v for k, v in base.get(number, {}).items()})
        row.update(per_line[number])
        rows.append(row)
    return rows
