from promptflow.core import tool

from pfkit.evaluate import report


@tool
def aggregate(scores: list) -> dict:
    """Logs exact_match_rate and partial_match_rate with their statistics."""
    return report({"exact_match_rate": [s["exact_match"] for s in scores],
                   "partial_match_rate": [s["partial_match"] for s in scores]})
