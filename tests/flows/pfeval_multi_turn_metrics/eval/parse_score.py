import re

from promptflow.core import tool


@tool
def parse_score(reply: str) -> float:
    match = re.search(r"\d+(?:\.\d+)?", reply or "")
    return float(match.group()) if match else float("nan")
