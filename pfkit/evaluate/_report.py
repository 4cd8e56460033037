"""What an evaluator's aggregation node does: log each metric's mean as a flat promptflow metric
and return the full statistics (n, missing, interval) as the node's output."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from ..nodes._tool import log_metric
from ..stats import summarize


def report(scores: Mapping[str, Sequence[Any]]) -> dict[str, dict[str, Any]]:
    """``{"f1": [0.5, None, 1.0]}`` -> logs ``f1`` (the mean over scored lines) and returns
    ``{"f1": {"value", "n", "missing", "ci_low", "ci_high", ...}}``. A metric with no scored
    line is not logged (no metric is computed over nothing); its summary says n = 0."""
    summaries: dict[str, dict[str, Any]] = {}
    for name, values in scores.items():
        summary = summarize(name, values)
        if summary.value is not None:
            log_metric(name, summary.value)
        summaries[name] = summary.to_dict()
    return summaries


def percentile_of(values: Sequence[Any], q: float) -> float | None:
    """The q-th percentile (0-100, linear interpolation) of the numeric values; None if none."""
    from ..stats import as_score
    from ..stats._intervals import percentile

    numbers = sorted(v for v in (as_score(x) for x in values) if v is not None)
    return percentile(numbers, q / 100) if numbers else None
