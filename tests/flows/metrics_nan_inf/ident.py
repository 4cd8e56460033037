from promptflow.core import tool


@tool
def ident(x: float) -> float:
    return x
