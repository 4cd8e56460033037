from promptflow.core import tool

from pfkit.evaluate import parse_json_answer, schema_errors


@tool
def score(answer: str, schema: dict) -> dict:
    """A malformed schema fails the line (it is the evaluation's input, not the answer's
    fault); an answer that is not JSON scores 0 with the parse error."""
    ok, value, error = parse_json_answer(answer)
    if not ok:
        return {"json_schema": 0.0, "errors": [f"not JSON: {error}"]}
    errors = schema_errors(value, schema)
    return {"json_schema": float(not errors), "errors": errors}
