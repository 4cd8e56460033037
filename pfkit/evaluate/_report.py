"""What an evaluator's aggregation node does: log each metric's mean as a flat promptflow metric
and return the full statistics (n, missing, interval) as the node's output."""

from __future__ import annotations

import threading
from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import Any

from ..nodes._tool import log_metric
from ..stats import MetricSummary, summarize

_RECENT: dict[tuple[str, tuple[Any, ...]], MetricSummary] = {}
_RECENT_SIZE = 64
_LOCK = threading.Lock()


def summary_of(name: str, values: Sequence[Any], *, errors: int = 0) -> MetricSummary:
    """``summarize(name, values, errors=errors)``, remembered for the last few metrics of this
    process: an evaluation run's aggregation node and ``evaluate``'s statistics summarize the
    same scores (in line order), and a bootstrap over 10,000 lines is not free."""
    try:
        key = (name, tuple(values))
        hash(key)
    except TypeError:  # unhashable values (dicts): nothing to remember them by
        return summarize(name, values, errors=errors)
    with _LOCK:
        known = _RECENT.get(key)
    if known is None:
        known = summarize(name, key[1])
        with _LOCK:
            if len(_RECENT) >= _RECENT_SIZE:
                _RECENT.pop(next(iter(_RECENT)))
            _RECENT[key] = known
    return known if known.errors == errors else replace(known, errors=errors)


def report(scores: Mapping[str, Sequence[Any]]) -> dict[str, dict[str, Any]]:
    """``{"f1": [0.5, None, 1.0]}`` -> logs ``f1`` (the mean over scored lines) and returns
    ``{"f1": {"value", "n", "missing", "ci_low", "ci_high", ...}}``. A metric with no scored
    line is not logged (no metric is computed over nothing); its summary says n = 0."""
    summaries: dict[str, dict[str, Any]] = {}
    for name, values in scores.items():
        summary = summary_of(name, values)
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
