def repeat(text: str) -> str:
    return "<" + text + ">"
