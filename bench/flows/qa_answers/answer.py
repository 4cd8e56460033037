from promptflow.core import tool

WORDS = ["the", "cat", "sat", "on", "a", "mat", "near", "red", "door", "today"]


@tool
def answer(question: str) -> str:
    n = sum(map(ord, question))
    return " ".join(WORDS[(n + i * 7) % len(WORDS)] for i in range(3 + n % 6))
