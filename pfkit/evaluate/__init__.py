"""Evaluation: the scores built-in evaluator flows compute, and their summaries.

Per-line scores: :func:`exact_match`, :func:`f1_score` (SQuAD token F1), :func:`rouge`
(ROUGE-1/2/L), :func:`bleu` (sacrebleu-compatible sentence BLEU), :func:`contains`,
:func:`keyword_coverage`, :func:`regex_match`, :func:`numeric_match`, :func:`entity_match`.
Summaries with intervals live in :mod:`pfkit.stats`.
"""

from ._numbers import numeric_match, parse_number
from ._text import (
    bleu,
    contains,
    entity_match,
    exact_match,
    f1_score,
    keyword_coverage,
    normalize_answer,
    regex_match,
    rouge,
)

__all__ = ["bleu", "contains", "entity_match", "exact_match", "f1_score", "keyword_coverage",
           "normalize_answer", "numeric_match", "parse_number", "regex_match", "rouge"]
