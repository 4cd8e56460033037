from typing import List

from promptflow.core import log_metric, tool


@tool
def aggregate(scores: List[float]) -> dict:
    mean = sum(scores) / len(scores)
    log_metric("groundedness", mean)
    return {"groundedness": mean, "count": len(scores)}
