from promptflow.core import tool


@tool
def shape(x: int) -> dict:
    return {"kind": "even" if x % 2 == 0 else "odd", "x": x}
