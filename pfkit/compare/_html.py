"""The comparison as one self-contained HTML page: styles and plots inline (SVG), no script
or font from elsewhere, so it opens offline and in CI artefacts. Every user text is escaped."""

from __future__ import annotations

import html
import json
import math
from typing import Any

from ._text import interval, number, p_text, short, verdict

PALETTE = ["#4263eb", "#e8590c", "#2b8a3e", "#c2255c", "#1098ad", "#7048e8", "#f08c00",
           "#495057", "#5c940d", "#a61e4d"]

STYLE = """
:root{--fg:#1b1f24;--muted:#57606a;--line:#d0d7de;--bg:#f6f8fa}
body{font:14px/1.45 system-ui,-apple-system,Segoe UI,sans-serif;margin:24px auto;max-width:1200px;
color:var(--fg);padding:0 16px}
h1{font-size:22px;margin:0 0 4px}h2{font-size:17px;margin:28px 0 8px}h3{font-size:15px;margin:18px 0 6px}
.muted{color:var(--muted)}.note{background:#fff8c5;border:1px solid #eac54f;padding:6px 10px;
border-radius:6px;margin:6px 0}
table{border-collapse:collapse;margin:8px 0;font-size:13px}
th,td{border:1px solid var(--line);padding:4px 8px;vertical-align:top;text-align:left}
th{background:var(--bg)}td.num{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}
.run{max-width:280px;overflow-wrap:anywhere}.swatch{display:inline-block;width:10px;height:10px;
border-radius:2px;margin-right:6px;vertical-align:baseline}
.better{color:#1a7f37;font-weight:600}.worse{color:#cf222e;font-weight:600}.ns{color:var(--muted)}
.plots{display:flex;flex-wrap:wrap;gap:16px;align-items:flex-start}.plot{border:1px solid var(--line);border-radius:6px;
padding:8px;background:#fff}
pre{white-space:pre-wrap;margin:0;font:12px ui-monospace,SFMono-Regular,monospace;max-width:360px;
max-height:220px;overflow:auto}
svg text{font:11px system-ui,sans-serif;fill:#1b1f24}
"""


def _e(text: Any) -> str:
    return html.escape(str(text), quote=True)


def _json(value: Any) -> str:
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False, indent=1,
                                                           default=repr)
    return f"<pre>{_e(text)}</pre>"


def _color(index: int) -> str:
    return PALETTE[index % len(PALETTE)]


def _verdict_cell(c: Any) -> str:
    text = verdict(c)
    css = "better" if text == "better" else "worse" if text == "worse" else "ns"
    return f"<td class='{css}'>{_e(text)}</td>"


def _summary_table(result: Any, metric: str) -> str:
    rows = ["<table><tr><th>run</th><th>mean</th><th>95% CI</th><th>n</th><th>missing</th>"
            "<th>difference</th><th>95% CI of difference</th><th>p (Holm)</th><th>test</th>"
            "<th>wins / ties / losses</th><th>verdict</th></tr>"]
    for i, run in enumerate(result.runs):
        s = result.summaries[metric][run]
        cells = [f"<td class='run' title='{_e(run)}'><span class='swatch' "
                 f"style='background:{_color(i)}'></span>{_e(run)}</td>",
                 f"<td class='num'>{number(s.value)}</td>",
                 f"<td class='num'>{interval(s.ci_low, s.ci_high)}</td>",
                 f"<td class='num'>{s.n}</td><td class='num'>{s.missing + s.errors}</td>"]
        c = result.comparisons[metric].get(run)
        if c is None:
            cells.append("<td colspan='6' class='muted'>baseline</td>")
        else:
            cells += [f"<td class='num'>{number(c.difference, True)}</td>",
                      f"<td class='num'>{interval(c.ci_low, c.ci_high, True)}</td>",
                      f"<td class='num'>{p_text(c.p_adjusted)}</td>",
                      f"<td>{_e(c.test)}</td>",
                      f"<td class='num'>{c.wins} / {c.ties} / {c.losses}</td>",
                      _verdict_cell(c)]
        rows.append("<tr>" + "".join(cells) + "</tr>")
    rows.append("</table>")
    return "".join(rows)


def _scale(low: float, high: float, width: float, pad: float):
    span = (high - low) or 1.0

    def x(value: float) -> float:
        return pad + (value - low) / span * (width - 2 * pad)

    return x


def _ticks(low: float, high: float) -> list[float]:
    if high <= low:
        return [low]
    step = 10 ** math.floor(math.log10((high - low) / 4 or 1))
    for factor in (1, 2, 5, 10):
        if (high - low) / (step * factor) <= 6:
            step *= factor
            break
    first = math.ceil(low / step) * step
    return [round(first + k * step, 10) for k in range(int((high - first) / step) + 1)]


def distribution_plot(result: Any, metric: str) -> str:
    """Per run: every line's score (a deterministic jitter), the mean and its interval."""
    runs = result.runs
    values = [v for r in runs for v in result.scores[metric][r] if v is not None]
    if not values:
        return ""
    low, high = min(values), max(values)
    for r in runs:
        s = result.summaries[metric][r]
        if s.ci_low is not None:
            low, high = min(low, s.ci_low), max(high, s.ci_high)
    width, row, label_w = 520, 34, 150
    height = row * len(runs) + 30
    x = _scale(low, high, width - label_w, 10)
    parts = [f"<svg role='img' aria-label='distribution of {_e(metric)}' width='{width}' "
             f"height='{height}' viewBox='0 0 {width} {height}'>"]
    for t in _ticks(low, high):
        px = label_w + x(t)
        parts.append(f"<line x1='{px:.1f}' x2='{px:.1f}' y1='4' y2='{height - 22}' "
                     f"stroke='#eaeef2'/><text x='{px:.1f}' y='{height - 8}' "
                     f"text-anchor='middle'>{t:g}</text>")
    for i, r in enumerate(runs):
        y = 8 + i * row + row / 2
        parts.append(f"<text x='4' y='{y + 4:.1f}'>{_e(short(r, 22))}</text>")
        for j, v in enumerate(result.scores[metric][r]):
            if v is None:
                continue
            jitter = ((j * 2654435761) % 1000) / 1000 * 14 - 7
            parts.append(f"<circle cx='{label_w + x(v):.1f}' cy='{y + jitter:.1f}' r='2.2' "
                         f"fill='{_color(i)}' fill-opacity='0.35'/>")
        s = result.summaries[metric][r]
        if s.value is not None:
            parts.append(f"<line x1='{label_w + x(s.ci_low):.1f}' x2='{label_w + x(s.ci_high):.1f}'"
                         f" y1='{y:.1f}' y2='{y:.1f}' stroke='{_color(i)}' stroke-width='3'/>"
                         f"<circle cx='{label_w + x(s.value):.1f}' cy='{y:.1f}' r='5' "
                         f"fill='{_color(i)}' stroke='#fff'><title>{_e(r)}: mean "
                         f"{number(s.value)} {interval(s.ci_low, s.ci_high)}</title></circle>")
    parts.append("</svg>")
    return f"<div class='plot'><h3>{_e(metric)}: scores by run</h3>{''.join(parts)}</div>"


def difference_plot(result: Any, metric: str, run: str, index: int) -> str:
    """A histogram of per-line differences (run minus baseline), zero and the mean with its
    interval marked."""
    a, b = result.scores[metric][result.baseline], result.scores[metric][run]
    diffs = [y - x for x, y in zip(a, b, strict=True) if x is not None and y is not None]
    c = result.comparisons[metric][run]
    if not diffs:
        return ""
    low, high = min(min(diffs), 0.0), max(max(diffs), 0.0)
    if c.ci_low is not None:
        low, high = min(low, c.ci_low), max(high, c.ci_high)
    if low == high:
        low, high = low - 1, high + 1
    bins = 20
    counts = [0] * bins
    for d in diffs:
        counts[min(bins - 1, int((d - low) / (high - low) * bins))] += 1
    width, height, pad = 420, 170, 10
    x = _scale(low, high, width, pad)
    tallest = max(counts)
    bar_w = (width - 2 * pad) / bins
    parts = [f"<svg role='img' aria-label='paired differences of {_e(metric)}' width='{width}' "
             f"height='{height}' viewBox='0 0 {width} {height}'>"]
    for k, count in enumerate(counts):
        if count:
            h = count / tallest * (height - 60)
            parts.append(f"<rect x='{pad + k * bar_w + 1:.1f}' y='{height - 30 - h:.1f}' "
                         f"width='{bar_w - 2:.1f}' height='{h:.1f}' fill='{_color(index)}' "
                         f"fill-opacity='0.55'><title>{count} line(s)</title></rect>")
    parts.append(f"<line x1='{x(0):.1f}' x2='{x(0):.1f}' y1='10' y2='{height - 30}' "
                 "stroke='#57606a' stroke-dasharray='4 3'/>")
    if c.difference is not None:
        parts.append(f"<line x1='{x(c.ci_low):.1f}' x2='{x(c.ci_high):.1f}' y1='16' y2='16' "
                     f"stroke='#1b1f24' stroke-width='3'/><circle cx='{x(c.difference):.1f}' "
                     f"cy='16' r='5' fill='#1b1f24'/>")
    for t in _ticks(low, high):
        parts.append(f"<text x='{x(t):.1f}' y='{height - 12}' text-anchor='middle'>{t:g}</text>")
    parts.append("</svg>")
    title = f"{short(run, 40)} − {short(result.baseline, 40)}"
    return (f"<div class='plot'><h3>{_e(metric)}: {_e(title)}</h3>{''.join(parts)}"
            f"<div class='muted'>mean {number(c.difference, True)} "
            f"{interval(c.ci_low, c.ci_high, True)}, p {p_text(c.p_adjusted)}</div></div>")


def _changed_table(result: Any) -> str:
    if not result.changed:
        return "<p class='muted'>No line changed its score.</p>"
    rows = ["<table><tr><th>metric</th><th>run</th><th>line</th><th>baseline → run</th>"
            "<th>inputs</th><th>baseline outputs</th><th>run outputs</th></tr>"]
    for c in result.changed:
        rows.append(f"<tr><td>{_e(c.metric)}</td><td class='run'>{_e(c.run)}</td>"
                    f"<td class='num'>{c.line_number}</td><td class='num'>"
                    f"{number(c.baseline_score)} → {number(c.score)} ({number(c.change, True)})"
                    f"</td><td>{_json(c.inputs)}</td><td>{_json(c.baseline_outputs)}</td>"
                    f"<td>{_json(c.outputs)}</td></tr>")
    rows.append("</table>")
    return "".join(rows)


def _all_lines(result: Any) -> str:
    """Every line's inputs and each run's outputs and status, side by side (collapsed)."""
    runs = result.collected
    if not runs:
        return ""
    numbers = sorted(set().union(*(set(r.outputs) for r in runs)))
    base = runs[0]
    rows = [f"<details><summary>All {len(numbers)} lines, inputs and every run's outputs"
            "</summary><table><tr><th>line</th><th>inputs</th>"
            + "".join(f"<th class='run'>{_e(r.name)}</th>" for r in runs) + "</tr>"]
    for n in numbers:
        cells = [f"<td class='num'>{n}</td><td>{_json(base.inputs.get(n, {}))}</td>"]
        for r in runs:
            if n not in r.outputs:
                cells.append("<td class='muted'>—</td>")
            elif n in r.failed:
                cells.append("<td class='worse'>Failed</td>")
            else:
                cells.append(f"<td>{_json(r.outputs[n])}</td>")
        rows.append("<tr>" + "".join(cells) + "</tr>")
    rows.append("</table></details>")
    return "<h2>Lines</h2>" + "".join(rows)


def render_fragment(result: Any) -> str:
    """The report's body (also what a notebook shows)."""
    a = result.alignment
    parts = [f"<p class='muted'>{len(result.runs)} run(s), {len(a.line_numbers)} aligned line(s),"
             f" baseline <b>{_e(result.baseline)}</b>. Intervals are 95%; p-values are two-sided"
             " and Holm-corrected across all comparisons.</p>"]
    if a.mismatched:
        parts.append(f"<p class='note'>{len(a.mismatched)} line(s) left out because their inputs "
                     "differ between runs.</p>")
    for name, missing in a.missing.items():
        parts.append(f"<p class='note'>{_e(name)} lacks {len(missing)} line(s).</p>")
    if not result.metrics:
        parts.append("<p class='note'>No metric is common to all runs: evaluate them first.</p>")
    for metric in result.metrics:
        parts.append(f"<h2>{_e(metric)}</h2>{_summary_table(result, metric)}<div class='plots'>")
        parts.append(distribution_plot(result, metric))
        for i, run in enumerate(result.runs):
            if run != result.baseline:
                parts.append(difference_plot(result, metric, run, i))
        parts.append("</div>")
    parts.append(f"<h2>Lines whose scores changed most</h2>{_changed_table(result)}")
    parts.append(_all_lines(result))
    return "".join(parts)


def render_html(result: Any, title: str | None = None) -> str:
    heading = title or "pfkit comparison: " + ", ".join(result.runs)
    return ("<!doctype html><html lang='en'><head><meta charset='utf-8'>"
            "<meta name='viewport' content='width=device-width, initial-scale=1'>"
            f"<title>{_e(heading)}</title><style>{STYLE}</style></head><body>"
            f"<h1>{_e(heading)}</h1>{render_fragment(result)}</body></html>")
