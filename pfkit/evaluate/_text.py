"""Text-match scores for one line: exact match, SQuAD token F1, ROUGE-1/2/L, BLEU, keyword
coverage, regex and entity matches. Pure Python; each function takes the answer first and the
reference second, and returns floats in [0, 1] (or a dict of them)."""

from __future__ import annotations

import math
import re
import string
from collections import Counter
from collections.abc import Iterable, Sequence
from typing import Any

_ARTICLES = re.compile(r"\b(a|an|the)\b")
_PUNCTUATION = set(string.punctuation)
_NO_PUNCTUATION = str.maketrans("", "", string.punctuation)
_WORD = re.compile(r"[^\W_]+")  # letters and digits of any script; ASCII: ROUGE's [a-z0-9]+


def _text(value: Any) -> str:
    if value is None:
        return ""
    return value if isinstance(value, str) else str(value)


def normalize_answer(text: Any) -> str:
    """SQuAD's normalisation: lower case, no punctuation, no articles, single spaces."""
    no_punct = _text(text).lower().translate(_NO_PUNCTUATION)
    return " ".join(_ARTICLES.sub(" ", no_punct).split())


def exact_match(answer: Any, reference: Any, *, normalize: bool = True) -> float:
    if normalize:
        return float(normalize_answer(answer) == normalize_answer(reference))
    return float(_text(answer) == _text(reference))


def f1_score(answer: Any, reference: Any) -> float:
    """SQuAD token F1 over normalised whitespace tokens; two empty texts match (1.0)."""
    predicted = normalize_answer(answer).split()
    expected = normalize_answer(reference).split()
    if not predicted or not expected:
        return float(predicted == expected)
    common = sum((Counter(predicted) & Counter(expected)).values())
    if common == 0:
        return 0.0
    precision = common / len(predicted)
    recall = common / len(expected)
    return 2 * precision * recall / (precision + recall)


def words(text: Any) -> list[str]:
    """Lower-cased runs of letters and digits (ROUGE's tokeniser, extended to every script)."""
    return _WORD.findall(_text(text).lower())


def _ngrams(tokens: Sequence[str], n: int) -> Counter:
    """Counts of the n-grams (tuples of n tokens) of ``tokens``."""
    if n == 1:
        return Counter(zip(tokens))  # noqa: B905 - one iterable
    return Counter(zip(*(tokens[i:] for i in range(n)), strict=False))  # shorter slices end it


def _prf(overlap: int, predicted: int, expected: int) -> dict[str, float]:
    precision = overlap / predicted if predicted else 0.0
    recall = overlap / expected if expected else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {"precision": precision, "recall": recall, "f1": f1}


def _lcs_length(a: Sequence[str], b: Sequence[str]) -> int:
    if len(a) < len(b):
        a, b = b, a
    previous = [0] * (len(b) + 1)
    for x in a:
        current = [0]
        left = 0  # current[j - 1]
        for j, y in enumerate(b):
            if x == y:
                left = previous[j] + 1
            else:
                up = previous[j + 1]
                if up > left:
                    left = up
            current.append(left)
        previous = current
    return previous[-1]


def rouge(answer: Any, reference: Any) -> dict[str, float]:
    """ROUGE-1, ROUGE-2 and ROUGE-L precision, recall and F1 (as rouge-score computes them,
    without stemming): ``{"rouge1_precision": ..., "rougeL_f1": ...}``."""
    predicted, expected = words(answer), words(reference)
    scores: dict[str, float] = {}
    for n in (1, 2):
        p, e = _ngrams(predicted, n), _ngrams(expected, n)
        overlap = sum((p & e).values())
        for key, value in _prf(overlap, sum(p.values()), sum(e.values())).items():
            scores[f"rouge{n}_{key}"] = value
    lcs = _lcs_length(predicted, expected) if predicted and expected else 0
    for key, value in _prf(lcs, len(predicted), len(expected)).items():
        scores[f"rougeL_{key}"] = value
    return scores


# -- BLEU (sacrebleu's 13a tokeniser, exp smoothing, effective order for sentences) -------------

_13A_SYMBOL = re.compile(r"([\{-\~\[-\` -\&\(-\+\:-\@\/])")
# the first rule of 13a puts spaces around every one of these ASCII symbols: a translation
_13A_SPACED = str.maketrans({chr(c): f" {chr(c)} " for c in range(128)
                             if _13A_SYMBOL.fullmatch(chr(c))})
_13A_PERIOD_COMMA = [
    (re.compile(r"([^0-9])([\.,])"), r"\1 \2 "),
    (re.compile(r"([\.,])([^0-9])"), r" \1 \2"),
]
_13A_DASH = (re.compile(r"([0-9])(-)"), r"\1 \2 ")


def bleu_tokens(text: Any) -> list[str]:
    line = _text(text).replace("<skipped>", "").replace("-\n", "").replace("\n", " ")
    if "&" in line:
        line = (line.replace("&quot;", '"').replace("&amp;", "&").replace("&lt;", "<")
                .replace("&gt;", ">"))
    line = f" {line} ".translate(_13A_SPACED)
    if "." in line or "," in line:
        for pattern, replacement in _13A_PERIOD_COMMA:
            line = pattern.sub(replacement, line)
    if "-" in line:
        line = _13A_DASH[0].sub(_13A_DASH[1], line)
    return line.split()


def bleu_statistics(answer: Any, references: Iterable[Any], max_order: int = 4) -> list[int]:
    """``[answer_len, ref_len, correct_1..n, total_1..n]`` for one sentence (closest reference
    length, clipped n-gram counts against the union of references)."""
    hypothesis = bleu_tokens(answer)
    refs = [bleu_tokens(r) for r in references] or [[]]
    length = len(hypothesis)
    ref_len = min((abs(len(r) - length), len(r)) for r in refs)[1]
    correct, total = [], []
    for n in range(1, max_order + 1):
        if length < n:  # no n-gram of this order in the answer: nothing can match
            correct.append(0)
            total.append(0)
            continue
        hyp = _ngrams(hypothesis, n)
        best = _ngrams(refs[0], n)
        for r in refs[1:]:
            best |= _ngrams(r, n)
        correct.append(sum((hyp & best).values()))
        total.append(length - n + 1)
    return [length, ref_len, *correct, *total]


def bleu_from_statistics(stats: Sequence[int], max_order: int = 4,
                         effective_order: bool = False) -> float:
    """BLEU in [0, 1] from summed :func:`bleu_statistics`."""
    length, ref_len = stats[0], stats[1]
    correct = stats[2:2 + max_order]
    total = stats[2 + max_order:2 + 2 * max_order]
    if not any(correct) or length == 0:
        return 0.0
    order = max_order
    if effective_order:
        order = 0
        for n in range(max_order):
            if total[n] == 0:
                break
            order = n + 1
    smooth = 1.0
    logs = []
    for n in range(order):
        if total[n] == 0:
            return 0.0
        if correct[n] == 0:
            smooth *= 2
            logs.append(math.log(1.0 / (smooth * total[n])))
        else:
            logs.append(math.log(correct[n] / total[n]))
    penalty = 1.0 if length >= ref_len else math.exp(1 - ref_len / length)
    return penalty * math.exp(sum(logs) / order)


def bleu(answer: Any, reference: Any | Sequence[Any]) -> float:
    """Sentence BLEU in [0, 1], as ``sacrebleu.sentence_bleu(answer, refs).score / 100``."""
    refs = reference if isinstance(reference, (list, tuple)) else [reference]
    return bleu_from_statistics(bleu_statistics(answer, refs), effective_order=True)


# -- keywords, regex, entities ----------------------------------------------------------------

def as_list(value: Any, separator: str = ",") -> list[str]:
    """A list of texts from a list or a ``separator``-separated string (blanks dropped)."""
    if value is None:
        return []
    if isinstance(value, str):
        items = value.split(separator)
    elif isinstance(value, (list, tuple, set)):
        items = [_text(v) for v in value]
    else:
        items = [_text(value)]
    return [item.strip() for item in items if item.strip()]


def contains(answer: Any, expected: Any, *, case_sensitive: bool = False) -> float:
    text, needle = _text(answer), _text(expected)
    if not case_sensitive:
        text, needle = text.casefold(), needle.casefold()
    return float(needle in text)


def keyword_coverage(answer: Any, keywords: Any, *, case_sensitive: bool = False) -> float | None:
    """The fraction of keywords found in the answer; None when there are no keywords."""
    wanted = as_list(keywords)
    if not wanted:
        return None
    return sum(contains(answer, k, case_sensitive=case_sensitive) for k in wanted) / len(wanted)


def regex_match(answer: Any, pattern: str, *, full: bool = False,
                ignore_case: bool = False) -> float:
    """1.0 when the pattern (the evaluator author's, never a data row's) matches the answer."""
    flags = re.IGNORECASE if ignore_case else 0
    compiled = re.compile(pattern, flags)
    text = _text(answer)
    return float((compiled.fullmatch(text) if full else compiled.search(text)) is not None)


def _clean_entity(entity: str) -> str:
    return entity.strip(' \t."').lower()


def entity_match(entities: Any, ground_truth: Any) -> dict[str, float]:
    """promptflow's eval-entity-match-rate rule: both sides split on commas, stripped of
    spaces, tabs, periods and quotes, compared case- and order-insensitively. ``exact_match``:
    the same set; ``partial_match``: every answer entity is in the ground truth."""
    answer = {_clean_entity(e) for e in as_list(entities)} - {""}
    truth = {_clean_entity(e) for e in as_list(ground_truth)} - {""}
    return {"exact_match": float(answer == truth),
            "partial_match": float(answer <= truth)}
