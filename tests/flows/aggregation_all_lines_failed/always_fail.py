from promptflow.core import tool


@tool
def always_fail(n: int) -> int:
    raise ZeroDivisionError(f"cannot handle {n}")
