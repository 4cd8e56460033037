"""Statistics for evaluation and comparison: per-metric summaries with intervals, paired tests.

``summarize(name, scores)`` gives a metric's mean, n, missing count and 95% interval (Wilson for
pass/fail scores, seeded bootstrap otherwise). ``compare_paired(metric, a, b)`` compares two runs
line by line (paired bootstrap interval of the difference, sign-flip or exact McNemar p-value,
win/tie/loss, lines needed at 80% power); ``holm`` corrects several p-values.
"""

from ._intervals import bootstrap_interval, wilson_interval
from ._paired import (
    PairedComparison,
    compare_paired,
    holm,
    lines_needed,
    mcnemar_exact_p_value,
    sign_flip_p_value,
)
from ._summary import MetricSummary, as_score, summarize

__all__ = ["MetricSummary", "PairedComparison", "as_score", "bootstrap_interval",
           "compare_paired", "holm", "lines_needed", "mcnemar_exact_p_value",
           "sign_flip_p_value", "summarize", "wilson_interval"]
