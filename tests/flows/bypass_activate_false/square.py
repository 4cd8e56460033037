from promptflow.core import tool


@tool
def square(n: int) -> int:
    return n * n
