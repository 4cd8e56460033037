from promptflow.core import tool

from pfkit.evaluate import judge_score


@tool
def parse(judgement) -> dict:
    """The 1-5 score (None when the judge gave none), the reason and the raw answer."""
    return judge_score(judgement)
