import re

from promptflow.core import tool

NUMBER = re.compile(r"[-+]?\d+(?:\.\d+)?")


@tool
def parse_score(judge_reply: str) -> float:
    found = NUMBER.search(judge_reply or "")
    if found is None:
        raise ValueError(f"the judge gave no score: {judge_reply!r}")
    return float(found.group())
