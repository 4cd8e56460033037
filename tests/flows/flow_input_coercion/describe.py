from promptflow.core import tool


@tool
def describe(value) -> dict:
    return {"type": type(value).__name__, "value": value}
