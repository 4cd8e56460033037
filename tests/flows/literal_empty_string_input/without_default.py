from promptflow.core import tool


@tool
def without_default(x: str, s: str) -> dict:
    return {"x": x, "s": s}
