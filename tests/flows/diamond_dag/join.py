from promptflow.core import tool


@tool
def join(left: int, right: int, original: int) -> dict:
    return {"left": left, "right": right, "original": original, "sum": left + right}
