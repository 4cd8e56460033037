from promptflow.core import tool


@tool
def shout(text: str, mark: str = "!") -> str:
    return text.upper() + mark
