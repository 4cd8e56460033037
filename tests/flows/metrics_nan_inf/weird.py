import math

from promptflow.core import log_metric, tool


@tool
def weird(xs: list) -> list:
    log_metric("nan", float("nan"))
    log_metric("inf", math.inf)
    log_metric("neg_inf", -math.inf)
    log_metric("int_metric", 3)
    log_metric("mean", sum(xs) / len(xs))
    return xs
