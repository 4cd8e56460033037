from promptflow.core import tool


@tool
def summarize_short(text: str, limit: int) -> str:
    return "v0:" + text[:limit]
