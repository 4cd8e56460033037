def show(n: int, ratio: float = 0.5, flag: bool = False) -> dict:
    return {"n": n, "types": [type(n).__name__, type(ratio).__name__, type(flag).__name__]}
