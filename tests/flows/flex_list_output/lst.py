def letters(word: str) -> list:
    return list(word)
