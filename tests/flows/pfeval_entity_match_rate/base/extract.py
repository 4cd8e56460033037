from promptflow.core import tool


@tool
def extract(text: str) -> list:
    if not text.strip():
        raise ValueError("empty text: nothing to extract")
    words = [w.strip(",.;:!?") for w in text.split()[1:]]
    return [w for w in words if w[:1].isupper()]
