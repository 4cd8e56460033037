from promptflow.core import log_metric, tool


@tool
def line_node(score: float) -> float:
    log_metric("from_line_node", score)
    return score
