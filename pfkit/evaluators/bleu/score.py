from promptflow.core import tool

from pfkit.evaluate import bleu


@tool
def score(answer: str, ground_truth: str) -> float:
    return bleu(answer, ground_truth)
