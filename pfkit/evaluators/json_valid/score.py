from promptflow.core import tool

from pfkit.evaluate import parse_json_answer


@tool
def score(answer: str) -> dict:
    ok, _, error = parse_json_answer(answer)
    return {"json_valid": float(ok), "error": error}
