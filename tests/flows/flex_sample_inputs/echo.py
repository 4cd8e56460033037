def repeat(text: str) -> str:
    return text * 2
