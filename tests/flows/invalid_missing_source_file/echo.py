from promptflow.core import tool


@tool
def echo(x: str = "") -> str:
    return x
