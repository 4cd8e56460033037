from promptflow.core import tool


def _words(text: str) -> list[str]:
    return "".join(c.lower() if c.isalnum() else " " for c in str(text or "")).split()


@tool
def grade(answer: str, expected: str) -> dict:
    """contains: 1.0 when every word of the expected text is in the answer; f1: word overlap."""
    got, want = _words(answer), _words(expected)
    contains = float(bool(want) and all(w in got for w in want))
    common = sum(min(got.count(w), want.count(w)) for w in set(got))
    if not common:
        return {"contains": contains, "f1": 0.0}
    precision, recall = common / len(got), common / len(want)
    return {"contains": contains, "f1": round(2 * precision * recall / (precision + recall), 4)}
