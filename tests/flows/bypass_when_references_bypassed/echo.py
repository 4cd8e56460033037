from promptflow.core import tool


@tool
def echo(value: str, flag: bool = False) -> str:
    return value if not flag else f"{value}|flag"
