from promptflow.core import log_metric, tool


@tool
def second_writer(scores: list, previous: float) -> float:
    log_metric("average", previous)
    log_metric("only_second", 2.5, variant_id="variant_x")
    return previous
