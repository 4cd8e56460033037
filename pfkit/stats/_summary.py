"""One metric over the lines of a run: its value, how many lines it stands on, what is missing,
and a 95% interval. Missing scores (None, NaN, unparseable) are counted, never averaged in."""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from ._intervals import DEFAULT_CONFIDENCE, bootstrap_interval, wilson_interval


def as_score(value: Any) -> float | None:
    """A numeric score, or None when the value is missing or not a number (bools count as 0/1;
    numeric strings are parsed)."""
    if value is None:
        return None
    if isinstance(value, bool):
        return float(value)
    if isinstance(value, (int, float)):
        number = float(value)
    elif isinstance(value, str):
        try:
            number = float(value.strip())
        except ValueError:
            return None
    else:
        return None
    return number if math.isfinite(number) else None


def is_binary(values: Iterable[float]) -> bool:
    return all(v in (0.0, 1.0) for v in values)


@dataclass(frozen=True, slots=True)
class MetricSummary:
    name: str
    value: float | None  # the mean over scored lines; None when no line has a score
    n: int  # lines with a score
    missing: int  # lines without a score (None, NaN, not a number)
    errors: int  # lines that failed before producing a score
    ci_low: float | None
    ci_high: float | None
    method: str  # wilson, bootstrap, or none
    confidence: float = DEFAULT_CONFIDENCE

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "value": self.value, "n": self.n, "missing": self.missing,
                "errors": self.errors, "ci_low": self.ci_low, "ci_high": self.ci_high,
                "method": self.method, "confidence": self.confidence}


def summarize(name: str, values: Iterable[Any], *, errors: int = 0,
              confidence: float = DEFAULT_CONFIDENCE, seed: int = 0) -> MetricSummary:
    """Mean, n, missing and interval of per-line scores. 0/1 scores get the Wilson interval,
    others a seeded percentile bootstrap of the mean."""
    scores: list[float] = []
    missing = 0
    for value in values:
        score = as_score(value)
        if score is None:
            missing += 1
        else:
            scores.append(score)
    if not scores:
        return MetricSummary(name, None, 0, missing, errors, None, None, "none", confidence)
    mean = math.fsum(scores) / len(scores)
    if is_binary(scores):
        low, high = wilson_interval(int(sum(scores)), len(scores), confidence)
        method = "wilson"
    else:
        low, high = bootstrap_interval(scores, confidence, seed=seed)
        method = "bootstrap"
    return MetricSummary(name, mean, len(scores), missing, errors, low, high, method, confidence)
