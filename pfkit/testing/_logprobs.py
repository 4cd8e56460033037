"""Deterministic, plausible log-probabilities for the test server's answers.

Tokens are words with their leading whitespace (``"The answer: 4"`` -> ``"The"``,
``" answer:"``, ``" 4"``), so the tokens of a reply join back to its text. The chosen token is
always the most likely one (probability 0.55-0.97, from a hash of the token); each alternative
gets half the probability of the one before it out of what is left, so a token's
``top_logprobs`` add up to less than 1. Alternatives are what a model would plausibly weigh:

* a whole number: its neighbours on the rating scale it belongs to, nearest first (an
  answer ``"4"`` with ``top_logprobs: 5`` gets ``"4"``, ``"3"``, ``"5"``, ``"2"``, ``"1"``;
  scales are 1-5, 0-10, else the number's neighbourhood), then numbers outside the scale;
* yes/no and true/false: the opposite first (in the same case);
* any other token: its other capitalisation, then common short tokens.
"""

from __future__ import annotations

import math
import re
import zlib
from typing import Any

_TOKEN_RE = re.compile(r"\s*\S+|\s+")
_OPPOSITES = {"yes": "no", "no": "yes", "true": "false", "false": "true",
              "correct": "incorrect", "incorrect": "correct", "pass": "fail", "fail": "pass"}
_COMMON = (" the", ",", ".", " a", " and", " of", " to", " is", " in", "\n", " it", " that",
           " for", " on", " with", " as", " was", " be", " this", " not", " or", ":")
MAX_TOP = 20  # what the real API allows for chat ``top_logprobs``


def tokens(text: str) -> list[str]:
    return _TOKEN_RE.findall(text)


def _probability(token: str) -> float:
    return 0.55 + (zlib.crc32(token.encode("utf-8")) % 4200) / 10000.0


def token_logprob(token: str) -> float:
    """The chosen token's log-probability: in [ln 0.97, ln 0.55], i.e. about -0.03 to -0.6."""
    return round(math.log(_probability(token)), 6)


def top_alternatives(token: str, count: int) -> list[tuple[str, float]]:
    """The ``count`` most likely tokens at this position, the chosen one first."""
    if count <= 0:
        return []
    chosen = _probability(token)
    result = [(token, round(math.log(chosen), 6))]
    rest = 1.0 - chosen
    for i, alternative in enumerate(_candidates(token, count - 1), start=1):
        result.append((alternative, round(math.log(rest * 0.5 ** i), 6)))
    return result


def _candidates(token: str, count: int) -> list[str]:
    if count <= 0:
        return []
    stripped = token.lstrip()
    lead = token[:len(token) - len(stripped)]
    found: list[str] = []

    def add(candidate: str) -> None:
        if candidate and candidate != token and candidate not in found:
            found.append(candidate)

    if re.fullmatch(r"-?\d{1,9}", stripped):
        for number in _scale_neighbours(int(stripped), count):
            add(lead + str(number))
    else:
        lowered = stripped.lower()
        if lowered in _OPPOSITES:
            add(lead + _same_case(_OPPOSITES[lowered], stripped))
        if stripped:
            add(lead + (stripped.lower() if stripped != stripped.lower()
                        else stripped.capitalize()))
            add(("" if lead else " ") + stripped)
    for common in _COMMON:
        if len(found) >= count:
            break
        add(common)
    filler = 1
    while len(found) < count:  # only for very large counts
        add(f"{stripped or token}{filler}")
        filler += 1
    return found[:count]


def _scale_neighbours(value: int, count: int) -> list[int]:
    """Other numbers of ``value``'s rating scale, nearest first, then numbers beyond it."""
    if 1 <= value <= 5:
        low, high = 1, 5
    elif 0 <= value <= 10:
        low, high = 0, 10
    else:
        low, high = value - 10, value + 10

    def by_distance(numbers: range) -> list[int]:
        return sorted((n for n in numbers if n != value), key=lambda n: (abs(n - value), n))

    inside = by_distance(range(low, high + 1))
    outside = [n for n in by_distance(range(value - count - 20, value + count + 21))
               if not low <= n <= high and (n >= 0 or value < 0)]
    return (inside + outside)[:count]


def _same_case(word: str, like: str) -> str:
    if like.isupper() and len(like) > 1:
        return word.upper()
    if like[:1].isupper():
        return word.capitalize()
    return word


def chat_logprobs(text: str, top: int) -> dict[str, Any]:
    """``choices[i].logprobs`` of a chat completion (or of one stream chunk)."""
    entries = []
    for token in tokens(text):
        top_entries = [{"token": t, "logprob": lp, "bytes": list(t.encode("utf-8"))}
                       for t, lp in top_alternatives(token, top)]
        entries.append({"token": token, "logprob": token_logprob(token),
                        "bytes": list(token.encode("utf-8")), "top_logprobs": top_entries})
    return {"content": entries, "refusal": None}


def completion_logprobs(text: str, top: int, offset: int = 0) -> dict[str, Any]:
    """``choices[i].logprobs`` of a (legacy) text completion."""
    pieces = tokens(text)
    offsets, position = [], offset
    for token in pieces:
        offsets.append(position)
        position += len(token)
    return {"tokens": pieces, "token_logprobs": [token_logprob(t) for t in pieces],
            "top_logprobs": [dict(top_alternatives(t, max(1, top))) for t in pieces],
            "text_offset": offsets}
