"""Runs from the store for comparison: names or ``--all-variants`` group names, each run with
the evaluation runs made over it, and the data rows its lines came from."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ..errors import UserError
from ._align import RunScores, collect
from ._result import CompareResult, compare_scores


def resolve_runs(names: Sequence[Any], store: Any) -> list[Any]:
    """``pfkit.Run`` objects for run names, Run objects or group names (a group gives its
    runs in creation order). Unknown names raise the store's run-not-found error."""
    from ..runs import Run

    runs: list[Any] = []
    for item in names:
        if isinstance(item, Run):
            runs.append(item)
            continue
        name = str(item).strip()
        if not name:
            continue
        if store.exists(name):
            runs.append(Run(name, store))
            continue
        members = store.list(max_results=None, archived="include", group=name)
        if not members:
            Run(name, store)  # raises: names the run and how to list runs
        runs += [Run(r.name, store) for r in sorted(members, key=lambda r: r.created_on)]
    seen: set[str] = set()
    unique = []
    for run in runs:
        if run.name not in seen:
            seen.add(run.name)
            unique.append(run)
    return unique


def collect_from_store(runs: Sequence[Any], store: Any) -> list[RunScores]:
    from ..runs import Run

    records = store.list(max_results=None, archived="include")
    evaluations: dict[str, list[Any]] = {}
    for record in sorted(records, key=lambda r: r.created_on):
        if record.run and record.status == "Completed":
            evaluations.setdefault(record.run, []).append(record.name)
    collected = []
    for run in runs:
        evals = [Run(name, store) for name in evaluations.get(run.name, [])]
        root = run
        hops = 0
        while root.record.run and store.exists(root.record.run) and hops < 20:
            root = Run(root.record.run, store)
            hops += 1
        collected.append(collect(run, evals, root.lines() if root is not run else None))
    return collected


def compare(runs: Sequence[Any], *, baseline: str | None = None,
            metrics: Sequence[str] | None = None, store: Any = None) -> CompareResult:
    """Compare runs by name (or group name, or ``pfkit.Run``): per-run metrics with intervals
    and paired statistics against ``baseline`` (the first run by default). Each run's metrics
    are its numeric outputs and those of the evaluation runs made over it."""
    if store is None:
        from ..runs._api import default_store

        store = default_store()
    resolved = resolve_runs(runs, store)
    if not resolved:
        raise UserError("no runs to compare", code="NothingToCompare",
                        hint="Give run names (or an --all-variants group name).")
    collected = collect_from_store(resolved, store)
    names = [r.name for r in resolved]
    if baseline is not None:
        baseline_runs = resolve_runs([baseline], store)
        baseline = baseline_runs[0].name
        if baseline not in names:
            raise UserError(f"baseline '{baseline}' is not among the compared runs",
                            code="InvalidBaseline", hint=f"Runs: {', '.join(names)}.")
    common = [m for m in collected[0].scores if all(m in c.scores for c in collected)]
    if metrics:
        unknown = [m for m in metrics if m not in common]
        if unknown:
            raise UserError(f"metric {unknown[0]!r} is not a score of every run",
                            code="UnknownMetric",
                            hint=("Scores common to all runs: " + ", ".join(common)) if common
                            else "The runs have no score in common: evaluate them first.")
    return compare_scores(collected, baseline=baseline, metrics=metrics)
