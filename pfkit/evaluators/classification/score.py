from promptflow.core import tool

from pfkit.evaluate import exact_label_match


@tool
def score(prediction: str, ground_truth: str) -> float:
    return exact_label_match(prediction, ground_truth)
