from typing import List

import numpy as np

from promptflow.core import log_metric, tool


@tool
def accuracy_aggregate(processed_results: List[int]) -> dict:
    scores = np.array(processed_results)
    total = len(processed_results)
    correct = int((scores == 1).sum())
    errors = int((scores == -1).sum())
    log_metric("accuracy", round(correct / total, 2))
    log_metric("error_rate", round(errors / total, 2))
    log_metric("num_correct", correct)
    log_metric("num_exception", errors)
    log_metric("mean_score", scores.mean())  # a numpy float64
    return {"num_total": total, "num_correct": correct, "num_exception": errors}
