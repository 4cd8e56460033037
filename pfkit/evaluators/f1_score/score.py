from promptflow.core import tool

from pfkit.evaluate import f1_score


@tool
def score(answer: str, ground_truth: str) -> float:
    return f1_score(answer, ground_truth)
