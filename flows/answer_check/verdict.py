from promptflow.core import tool


@tool
def verdict(reply: str) -> float:
    """1.0 when the judge's reply starts with yes, else 0.0."""
    words = str(reply).strip().lower().split()
    return 1.0 if words and words[0].strip(".,!") == "yes" else 0.0
