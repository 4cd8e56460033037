from promptflow.core import tool

from pfkit.evaluate import report


@tool
def aggregate(scores: list) -> dict:
    """Logs 'fluency' (the mean over lines the judge scored); returns n, missing and the 95%
    interval."""
    return report({"fluency": scores})
