def add(a: int, b: int = 10) -> dict:
    return {"total": a + b, "types": [type(a).__name__, type(b).__name__]}
