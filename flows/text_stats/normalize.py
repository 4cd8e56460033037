import unicodedata

from promptflow.core import tool


@tool
def normalize(text: str) -> str:
    """Unicode-normalise and collapse whitespace."""
    return " ".join(unicodedata.normalize("NFKC", text).split())
