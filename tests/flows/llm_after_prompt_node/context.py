from promptflow.core import tool


@tool
def context(question: str) -> str:
    return "context for: " + question
