from promptflow.core import tool


@tool
def compare(groundtruth: str, prediction: str, note: str) -> str:
    verdict = "Correct" if groundtruth.lower() == prediction.lower() else "Incorrect"
    return f"{verdict} ({'no note' if note is None else type(note).__name__})"
