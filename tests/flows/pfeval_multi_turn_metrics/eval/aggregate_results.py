from typing import List

import numpy as np

from promptflow.core import log_metric, tool


@tool
def aggregate_results(results: List[dict], metrics: List[str]) -> dict:
    selected = [m.strip() for m in metrics[0].split(",")]
    averages = {}
    for name in selected:
        values = [r[name] for r in results if r is not None]
        averages[name] = round(float(np.nanmean(values)), 2) if values else float("nan")
        log_metric(name, averages[name])
    return averages
