"""Reading an LLM judge's answer: a 1-5 score and its reason.

Judges are asked for the score alone on the first line and a reason after it. When the model
returned log-probabilities, the score is the probability-weighted mean over the allowed values
at the score's token (G-Eval); otherwise the integer that opens the answer or follows the word
"score" (a number elsewhere is not taken for one). An answer with no score is a missing score
(None) with the raw text kept, never 0.
"""

from __future__ import annotations

import math
import re
from typing import Any

# the score opens the answer ("4", "**4**", "Score: 4", "4/5") or follows the word "score"
_LEADING = re.compile(r"^[\W_]*(?:score\W*)?(\d+)(?![\d.,]\d)", re.IGNORECASE)
_LABELLED = re.compile(r"\bscore\b(?:\s+of)?\W{0,3}(\d+)(?![\d.,]\d)", re.IGNORECASE)


def _content_and_logprobs(output: Any) -> tuple[str, list[dict[str, Any]]]:
    if isinstance(output, dict):
        text = output.get("content") or ""
        items = output.get("logprobs") or []
        return (text if isinstance(text, str) else str(text)), (items if isinstance(items, list)
                                                                else [])
    return ("" if output is None else str(output)), []


def _weighted(items: list[dict[str, Any]], low: int, high: int) -> float | None:
    """The expected score at the first token that is an allowed value."""
    allowed = {str(v) for v in range(low, high + 1)}
    for item in items:
        token = str(item.get("token", "")).strip()
        if token not in allowed:
            if token:  # the first non-blank token is not a score: no weighting possible
                return None
            continue
        weights: dict[int, float] = {}
        for alternative in item.get("top_logprobs") or [item]:
            candidate = str(alternative.get("token", "")).strip()
            logprob = alternative.get("logprob")
            if candidate in allowed and isinstance(logprob, (int, float)):
                value = int(candidate)
                weights[value] = weights.get(value, 0.0) + math.exp(logprob)
        total = sum(weights.values())
        if total <= 0:
            return None
        return sum(v * w for v, w in weights.items()) / total
    return None


def judge_score(output: Any, *, low: int = 1, high: int = 5) -> dict[str, Any]:
    """``{"score", "reason", "raw", "method"}`` from an llm node's output (its text, or the
    ``{"content", "logprobs"}`` it gives when asked for logprobs). ``method`` is ``logprobs``,
    ``text`` or ``unparseable`` (score None)."""
    text, items = _content_and_logprobs(output)
    first, _, rest = text.strip().partition("\n")
    reason = rest.strip() or first.strip()
    weighted = _weighted(items, low, high) if items else None
    if weighted is not None:
        return {"score": weighted, "reason": reason, "raw": text, "method": "logprobs"}
    for match in (_LEADING.match(text.strip()), _LABELLED.search(text)):
        if match is not None and low <= int(match.group(1)) <= high:
            return {"score": float(match.group(1)), "reason": reason, "raw": text,
                    "method": "text"}
    return {"score": None, "reason": "", "raw": text, "method": "unparseable"}
