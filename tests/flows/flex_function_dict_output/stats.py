def describe(text: str) -> dict:
    return {"upper": text.upper(), "length": len(text), "words": text.split()}
