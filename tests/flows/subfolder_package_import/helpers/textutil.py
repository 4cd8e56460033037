from ._punct import EXCLAIM


def shout(text: str) -> str:
    return text.upper() + EXCLAIM


def word_count(text: str) -> int:
    return len(text.split())
