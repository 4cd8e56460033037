"""From runs to aligned per-line scores: which outputs are metrics, which lines pair up.

A run's metrics are its numeric line outputs plus those of the evaluation runs made over it
(``pfkit run create --run RUN``). Lines are aligned by line number and checked by a hash of the
inputs of the root run (the data row): a line whose inputs differ between runs is a mismatch,
reported and left out of the paired statistics.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from ..stats import as_score


class RunView(Protocol):
    """What comparison reads of a run (``pfkit.Run`` satisfies it)."""

    name: str

    @property
    def info(self) -> dict[str, Any]: ...
    def lines(self) -> list[dict[str, Any]]: ...
    def metrics(self) -> dict[str, Any]: ...


@dataclass(slots=True)
class RunScores:
    """One run's per-line scores by metric, with what is needed to show its lines."""

    name: str
    info: dict[str, Any]
    scores: dict[str, dict[int, float | None]] = field(default_factory=dict)
    input_hash: dict[int, str] = field(default_factory=dict)
    inputs: dict[int, dict[str, Any]] = field(default_factory=dict)
    outputs: dict[int, dict[str, Any]] = field(default_factory=dict)
    failed: set[int] = field(default_factory=set)
    run_metrics: dict[str, Any] = field(default_factory=dict)
    sources: dict[str, str] = field(default_factory=dict)  # metric -> run that produced it


def input_hash(inputs: Mapping[str, Any]) -> str:
    text = json.dumps(inputs, sort_keys=True, ensure_ascii=False, default=repr)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


def metric_columns(lines: Iterable[Mapping[str, Any]]) -> list[str]:
    """Output names whose values are all numbers or booleans (or missing), with at least one:
    text that looks like a number (an answer such as "42") is not a score."""
    seen: dict[str, bool] = {}
    for record in lines:
        if record.get("status") != "Completed":
            continue
        for key, value in (record.get("outputs") or {}).items():
            if key == "line_number":
                continue
            if value is None:
                seen.setdefault(key, False)
                continue
            if isinstance(value, (int, float)) and seen.get(key, False) is not None:
                seen[key] = True
            else:  # text (even "42": an answer, not a score), lists, objects
                seen[key] = None  # type: ignore[assignment]  # not a metric, ever
    return sorted(k for k, v in seen.items() if v)


def collect(run: RunView, evaluations: Sequence[RunView] = (),
            root_lines: Sequence[Mapping[str, Any]] | None = None) -> RunScores:
    """The scores of ``run`` and of its evaluation runs; inputs hashed from ``root_lines``
    (the data rows of the run at the start of the ``--run`` chain) when given."""
    lines = run.lines()
    result = RunScores(run.name, run.info, run_metrics=run.metrics())
    for record in lines:
        number = int(record["line_number"])
        result.inputs[number] = record.get("inputs") or {}
        result.outputs[number] = record.get("outputs") or {}
        if record.get("status") != "Completed":
            result.failed.add(number)
    for record in root_lines if root_lines is not None else lines:
        result.input_hash[int(record["line_number"])] = input_hash(record.get("inputs") or {})
    _add_scores(result, run.name, lines)
    for evaluation in evaluations:
        _add_scores(result, evaluation.name, evaluation.lines(), prefix=_flow_name(evaluation))
        result.run_metrics.update({k: v for k, v in evaluation.metrics().items()
                                   if k not in result.run_metrics})
    return result


def _flow_name(run: RunView) -> str:
    return str(run.info.get("flow_name") or run.name)


def _add_scores(result: RunScores, source: str, lines: Sequence[Mapping[str, Any]],
                prefix: str | None = None) -> None:
    for column in metric_columns(lines):
        name = column if column not in result.scores else f"{prefix or source}.{column}"
        values: dict[int, float | None] = {}
        for record in lines:
            number = int(record["line_number"])
            value = (record.get("outputs") or {}).get(column)
            values[number] = as_score(value) if record.get("status") == "Completed" else None
        result.scores[name] = values
        result.sources[name] = source


@dataclass(frozen=True, slots=True)
class Alignment:
    line_numbers: tuple[int, ...]  # lines present in every run with the same inputs
    mismatched: tuple[int, ...]  # same number, different inputs
    missing: dict[str, tuple[int, ...]]  # run -> lines the others have and it lacks


def align(runs: Sequence[RunScores]) -> Alignment:
    every = set().union(*(set(r.input_hash) | set(r.outputs) for r in runs)) if runs else set()
    common: list[int] = []
    mismatched: list[int] = []
    missing: dict[str, list[int]] = {r.name: [] for r in runs}
    for number in sorted(every):
        hashes = {r.input_hash.get(number) for r in runs if number in r.input_hash}
        absent = [r.name for r in runs if number not in r.outputs]
        for name in absent:
            missing[name].append(number)
        if absent:
            continue
        if len(hashes) > 1:
            mismatched.append(number)
            continue
        common.append(number)
    return Alignment(tuple(common), tuple(mismatched),
                     {k: tuple(v) for k, v in missing.items() if v})
