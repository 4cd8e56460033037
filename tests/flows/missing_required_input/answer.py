from promptflow.core import tool


@tool
def answer(question: str, context: str) -> str:
    return f"Q: {question} / C: {context}"
