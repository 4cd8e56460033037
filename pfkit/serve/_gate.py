"""The evaluation gate: a candidate is deployed only when its evaluation clears every threshold
(``accuracy>=0.9`` on the gate run's metric) and, given a baseline run, is not significantly
worse than the baseline by the paired statistics of :func:`pfkit.compare.compare`.

Thresholds are checked on the metric's value (the mean over scored lines); the report gives its
95% interval and n so a threshold cleared by a handful of lines is visible. A regression refuses
the candidate when it is significant (Holm-adjusted p < 0.05) and larger than
``max_regression``. A metric gated with ``<`` or ``<=`` is taken as lower-is-better.
"""

from __future__ import annotations

import operator
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from ..errors import UserError

_OPS = {">=": operator.ge, ">": operator.gt, "<=": operator.le, "<": operator.lt,
        "==": operator.eq}
_PATTERN = re.compile(r"^\s*([A-Za-z_][\w.\-]*)\s*(>=|<=|==|>|<)\s*"
                      r"([-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)\s*$")


class GateRefused(UserError):
    """The candidate did not pass the gate; the message says why, with the numbers."""

    def __init__(self, report: GateReport) -> None:
        super().__init__("the evaluation gate refused the candidate:\n  "
                         + "\n  ".join(report.failures), code="GateRefused",
                         hint="Improve the flow and evaluate it again, or change the gate.")
        self.report = report


@dataclass(frozen=True, slots=True)
class Threshold:
    metric: str
    op: str
    value: float

    def passes(self, actual: float) -> bool:
        return _OPS[self.op](actual, self.value)

    @property
    def lower_is_better(self) -> bool:
        return self.op in ("<", "<=")

    def __str__(self) -> str:
        return f"{self.metric}{self.op}{self.value:g}"


def parse_threshold(text: str) -> Threshold:
    """``"accuracy>=0.9"`` -> Threshold("accuracy", ">=", 0.9)."""
    match = _PATTERN.match(text or "")
    if not match:
        raise UserError(f"--gate {text!r} is not a threshold", code="InvalidGate",
                        hint="Write METRIC OP NUMBER with OP one of >= > <= < ==, e.g. "
                             "--gate 'accuracy>=0.9'.")
    return Threshold(match.group(1), match.group(2), float(match.group(3)))


@dataclass
class GateReport:
    passed: bool
    failures: list[str] = field(default_factory=list)
    passes: list[str] = field(default_factory=list)
    checks: list[dict[str, Any]] = field(default_factory=list)

    def __str__(self) -> str:
        lines = [f"gate {'passed' if self.passed else 'REFUSED'}"]
        lines += [f"  ok: {text}" for text in self.passes]
        lines += [f"  refused: {text}" for text in self.failures]
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        return {"passed": self.passed, "failures": self.failures, "passes": self.passes,
                "checks": self.checks}


def _num(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.4g}"


def _interval(low: float | None, high: float | None) -> str:
    if low is None or high is None:
        return "no interval"
    return f"95% CI {_num(low)} to {_num(high)}"


def check_gate(gates: Sequence[str | Threshold] = (), *, gate_run: Any = None,
               baseline_run: Any = None, max_regression: float = 0.0,
               metrics: Sequence[str] | None = None, store: Any = None) -> GateReport:
    """Check a candidate's evaluation run (``gate_run``) against thresholds and, optionally, a
    baseline run. Returns a :class:`GateReport`; :func:`enforce_gate` raises instead."""
    thresholds = [g if isinstance(g, Threshold) else parse_threshold(g) for g in gates]
    if (thresholds or baseline_run) and gate_run is None:
        raise UserError("the gate needs the candidate's evaluation run", code="InvalidGate",
                        hint="Give --gate-run EVAL_RUN (a run whose metrics the gate checks).")
    if max_regression < 0:
        raise UserError(f"--max-regression must be >= 0, got {max_regression}",
                        code="InvalidGate", hint="It is the largest drop allowed, e.g. 0.02.")
    report = GateReport(passed=True)
    if gate_run is None:
        return report
    from ..runs import Run

    if store is None:
        from ..runs._api import default_store

        store = default_store()
    run = gate_run if isinstance(gate_run, Run) else Run(str(gate_run), store)
    if thresholds:
        from ..evaluate import run_statistics

        stats = run_statistics(run)
        for threshold in thresholds:
            summary = stats.get(threshold.metric)
            if summary is None:
                known = ", ".join(sorted(stats)) or "none"
                raise UserError(f"run '{run.name}' has no metric '{threshold.metric}'",
                                code="UnknownMetric",
                                hint=f"Its metrics: {known}. Gate on one of them, or evaluate "
                                     "the run with an evaluator that logs it.")
            check = {"kind": "threshold", "gate": str(threshold), **summary.to_dict()}
            described = (f"{threshold.metric} = {_num(summary.value)} "
                         f"({_interval(summary.ci_low, summary.ci_high)}, n={summary.n}"
                         f"{f', {summary.errors} failed lines' if summary.errors else ''}) "
                         f"in run '{run.name}'")
            if summary.value is None:
                check["passed"] = False
                report.failures.append(f"{described}: no line has a score, so {threshold} "
                                       "cannot be shown")
            elif threshold.passes(summary.value):
                check["passed"] = True
                report.passes.append(f"{described} meets {threshold}")
            else:
                check["passed"] = False
                report.failures.append(f"{described} misses {threshold}")
            report.checks.append(check)
    if baseline_run is not None:
        _check_baseline(report, run, baseline_run, thresholds, max_regression, metrics, store)
    report.passed = not report.failures
    return report


def _check_baseline(report: GateReport, run: Any, baseline_run: Any,
                    thresholds: list[Threshold], max_regression: float,
                    metrics: Sequence[str] | None, store: Any) -> None:
    from ..compare import compare

    baseline = getattr(baseline_run, "name", baseline_run)
    if baseline == run.name:
        raise UserError("--baseline-run is the gate run itself", code="InvalidGate",
                        hint="Give the evaluation run of the version in production.")
    chosen = list(metrics or dict.fromkeys(t.metric for t in thresholds)) or None
    result = compare([baseline, run.name], baseline=baseline, metrics=chosen, store=store)
    lower_better = {t.metric for t in thresholds if t.lower_is_better}
    if not result.metrics:
        report.failures.append(f"runs '{run.name}' and '{baseline}' have no score in common, "
                               "so the candidate cannot be compared with the baseline")
        return
    for metric in result.metrics:
        c = result.comparisons.get(metric, {}).get(run.name)
        if c is None:
            continue
        check = {"kind": "regression", "metric": metric, "baseline": baseline,
                 "max_regression": max_regression, **c.to_dict()}
        p = c.p_adjusted if c.p_adjusted is not None else c.p_value
        if c.difference is None:
            check["passed"] = False
            report.failures.append(f"{metric}: no line is scored in both '{run.name}' and "
                                   f"'{baseline}', so the regression check cannot be made")
            report.checks.append(check)
            continue
        sign = -1.0 if metric in lower_better else 1.0
        drop = -sign * c.difference  # > 0: the candidate is worse
        described = (f"{metric}: difference {c.difference:+.4g} vs baseline '{baseline}' "
                     f"({_interval(c.ci_low, c.ci_high)}, p={_num(p)}"
                     f"{' Holm-adjusted' if c.p_adjusted is not None else ''}, {c.test}, "
                     f"n={c.n} paired lines)")
        if drop > 0 and c.significant and drop > max_regression:
            check["passed"] = False
            report.failures.append(f"{described} is significantly worse"
                                   f"{f' by more than {max_regression:g}' if max_regression else ''}")
        else:
            check["passed"] = True
            why = ("not significantly worse" if drop > 0 and not c.significant else
                   f"within the allowed regression {max_regression:g}" if drop > 0 else
                   "not worse")
            report.passes.append(f"{described}: {why}")
        report.checks.append(check)


def enforce_gate(gates: Sequence[str | Threshold] = (), **options: Any) -> GateReport:
    """:func:`check_gate`, raising :class:`GateRefused` when the candidate fails."""
    report = check_gate(gates, **options)
    if not report.passed:
        raise GateRefused(report)
    return report


__all__ = ["GateRefused", "GateReport", "Threshold", "check_gate", "enforce_gate",
           "parse_threshold"]
