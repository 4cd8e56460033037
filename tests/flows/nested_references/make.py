from promptflow.core import tool


@tool
def make(x: str) -> dict:
    return {"a": [10, 20], "d": {"k.x": "dot-key:" + x, "plain": 1}, "items": [{"name": "first-" + x}]}
