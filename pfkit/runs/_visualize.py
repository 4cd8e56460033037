"""One self-contained HTML page comparing runs: metrics side by side and every line's inputs and
outputs. No CDN, no script from elsewhere: it opens offline. All user text is HTML-escaped."""

from __future__ import annotations

import html
import json
from typing import Any

_STYLE = """
body{font:14px/1.4 system-ui,sans-serif;margin:24px;color:#1b1f24}
h1{font-size:20px}h2{font-size:16px;margin-top:28px}
table{border-collapse:collapse;margin:8px 0;font-size:13px}
th,td{border:1px solid #d0d7de;padding:4px 8px;vertical-align:top;text-align:left;max-width:420px}
th{background:#f6f8fa;position:sticky;top:0}
td pre{white-space:pre-wrap;margin:0;font:12px ui-monospace,monospace}
.failed{background:#fff1f0}.status-Failed{color:#cf222e}.status-Completed{color:#1a7f37}
input{margin:8px 0;padding:4px 8px;width:320px}
"""

_FILTER = """
const box=document.getElementById('filter');
box.addEventListener('input',()=>{const q=box.value.toLowerCase();
for(const r of document.querySelectorAll('#lines tbody tr')){
r.style.display=r.textContent.toLowerCase().includes(q)?'':'none';}});
"""


def _cell(value: Any) -> str:
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False, indent=1,
                                                           default=repr)
    return f"<td><pre>{html.escape(text)}</pre></td>"


def render_runs(runs: list[Any]) -> str:
    names = [run.name for run in runs]
    parts = ["<!doctype html><html><head><meta charset='utf-8'>",
             f"<title>pfkit runs: {html.escape(', '.join(names))}</title>",
             f"<style>{_STYLE}</style></head><body>",
             f"<h1>Runs: {html.escape(', '.join(names))}</h1>"]

    # run summary and metrics
    metrics = [run.metrics() for run in runs]
    keys = sorted({k for m in metrics for k in m})
    parts.append("<h2>Summary</h2><table><tr><th></th>"
                 + "".join(f"<th>{html.escape(n)}</th>" for n in names) + "</tr>")
    summary_rows = [("status", [r.status for r in runs]),
                    ("flow", [r.info.get("flow_name") for r in runs]),
                    ("variant", [r.info.get("variant") for r in runs])]
    for label in ("__pf__.lines.completed", "__pf__.lines.failed", "total_tokens", "duration"):
        summary_rows.append((label, [r.info["properties"]["system_metrics"].get(label)
                                     for r in runs]))
    summary_rows += [(f"metric: {k}", [m.get(k) for m in metrics]) for k in keys]
    for label, values in summary_rows:
        parts.append(f"<tr><th>{html.escape(label)}</th>" + "".join(_cell(v) for v in values)
                     + "</tr>")
    parts.append("</table>")

    # lines side by side
    per_run = [{rec["line_number"]: rec for rec in run.lines()} for run in runs]
    numbers = sorted({n for lines in per_run for n in lines})
    first = next((lines for lines in per_run if lines), {})
    input_keys = sorted({k for rec in first.values() for k in rec["inputs"]})
    output_keys = sorted({k for lines in per_run for rec in lines.values()
                          for k in (rec["outputs"] or {})})
    parts.append("<h2>Lines</h2><input id='filter' placeholder='filter lines…'>")
    parts.append("<table id='lines'><thead><tr><th>line</th>"
                 + "".join(f"<th>inputs.{html.escape(k)}</th>" for k in input_keys)
                 + "".join(f"<th>{html.escape(n)}<br>outputs.{html.escape(k)}</th>"
                           for n in names for k in output_keys)
                 + "".join(f"<th>{html.escape(n)}<br>status</th>" for n in names)
                 + "</tr></thead><tbody>")
    for number in numbers:
        recs = [lines.get(number) for lines in per_run]
        base = next((r for r in recs if r), {})
        failed = any(r and r["status"] != "Completed" for r in recs)
        row = [f"<tr class='{'failed' if failed else ''}'><td>{number}</td>"]
        row += [_cell(base.get("inputs", {}).get(k)) for k in input_keys]
        for rec in recs:
            for k in output_keys:
                row.append(_cell((rec or {}).get("outputs", {}).get(k)) if rec else "<td></td>")
        for rec in recs:
            status = rec["status"] if rec else "—"
            error = (rec or {}).get("error") or {}
            title = html.escape(error.get("message", ""), quote=True)
            row.append(f"<td class='status-{html.escape(status)}' title='{title}'>"
                       f"{html.escape(status)}</td>")
        parts.append("".join(row) + "</tr>")
    parts.append(f"</tbody></table><script>{_FILTER}</script></body></html>")
    return "".join(parts)
