import re

from promptflow.core import tool


@tool
def parse_quality(reply: str) -> dict:
    score = re.search(r"(?im)^\s*score\s*:\s*(\d+(?:\.\d+)?)", reply)
    reason = re.search(r"(?ims)^\s*reason\s*:\s*(.+)", reply)
    return {"quality_score": float(score.group(1)) if score else float("nan"),
            "quality_reasoning": reason.group(1).strip() if reason else ""}
