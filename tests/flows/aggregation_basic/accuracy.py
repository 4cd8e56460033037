from typing import List

from promptflow.core import log_metric, tool


@tool
def accuracy(grades: List[bool], weights: list, label: str, digits: int) -> dict:
    total = sum(w for g, w in zip(grades, weights) if g)
    value = round(total / sum(weights), digits)
    log_metric(label, value)
    log_metric("count", len(grades))
    return {
        "grades": grades,
        "weights": weights,
        "label": label,
        "digits": digits,
        "digits_type": type(digits).__name__,
        "value": value,
    }
