def collect(x: int, **kwargs) -> dict:
    return {"x": x, "extra": sorted(kwargs)}
