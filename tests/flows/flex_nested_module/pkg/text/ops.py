from .helpers import bang

def shout(word: str) -> str:
    return bang(word.upper())
