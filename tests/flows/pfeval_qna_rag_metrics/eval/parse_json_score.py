import json

from promptflow.core import tool


@tool
def parse_json_score(reply: str) -> dict:
    try:
        data = json.loads(reply)
        return {"quality_score": float(data["score"]), "quality_reasoning": str(data.get("reason", ""))}
    except (ValueError, KeyError, TypeError):
        return {"quality_score": float("nan"), "quality_reasoning": reply}
