from promptflow.core import tool


@tool
def polish(text: str, style: str) -> str:
    return f"<{style}>{text}</{style}>"
