import re
from collections import Counter

from promptflow.core import tool

WORD = re.compile(r"\w+", re.UNICODE)
SENTENCE_END = re.compile(r"[.!?。！？]+")


@tool
def stats(text: str, min_word_length: int = 1) -> dict:
    words = [w.lower() for w in WORD.findall(text) if len(w) >= min_word_length]
    sentences = max(1, len([s for s in SENTENCE_END.split(text) if s.strip()])) if text else 0
    counts = Counter(words)
    return {
        "words": len(words),
        "sentences": sentences,
        "average_word_length": round(sum(map(len, words)) / len(words), 2) if words else 0.0,
        "top_words": [w for w, _ in counts.most_common(3)],
    }
