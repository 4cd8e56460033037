"""pfkit.stats against hand-computed answers and scipy."""

from __future__ import annotations

import math

import pytest

from pfkit.stats import (
    as_score,
    bootstrap_interval,
    compare_paired,
    holm,
    lines_needed,
    mcnemar_exact_p_value,
    sign_flip_p_value,
    summarize,
    wilson_interval,
)

scipy_stats = pytest.importorskip("scipy.stats")
np = pytest.importorskip("numpy")


def test_wilson_matches_scipy_and_hand_values():
    for k, n in [(0, 10), (1, 10), (5, 10), (10, 10), (37, 60), (1, 1)]:
        expected = scipy_stats.binomtest(k, n).proportion_ci(0.95, method="wilson")
        low, high = wilson_interval(k, n)
        assert low == pytest.approx(expected.low, abs=1e-9)
        assert high == pytest.approx(expected.high, abs=1e-9)
    # 4/12 by hand: p=1/3, z=1.96 -> (0.1381, 0.6094)
    low, high = wilson_interval(4, 12)
    assert (round(low, 4), round(high, 4)) == (0.1381, 0.6094)
    with pytest.raises(ValueError):
        wilson_interval(0, 0)


def test_bootstrap_interval_is_seeded_and_brackets_the_mean():
    values = [0.2, 0.4, 0.9, 0.5, 0.7, 0.1, 0.3, 0.8]
    first = bootstrap_interval(values, seed=3)
    assert first == bootstrap_interval(values, seed=3)
    assert first != bootstrap_interval(values, seed=4)
    low, high = first
    assert low < sum(values) / len(values) < high
    assert 0.1 <= low and high <= 0.9
    assert bootstrap_interval([0.5, 0.5, 0.5]) == (0.5, 0.5)
    assert bootstrap_interval([2.0]) == (2.0, 2.0)


def test_summary_counts_missing_and_never_averages_nan():
    s = summarize("f1", [1.0, 0.5, None, float("nan"), "x", "0.25", True])
    assert s.n == 4 and s.missing == 3
    assert s.value == pytest.approx((1.0 + 0.5 + 0.25 + 1.0) / 4)
    assert s.method == "bootstrap" and s.ci_low <= s.value <= s.ci_high
    empty = summarize("f1", [None, float("nan")], errors=2)
    assert empty.value is None and empty.n == 0 and empty.missing == 2 and empty.errors == 2
    binary = summarize("accuracy", [1, 0, 1, 1])
    assert binary.method == "wilson" and binary.value == 0.75
    assert (binary.ci_low, binary.ci_high) == pytest.approx(wilson_interval(3, 4))


def test_as_score():
    assert as_score("3") == 3.0 and as_score(False) == 0.0
    assert as_score(float("inf")) is None and as_score([1]) is None and as_score("") is None


def test_sign_flip_exact_matches_scipy_permutation_test():
    rng = np.random.default_rng(7)
    for size in (5, 9, 12):
        a = rng.normal(size=size)
        b = a + rng.normal(0.4, 1.0, size=size)
        d = (b - a).tolist()
        expected = scipy_stats.permutation_test(
            (d,), lambda x: np.mean(x), permutation_type="samples", n_resamples=np.inf,
            alternative="two-sided").pvalue
        p, test = sign_flip_p_value(d)
        assert test == "sign-flip (exact)"
        assert p == pytest.approx(expected, abs=1e-9)


def test_sign_flip_by_hand_and_edge_cases():
    # d = [1, 1, 1]: of 8 sign patterns, |mean| >= 1 only for +++ and --- -> 2/8
    assert sign_flip_p_value([1.0, 1.0, 1.0]) == (0.25, "sign-flip (exact)")
    assert sign_flip_p_value([0.0, 0.0])[0] == 1.0  # all ties
    # zeros dilute the mean but do not change the p-value of the non-zero part
    assert sign_flip_p_value([1.0, 1.0, 1.0, 0.0])[0] == 0.25
    many = [1.0] * 30 + [-1.0] * 2
    p, test = sign_flip_p_value(many, permutations=2000, seed=1)
    assert test.startswith("sign-flip (Monte Carlo")
    assert 0 < p < 0.01
    assert p == sign_flip_p_value(many, permutations=2000, seed=1)[0]


def test_mcnemar_exact_matches_binomial_test():
    for b, c in [(0, 0), (3, 0), (2, 8), (10, 12), (0, 9), (25, 10)]:
        p = mcnemar_exact_p_value(b, c)
        if b + c == 0:
            assert p == 1.0
            continue
        assert p == pytest.approx(scipy_stats.binomtest(min(b, c), b + c, 0.5).pvalue, abs=1e-12)


def test_holm_by_hand():
    # sorted: 0.01*3=0.03, 0.02*2=0.04, 0.04*1=0.04 (monotone) -> back in the given order
    assert holm([0.04, 0.01, 0.02]) == pytest.approx([0.04, 0.03, 0.04])
    assert holm([0.5, None, 0.6]) == [pytest.approx(1.0), None, pytest.approx(1.0)]
    assert holm([]) == []


def test_lines_needed_normal_approximation():
    d = [0.1, -0.05, 0.2, 0.0, 0.05, 0.1, -0.1, 0.15]
    n = len(d)
    mean = sum(d) / n
    sd = math.sqrt(sum((x - mean) ** 2 for x in d) / (n - 1))
    expected = math.ceil(((1.959963984540054 + 0.8416212335729143) * sd / mean) ** 2)
    assert lines_needed(d) == expected
    assert lines_needed([0.0, 0.0, 0.0]) is None
    assert lines_needed([1.0]) is None


def test_compare_paired_pass_fail_uses_mcnemar_and_counts():
    a = [0, 0, 1, 1, 0, 0, 0, 1, 0, 0, 0, 0]  # 3/12
    b = [1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1]  # 12/12
    result = compare_paired("accuracy", a, b)
    assert result.test == "McNemar (exact)"
    assert (result.wins, result.ties, result.losses) == (9, 3, 0)
    assert result.difference == pytest.approx(0.75)
    assert result.p_value == pytest.approx(2 / 2 ** 9)
    assert result.significant and result.lines_needed is None
    assert result.ci_low <= 0.75 <= result.ci_high


def test_compare_paired_unpaired_lines_and_not_significant():
    a = [0.5, 0.6, None, 0.7, 0.4]
    b = [0.55, 0.5, 0.9, float("nan"), 0.45]
    result = compare_paired("f1", a, b)
    assert result.n == 3 and result.unpaired == 2
    assert not result.significant and result.lines_needed is not None
    assert result.to_dict()["significant"] is False
    nothing = compare_paired("f1", [None], [0.3])
    assert nothing.n == 0 and nothing.p_value is None
    same = compare_paired("f1", [0.3, 0.4], [0.3, 0.4])
    assert same.p_value == 1.0 and same.lines_needed is None and same.ties == 2
