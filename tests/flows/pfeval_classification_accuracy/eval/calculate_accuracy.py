from typing import List

from promptflow.core import log_metric, tool


@tool
def calculate_accuracy(grades: List[str]) -> List[str]:
    correct = sum(1 for g in grades if g == "Correct")
    log_metric("accuracy", round(correct / len(grades), 2))
    return grades
