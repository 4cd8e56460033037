from fractions import Fraction

from promptflow.core import tool


def _number(text) -> float:
    return float(Fraction(str(text).strip()))


@tool
def line_score(groundtruth: str, prediction: str) -> int:
    if prediction == "JSONDecodeError" or str(prediction).startswith("Unknown Error:"):
        return -1
    try:
        return 1 if round(_number(prediction), 2) == round(_number(groundtruth), 2) else 0
    except (ValueError, ZeroDivisionError):
        return -1
