"""Confidence intervals for one metric: Wilson for proportions, a seeded percentile bootstrap for
means of anything else. Pure Python; numpy is used when installed, for speed on long runs."""

from __future__ import annotations

import math
import random
from collections.abc import Sequence
from statistics import NormalDist

DEFAULT_CONFIDENCE = 0.95
DEFAULT_RESAMPLES = 2000
DEFAULT_SEED = 0
_CHUNK_CELLS = 2_000_000  # numpy bootstrap: at most this many drawn indexes at once (16 MB)


def z_value(confidence: float) -> float:
    return NormalDist().inv_cdf(0.5 + confidence / 2)


def wilson_interval(successes: int, n: int, confidence: float = DEFAULT_CONFIDENCE
                    ) -> tuple[float, float]:
    """The Wilson score interval of a proportion (good at 0, 1 and small n)."""
    if n <= 0:
        raise ValueError("a proportion needs at least one observation")
    z = z_value(confidence)
    p = successes / n
    denominator = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denominator
    half = z / denominator * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return max(0.0, centre - half), min(1.0, centre + half)


def bootstrap_means(values: Sequence[float], resamples: int = DEFAULT_RESAMPLES,
                    seed: int = DEFAULT_SEED) -> list[float]:
    """The means of ``resamples`` resamples (with replacement) of ``values``, seeded."""
    n = len(values)
    if n == 0:
        return []
    try:
        import numpy as np
    except ImportError:  # pragma: no cover - numpy is in every extra that evaluates
        rnd = random.Random(seed)
        return [math.fsum(rnd.choices(values, k=n)) / n for _ in range(resamples)]
    rng = np.random.default_rng(seed)
    data = np.asarray(values, dtype=float)
    rows = max(1, _CHUNK_CELLS // n)
    means = []
    for start in range(0, resamples, rows):
        count = min(rows, resamples - start)
        means.append(data[rng.integers(0, n, size=(count, n))].mean(axis=1))
    return np.concatenate(means).tolist()


def percentile(sorted_values: Sequence[float], q: float) -> float:
    """Linear interpolation between closest ranks (numpy's default), q in [0, 1]."""
    if not sorted_values:
        raise ValueError("no values")
    position = q * (len(sorted_values) - 1)
    low = math.floor(position)
    high = min(low + 1, len(sorted_values) - 1)
    fraction = position - low
    return sorted_values[low] + (sorted_values[high] - sorted_values[low]) * fraction


def bootstrap_interval(values: Sequence[float], confidence: float = DEFAULT_CONFIDENCE,
                       resamples: int = DEFAULT_RESAMPLES, seed: int = DEFAULT_SEED
                       ) -> tuple[float, float]:
    """Percentile bootstrap interval of the mean. One value (or all equal) gives a zero-width
    interval at that value."""
    if not values:
        raise ValueError("an interval needs at least one value")
    if min(values) == max(values):
        return float(values[0]), float(values[0])
    means = sorted(bootstrap_means(values, resamples, seed))
    alpha = (1 - confidence) / 2
    return percentile(means, alpha), percentile(means, 1 - alpha)
