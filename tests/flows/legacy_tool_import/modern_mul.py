from promptflow.core import tool


@tool
def modern_mul(a: int, b: int) -> int:
    return a * b
