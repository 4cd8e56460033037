from typing import List

from promptflow.core import log_metric, tool


@tool
def log_metrics(match_counts: List[dict]) -> dict:
    n = len(match_counts)
    rates = {
        "exact_match_rate": sum(m["exact_match"] for m in match_counts) / n,
        "partial_match_rate": sum(m["partial_match"] for m in match_counts) / n,
    }
    for name, value in rates.items():
        log_metric(name, value)
    return rates
