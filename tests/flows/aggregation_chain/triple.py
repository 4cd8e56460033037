from promptflow.core import tool


@tool
def triple(value: int) -> int:
    return value * 3
