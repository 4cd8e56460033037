from promptflow.core import tool
import math

VOWELS = 'aeiou'


def _vowels(text):
    return sum(1 for c in text.lower() if c in VOWELS)


@tool
def analyse(text: str) -> dict:
    """Counts of a text: words, vowels, and the square root of the word count."""
    words = text.split()
    return {"words": len(words), "vowels": _vowels(text), "root": round(math.sqrt(len(words)), 6),
            "long": len(words) > 2}
