import re

from promptflow.core import tool


@tool
def tidy(text: str, max_chars: int = 200) -> str:
    """Drop markdown emphasis, collapse whitespace and cut long answers at a word boundary."""
    text = re.sub(r"[*_`#]+", "", text or "")
    text = " ".join(text.split())
    if len(text) <= max_chars:
        return text
    cut = text[:max_chars].rsplit(" ", 1)[0].rstrip(",;:")
    return cut + "…"
