from promptflow.core import tool


def _show(v):
    return [type(v).__name__, v]


@tool
def typed(i: int, f: float, b: bool, d: dict, l: list, s: str, u) -> dict:
    return {"i": _show(i), "f": _show(f), "b": _show(b), "d": _show(d), "l": _show(l), "s": _show(s), "u": _show(u)}
