from promptflow.core import tool

from pfkit.evaluate import cosine_similarity


@tool
def similarity(a: list, b: list) -> float | None:
    """Cosine similarity of two embeddings; None (a missing score) when either is empty."""
    return cosine_similarity(a, b)
