import re
import string
from collections import Counter

from promptflow.core import tool


def _tokens(text: str) -> list:
    text = text.lower()
    text = "".join(ch for ch in text if ch not in set(string.punctuation))
    text = re.sub(r"\b(a|an|the)\b", " ", text)
    return text.split()


@tool
def f1_score(answer: str, ground_truth: str) -> float:
    predicted, reference = _tokens(answer), _tokens(ground_truth)
    common = Counter(predicted) & Counter(reference)
    overlap = sum(common.values())
    if overlap == 0:
        return 0.0
    precision = overlap / len(predicted)
    recall = overlap / len(reference)
    return 2 * precision * recall / (precision + recall)
