from promptflow.core import tool


@tool
def count(vector: list) -> int:
    return len(vector)
