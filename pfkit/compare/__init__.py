"""Comparing runs with paired statistics: is variant B better than A, or is it noise?

``compare_scores(collected_runs)`` gives a :class:`CompareResult` (per-run means with 95%
intervals; against the baseline, paired differences with bootstrap intervals, Holm-corrected
p-values, win/tie/loss, lines needed at 80% power; the lines that changed most), shown as a
terminal table (``str(result)``), JSON (``result.to_dict()``), HTML (``render_html(result)``)
or, in Jupyter, by itself.
"""

from ._align import RunScores, align, collect, input_hash, metric_columns
from ._html import render_html
from ._load import compare, resolve_runs
from ._result import ChangedLine, CompareResult, compare_scores
from ._text import render_text

__all__ = ["ChangedLine", "CompareResult", "RunScores", "align", "collect", "compare",
           "compare_scores", "input_hash", "metric_columns", "render_html", "render_text",
           "resolve_runs"]


class _CallableModule(__import__("types").ModuleType):
    """``pfkit.compare(["run_a", "run_b"])`` calls :func:`compare`; the module stays a module."""

    def __call__(self, *args, **kwargs):
        return compare(*args, **kwargs)


__import__("sys").modules[__name__].__class__ = _CallableModule
