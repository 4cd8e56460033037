from promptflow.core import tool


@tool
def int_tool(x: int) -> int:
    return x
