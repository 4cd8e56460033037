from promptflow.core import tool


@tool
def make(which: str) -> dict:
    if which == "full":
        return {"value": 1, "a": [0, 1, 2, 3, 4, 5]}
    if which == "no_a":
        return {"value": 2, "a": []}
    return {"other": 3}
