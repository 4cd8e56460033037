import math
from typing import List

from promptflow.core import log_metric, tool


@tool
def aggregate_variants_results(results: List[dict], metrics: List[str]) -> dict:
    chosen = [m.strip() for m in metrics[0].split(",")]
    logged = {}
    for name in chosen:
        values = [r[name] for r in results if r is not None and not math.isnan(r[name])]
        mean = sum(values) / len(values) if values else math.nan
        if "pass_rate" in name:
            logged[f"{name}(%)"] = round(mean * 100, 2)
        else:
            logged[name] = round(mean, 2)
    for key, value in logged.items():
        log_metric(key, value)
    return logged
