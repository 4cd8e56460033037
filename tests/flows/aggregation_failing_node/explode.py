from promptflow.core import log_metric, tool


@tool
def explode(values: list, after: int) -> int:
    log_metric("before_explode", 1)
    raise RuntimeError(f"aggregation exploded on {values}")
