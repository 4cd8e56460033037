from promptflow.core import tool

from pfkit.evaluate import keyword_coverage


@tool
def score(answer: str, keywords: list, case_sensitive: bool = False) -> float | None:
    """None (a missing score, not 0) when the line has no keywords."""
    return keyword_coverage(answer, keywords, case_sensitive=case_sensitive)
