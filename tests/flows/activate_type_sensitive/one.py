from promptflow.core import tool


@tool
def one() -> int:
    return 1
