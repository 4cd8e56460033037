from promptflow.core import log_metric, tool


@tool
def count(values: list) -> int:
    log_metric("count", len(values))
    return len(values)
