from promptflow.core import tool


@tool
def with_default(x: str, s: str = "<python default>") -> dict:
    return {"x": x, "s": s}
