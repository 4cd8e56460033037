from promptflow.core import tool


@tool
def wrap(text: str, tag: str) -> str:
    return f"<{tag}>{text}</{tag}>"
