from promptflow.core import tool


@tool
def grade(answer: str, truth: str) -> bool:
    return answer.strip().lower() == truth.strip().lower()
