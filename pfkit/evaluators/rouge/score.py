from promptflow.core import tool

from pfkit.evaluate import rouge


@tool
def score(answer: str, ground_truth: str) -> dict:
    return rouge(answer, ground_truth)
