import math

from promptflow.core import tool


@tool
def checked_root(number: int) -> float:
    if number < 0:
        raise ValueError(f"negative number: {number}")
    return math.sqrt(number)
