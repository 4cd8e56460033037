from promptflow.core import tool


@tool
def step(text: str, suffix: str) -> str:
    """Trivial work on the previous node's output: append one character."""
    return text + suffix
