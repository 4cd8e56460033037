from promptflow.core import tool


@tool
def echo(value: str, flag: bool = False) -> str:
    return f"{value}|{flag}"
