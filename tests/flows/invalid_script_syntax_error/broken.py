from promptflow.core import tool


@tool
def broken(x: str) -> str
    return x
