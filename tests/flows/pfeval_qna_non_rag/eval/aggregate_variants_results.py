from typing import List

import numpy as np

from promptflow.core import log_metric, tool


@tool
def aggregate_variants_results(results: List[dict], metrics: List[str]) -> dict:
    selected = [name.strip() for name in metrics[0].split(",") if name.strip()]
    summary = {}
    names = next(r for r in results if r is not None)
    for name in names:
        # a line whose every metric was bypassed has no concat_scores output (None)
        values = np.array([r[name] if r is not None and isinstance(r[name], float) else np.nan
                           for r in results])
        summary[name] = np.round(np.nanmean(values), 2)
        if name in selected:
            log_metric(name, summary[name])
    return {name: float(value) for name, value in summary.items()}
