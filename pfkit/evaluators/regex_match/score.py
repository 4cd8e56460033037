from promptflow.core import tool

from pfkit.evaluate import regex_match


@tool
def score(answer: str, pattern: str, full_match: bool = False, ignore_case: bool = False) -> float:
    return regex_match(answer, pattern, full=full_match, ignore_case=ignore_case)
