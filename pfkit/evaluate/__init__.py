"""Evaluation: ``pfkit.evaluate(...)``, the scores built-in evaluator flows compute, summaries.

``pfkit.evaluate(data=..., run=..., evaluators={...})`` runs built-in evaluators (by name),
evaluator flows and plain callables and returns rows and metrics with their statistics (see
:func:`evaluate`); ``run_statistics(run)`` gives a run's metrics with n, missing and intervals.

Per-line scores: :func:`exact_match`, :func:`f1_score` (SQuAD token F1), :func:`rouge`
(ROUGE-1/2/L), :func:`bleu` (sacrebleu-compatible sentence BLEU), :func:`contains`,
:func:`keyword_coverage`, :func:`regex_match`, :func:`numeric_match`, :func:`entity_match`,
:func:`exact_label_match`, :func:`parse_json_answer` / :func:`schema_errors`, and
:func:`judge_score` for LLM judges (G-Eval weighting when logprobs are given).
Over a run: :func:`classification_report`, and :func:`report`, which an evaluator's aggregation
node calls to log each metric with its statistics (:mod:`pfkit.stats`).
"""

from ._api import (
    EvaluationResult,
    builtin_evaluators,
    evaluate,
    evaluator_path,
    render_statistics,
    run_statistics,
)
from ._classification import classification_report, exact_label_match
from ._json import SchemaError, parse_json_answer, schema_errors
from ._judge import judge_score
from ._numbers import cosine_similarity, numeric_match, parse_number
from ._report import percentile_of, report
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

__all__ = ["EvaluationResult", "SchemaError", "bleu", "builtin_evaluators",
           "classification_report", "contains", "cosine_similarity", "entity_match", "evaluate",
           "evaluator_path", "exact_label_match", "exact_match", "f1_score", "judge_score",
           "keyword_coverage", "normalize_answer", "numeric_match", "parse_json_answer",
           "parse_number", "percentile_of", "regex_match", "render_statistics", "report", "rouge",
           "run_statistics", "schema_errors"]


class _CallableModule(__import__("types").ModuleType):
    """``pfkit.evaluate(data=..., evaluators=...)`` calls :func:`evaluate`; the module stays a
    module (``pfkit.evaluate.f1_score`` ...)."""

    def __call__(self, *args, **kwargs):
        return evaluate(*args, **kwargs)


__import__("sys").modules[__name__].__class__ = _CallableModule
