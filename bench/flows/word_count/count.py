from promptflow.core import tool


@tool
def count(text: str) -> dict:
    words = text.split()
    return {"words": len(words), "chars": len(text), "longest": max(words, key=len, default="")}
