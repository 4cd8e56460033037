from fractions import Fraction

from promptflow.core import tool


@tool
def solve(expression: str) -> str:
    if "?" in expression:
        raise ValueError(f"not an expression: {expression}")
    try:
        left, op, right = expression.split()
        a, b = Fraction(left), Fraction(right)
        value = {"+": a + b, "-": a - b, "*": a * b, "/": a / b}[op]
    except ZeroDivisionError as exc:
        return f"Unknown Error: {exc}"
    except (ValueError, KeyError):
        return "JSONDecodeError"
    return str(value) if value.denominator != 1 else str(value.numerator)
