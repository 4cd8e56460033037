"""Comparing runs: per-run means with intervals and, against a baseline, paired differences
with intervals, p-values (Holm-corrected across every comparison), win/tie/loss, and the lines
needed to detect a non-significant difference. Plus the lines whose scores changed most."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from ..stats import MetricSummary, PairedComparison, compare_paired, holm, summarize
from ._align import Alignment, RunScores, align

TOP_CHANGED = 20


@dataclass(frozen=True, slots=True)
class ChangedLine:
    metric: str
    run: str
    line_number: int
    baseline_score: float
    score: float
    inputs: dict[str, Any]
    baseline_outputs: dict[str, Any]
    outputs: dict[str, Any]

    @property
    def change(self) -> float:
        return self.score - self.baseline_score

    def to_dict(self) -> dict[str, Any]:
        return {"metric": self.metric, "run": self.run, "line_number": self.line_number,
                "baseline_score": self.baseline_score, "score": self.score,
                "change": self.change, "inputs": self.inputs,
                "baseline_outputs": self.baseline_outputs, "outputs": self.outputs}


@dataclass(slots=True)
class CompareResult:
    runs: list[str]
    baseline: str
    metrics: list[str]
    summaries: dict[str, dict[str, MetricSummary]]  # metric -> run -> summary (aligned lines)
    comparisons: dict[str, dict[str, PairedComparison]]  # metric -> run -> vs baseline
    alignment: Alignment
    changed: list[ChangedLine] = field(default_factory=list)
    scores: dict[str, dict[str, list[float | None]]] = field(default_factory=dict)
    info: dict[str, dict[str, Any]] = field(default_factory=dict)
    collected: list[RunScores] = field(default_factory=list, repr=False)  # every line, shown

    def to_dict(self) -> dict[str, Any]:
        return {
            "runs": self.runs, "baseline": self.baseline, "metrics": self.metrics,
            "lines": {"compared": len(self.alignment.line_numbers),
                      "mismatched_inputs": list(self.alignment.mismatched),
                      "missing": {k: list(v) for k, v in self.alignment.missing.items()}},
            "summaries": {m: {r: s.to_dict() for r, s in by_run.items()}
                          for m, by_run in self.summaries.items()},
            "comparisons": {m: {r: c.to_dict() for r, c in by_run.items()}
                            for m, by_run in self.comparisons.items()},
            "changed_lines": [c.to_dict() for c in self.changed],
        }

    # pandas tables, for notebooks (pandas is imported only here)
    def summary_table(self):
        import pandas as pd

        rows = [{"metric": m, "run": r, **s.to_dict()} for m, by_run in self.summaries.items()
                for r, s in by_run.items()]
        return pd.DataFrame(rows)

    def comparison_table(self):
        import pandas as pd

        rows = [{"metric": m, "run": r, "baseline": self.baseline, **c.to_dict()}
                for m, by_run in self.comparisons.items() for r, c in by_run.items()]
        return pd.DataFrame(rows)

    def _repr_html_(self) -> str:
        from ._html import render_fragment

        return render_fragment(self)

    def __str__(self) -> str:
        from ._text import render_text

        return render_text(self)


def compare_scores(runs: Sequence[RunScores], *, baseline: str | None = None,
                   metrics: Sequence[str] | None = None, seed: int = 0) -> CompareResult:
    """Compare collected runs (see :func:`pfkit.compare._align.collect`)."""
    if not runs:
        raise ValueError("nothing to compare")
    names = [r.name for r in runs]
    base_name = baseline or names[0]
    if base_name not in names:
        raise ValueError(f"baseline {base_name!r} is not among the runs")
    by_name = {r.name: r for r in runs}
    available = [m for m in runs[0].scores if all(m in r.scores for r in runs)]
    if metrics:
        chosen = list(metrics)
    else:
        chosen = available
    alignment = align(runs)
    numbers = alignment.line_numbers
    scores = {m: {r.name: [r.scores.get(m, {}).get(n) for n in numbers] for r in runs}
              for m in chosen}
    summaries = {m: {r.name: summarize(m, scores[m][r.name], errors=len(r.failed & set(numbers)),
                                       seed=seed) for r in runs} for m in chosen}
    comparisons: dict[str, dict[str, PairedComparison]] = {}
    flat: list[tuple[str, str]] = []
    for m in chosen:
        comparisons[m] = {}
        for r in runs:
            if r.name == base_name:
                continue
            comparisons[m][r.name] = compare_paired(m, scores[m][base_name], scores[m][r.name],
                                                    seed=seed)
            flat.append((m, r.name))
    adjusted = holm([comparisons[m][r].p_value for m, r in flat])
    for (m, r), p in zip(flat, adjusted, strict=True):
        c = comparisons[m][r]
        comparisons[m][r] = _with_adjusted(c, p)
    changed = _changed_lines(by_name, base_name, chosen, numbers)
    return CompareResult(names, base_name, chosen, summaries, comparisons, alignment, changed,
                         scores, {r.name: r.info for r in runs}, list(runs))


def _with_adjusted(c: PairedComparison, p: float | None) -> PairedComparison:
    from dataclasses import replace

    return replace(c, p_adjusted=p)


def _changed_lines(runs: dict[str, RunScores], base: str, metrics: Sequence[str],
                   numbers: Sequence[int]) -> list[ChangedLine]:
    base_run = runs[base]
    found: list[ChangedLine] = []
    for m in metrics:
        for name, run in runs.items():
            if name == base:
                continue
            for n in numbers:
                a, b = base_run.scores[m].get(n), run.scores[m].get(n)
                if a is None or b is None or a == b or not (math.isfinite(a) and math.isfinite(b)):
                    continue
                found.append(ChangedLine(m, name, n, a, b, base_run.inputs.get(n, {}),
                                         base_run.outputs.get(n, {}), run.outputs.get(n, {})))
    found.sort(key=lambda c: (-abs(c.change), c.metric, c.run, c.line_number))
    return found[:TOP_CHANGED]
