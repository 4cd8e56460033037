from promptflow.core import tool

from pfkit.evaluate import exact_match


@tool
def score(answer: str, ground_truth: str) -> float:
    return exact_match(answer, ground_truth)
