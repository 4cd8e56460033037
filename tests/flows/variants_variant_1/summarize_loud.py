from promptflow.core import tool


@tool
def summarize_loud(text: str, marker: str) -> str:
    return "v1:" + marker + text.upper()
