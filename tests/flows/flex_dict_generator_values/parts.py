def split(text: str) -> dict:
    return {"chunks": (c for c in text), "first": text[:1]}
