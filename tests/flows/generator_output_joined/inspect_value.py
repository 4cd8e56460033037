from promptflow.core import tool


@tool
def inspect_value(value) -> dict:
    kind = type(value).__name__
    if isinstance(value, str):
        return {"type": kind, "is_str": True, "items": [value]}
    return {"type": kind, "is_str": False, "items": [repr(x) for x in value]}
