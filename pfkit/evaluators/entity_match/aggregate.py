from promptflow.core import tool

from pfkit.evaluate import report


@tool
def aggregate(scores: list) -> dict:
    """Logs the exact and partial match rates (exact_match, partial_match) with their
    statistics."""
    return report({"exact_match": [s["exact_match"] for s in scores],
                   "partial_match": [s["partial_match"] for s in scores]})
