from promptflow.core import tool


@tool
def answer(question: str) -> str:
    if "fail" in question:
        raise RuntimeError("the base flow failed on purpose")
    return question.split()[-1].strip("?").upper()
