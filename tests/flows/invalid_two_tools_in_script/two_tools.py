from promptflow.core import tool


@tool
def echo(x: str) -> str:
    return x


@tool
def echo_again(x: str) -> str:
    return x + x
