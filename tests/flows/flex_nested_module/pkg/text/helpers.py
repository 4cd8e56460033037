def bang(text: str) -> str:
    return text + "!"
