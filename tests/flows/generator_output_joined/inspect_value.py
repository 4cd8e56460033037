from promptflow.core import tool


@tool
def inspect_value(value, other) -> dict:
    return {"type": type(value).__name__, "value": value, "other_type": type(other).__name__, "other": other}
