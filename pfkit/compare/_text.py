"""The comparison as a terminal table: one block per metric, one row per run, the baseline
first; differences, intervals, Holm-corrected p-values and win/tie/loss against it."""

from __future__ import annotations

from typing import Any

NAME_WIDTH = 32


def short(name: str, width: int = NAME_WIDTH) -> str:
    """Long run names keep their start and end (the variant is usually at the end)."""
    if len(name) <= width:
        return name
    keep = width - 1
    return name[: keep // 2] + "…" + name[-(keep - keep // 2):]


def number(value: float | None, signed: bool = False) -> str:
    if value is None:
        return "—"
    return f"{value:+.3f}" if signed else f"{value:.3f}"


def interval(low: float | None, high: float | None, signed: bool = False) -> str:
    if low is None or high is None:
        return "—"
    return f"[{number(low, signed)}, {number(high, signed)}]"


def p_text(p: float | None) -> str:
    if p is None:
        return "—"
    return "<0.001" if p < 0.001 else f"{p:.3f}"


def verdict(c: Any) -> str:
    if c.p_value is None:
        return "no paired lines"
    if c.significant:
        return "better" if c.difference > 0 else "worse"
    needed = f", ~{c.lines_needed} lines to detect" if c.lines_needed else ""
    return f"not significant{needed}"


def render_text(result: Any) -> str:
    runs = result.runs
    width = min(NAME_WIDTH, max(len(r) for r in runs))
    lines = [f"Compared {len(runs)} run(s) on {len(result.alignment.line_numbers)} aligned "
             f"line(s); baseline: {result.baseline}"]
    if result.alignment.mismatched:
        lines.append(f"  {len(result.alignment.mismatched)} line(s) left out: their inputs differ "
                     f"between runs (lines {_numbers(result.alignment.mismatched)})")
    for name, missing in result.alignment.missing.items():
        lines.append(f"  {name} lacks {len(missing)} line(s) ({_numbers(missing)})")
    if not result.metrics:
        lines.append("No metric is common to all runs: evaluate them first "
                     "(pfkit run create --flow evaluators/NAME --run RUN ...).")
        return "\n".join(lines)
    header = (f"{'run':<{width}}  {'mean':>7}  {'95% CI':<17} {'n':>5} {'miss':>5}  "
              f"{'diff':>7}  {'95% CI of diff':<17} {'p (Holm)':>8}  {'W/T/L':<11} verdict")
    for metric in result.metrics:
        lines += ["", metric, header, "-" * len(header)]
        for run in runs:
            s = result.summaries[metric][run]
            row = (f"{short(run, width):<{width}}  {number(s.value):>7}  "
                   f"{interval(s.ci_low, s.ci_high):<17} {s.n:>5} {s.missing + s.errors:>5}")
            c = result.comparisons[metric].get(run)
            if c is None:
                row += "  (baseline)"
            else:
                row += (f"  {number(c.difference, True):>7}  "
                        f"{interval(c.ci_low, c.ci_high, True):<17} "
                        f"{p_text(c.p_adjusted):>8}  {f'{c.wins}/{c.ties}/{c.losses}':<11} "
                        f"{verdict(c)}")
            lines.append(row)
    if any(len(r) > width for r in runs):
        lines += ["", "Runs: " + ", ".join(runs)]
    return "\n".join(lines)


def _numbers(values: Any, limit: int = 8) -> str:
    values = list(values)
    text = ", ".join(str(v) for v in values[:limit])
    return text + (", …" if len(values) > limit else "")
