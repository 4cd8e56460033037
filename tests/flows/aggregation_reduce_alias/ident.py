from promptflow.core import tool


@tool
def ident(v: int) -> int:
    return v
