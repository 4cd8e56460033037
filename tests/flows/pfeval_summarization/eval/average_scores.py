import math
from typing import List

from promptflow.core import log_metric, tool


def _mean(values):
    valid = [v for v in values if not math.isnan(v)]
    return sum(valid) / len(valid) if valid else math.nan


@tool
def average_scores(coherence: List[float], fluency: List[float]) -> dict:
    averages = {"average_coherence": _mean(coherence), "average_fluency": _mean(fluency)}
    for name, value in averages.items():
        log_metric(name, value)
    return averages
