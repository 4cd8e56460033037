"""Paired comparison of two runs on the same lines: is B better than A, or is it noise?

For each line scored in both runs, d = score_B - score_A. Reported: the mean difference with a
seeded paired-bootstrap interval; a two-sided p-value (exact McNemar for pass/fail scores, else a
sign-flip permutation test: exact up to ``EXACT_LIMIT`` non-zero differences, Monte Carlo with a
fixed seed beyond); win/tie/loss counts; and, when the difference is not significant, how many
lines a test at 80% power would need to detect it. :func:`holm` corrects several p-values.
"""

from __future__ import annotations

import itertools
import math
import random
from collections.abc import Sequence
from dataclasses import dataclass
from statistics import NormalDist
from typing import Any

from ._intervals import DEFAULT_CONFIDENCE, DEFAULT_RESAMPLES, bootstrap_interval
from ._summary import as_score, is_binary

EXACT_LIMIT = 16  # non-zero differences enumerated exactly (2**16 sign patterns)
PERMUTATIONS = 10_000
ALPHA = 0.05
POWER = 0.8
_TOLERANCE = 1e-12


@dataclass(frozen=True, slots=True)
class PairedComparison:
    metric: str
    n: int  # lines scored in both runs
    unpaired: int  # lines scored in only one of them (or neither)
    mean_a: float | None
    mean_b: float | None
    difference: float | None  # mean of B - A
    ci_low: float | None
    ci_high: float | None
    p_value: float | None
    test: str
    wins: int  # lines where B scored higher
    ties: int
    losses: int
    lines_needed: int | None = None  # for 80% power at alpha 0.05, when not significant
    p_adjusted: float | None = None  # after Holm correction across comparisons

    @property
    def significant(self) -> bool:
        p = self.p_adjusted if self.p_adjusted is not None else self.p_value
        return p is not None and p < ALPHA

    def to_dict(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in self.__slots__} | {
            "significant": self.significant}


def pair_scores(a: Sequence[Any], b: Sequence[Any]) -> tuple[list[float], list[float], int]:
    """The scores of lines present in both (same index), and how many lines were not paired."""
    xs: list[float] = []
    ys: list[float] = []
    unpaired = 0
    for left, right in itertools.zip_longest(a, b):
        x, y = as_score(left), as_score(right)
        if x is None or y is None:
            unpaired += 1
        else:
            xs.append(x)
            ys.append(y)
    return xs, ys, unpaired


def sign_flip_p_value(differences: Sequence[float], *, permutations: int = PERMUTATIONS,
                      seed: int = 0) -> tuple[float, str]:
    """Two-sided p-value of the mean difference under random sign flips (the paired
    permutation test). Zeros carry no sign and are left out of the enumeration."""
    nonzero = [d for d in differences if d != 0]
    n = len(differences)
    if not nonzero:
        return 1.0, "sign-flip (exact)"
    observed = abs(math.fsum(differences)) / n
    threshold = observed - _TOLERANCE * max(1.0, observed)
    if len(nonzero) <= EXACT_LIMIT:
        hits = 0
        total = 0
        for signs in itertools.product((1, -1), repeat=len(nonzero)):
            total += 1
            if abs(math.fsum(s * d for s, d in zip(signs, nonzero, strict=True))) / n >= threshold:
                hits += 1
        return hits / total, "sign-flip (exact)"
    hits = _monte_carlo_hits(nonzero, n, threshold, permutations, seed)
    return (hits + 1) / (permutations + 1), f"sign-flip (Monte Carlo, {permutations})"


def _monte_carlo_hits(nonzero: Sequence[float], n: int, threshold: float, permutations: int,
                      seed: int) -> int:
    try:
        import numpy as np
    except ImportError:  # pragma: no cover
        rnd = random.Random(seed)
        return sum(
            abs(math.fsum(d if rnd.random() < 0.5 else -d for d in nonzero)) / n >= threshold
            for _ in range(permutations))
    rng = np.random.default_rng(seed)
    data = np.asarray(nonzero, dtype=float)
    hits = 0
    rows = max(1, 2_000_000 // len(data))
    for start in range(0, permutations, rows):
        count = min(rows, permutations - start)
        signs = rng.integers(0, 2, size=(count, len(data))) * 2 - 1
        hits += int((np.abs((signs * data).sum(axis=1)) / n >= threshold).sum())
    return hits


def mcnemar_exact_p_value(a_only: int, b_only: int) -> float:
    """Exact McNemar: a two-sided binomial test of the discordant pairs at p = 1/2."""
    discordant = a_only + b_only
    if discordant == 0:
        return 1.0
    k = min(a_only, b_only)
    tail = math.fsum(math.comb(discordant, i) for i in range(k + 1)) / 2 ** discordant
    return min(1.0, 2 * tail)


def lines_needed(differences: Sequence[float], *, alpha: float = ALPHA,
                 power: float = POWER) -> int | None:
    """Lines a two-sided paired test would need to detect the observed mean difference with the
    observed spread (normal approximation). None when there is no difference to detect."""
    n = len(differences)
    if n < 2:
        return None
    mean = math.fsum(differences) / n
    if mean == 0:
        return None
    variance = math.fsum((d - mean) ** 2 for d in differences) / (n - 1)
    if variance == 0:
        return n
    z = NormalDist().inv_cdf(1 - alpha / 2) + NormalDist().inv_cdf(power)
    return max(n, math.ceil((z * math.sqrt(variance) / abs(mean)) ** 2))


def compare_paired(metric: str, a: Sequence[Any], b: Sequence[Any], *,
                   binary: bool | None = None, confidence: float = DEFAULT_CONFIDENCE,
                   seed: int = 0, resamples: int = DEFAULT_RESAMPLES,
                   permutations: int = PERMUTATIONS) -> PairedComparison:
    """Compare B against A on lines aligned by position (None/NaN scores are unpaired)."""
    xs, ys, unpaired = pair_scores(a, b)
    n = len(xs)
    if n == 0:
        return PairedComparison(metric, 0, unpaired, None, None, None, None, None, None,
                                "none (no paired lines)", 0, 0, 0)
    differences = [y - x for x, y in zip(xs, ys, strict=True)]
    wins = sum(d > 0 for d in differences)
    losses = sum(d < 0 for d in differences)
    ties = n - wins - losses
    mean_a, mean_b = math.fsum(xs) / n, math.fsum(ys) / n
    difference = math.fsum(differences) / n
    low, high = bootstrap_interval(differences, confidence, resamples, seed)
    if binary is None:
        binary = is_binary(xs) and is_binary(ys)
    if binary:
        p_value, test = mcnemar_exact_p_value(losses, wins), "McNemar (exact)"
    else:
        p_value, test = sign_flip_p_value(differences, permutations=permutations, seed=seed)
    needed = lines_needed(differences) if p_value >= ALPHA else None
    return PairedComparison(metric, n, unpaired, mean_a, mean_b, difference, low, high, p_value,
                            test, wins, ties, losses, needed)


def holm(p_values: Sequence[float | None]) -> list[float | None]:
    """Holm-Bonferroni adjusted p-values (same order as given; None stays None)."""
    indexed = sorted((p, i) for i, p in enumerate(p_values) if p is not None)
    m = len(indexed)
    adjusted: list[float | None] = [None] * len(p_values)
    running = 0.0
    for rank, (p, i) in enumerate(indexed):
        running = max(running, min(1.0, (m - rank) * p))
        adjusted[i] = running
    return adjusted
