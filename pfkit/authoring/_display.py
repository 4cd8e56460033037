"""Rich display in Jupyter: runs and metrics as HTML tables, progress bars that update in place.

Everything here is plain HTML (no script, no stylesheet from the network). Values shown come
from data and model outputs: every one is escaped.
"""

from __future__ import annotations

import json
import sys
from html import escape
from typing import Any

_MAX_ROWS = 20
_MAX_CELL = 200

_STYLE = ("<style>.pfkit-table{border-collapse:collapse;font-size:12px;margin:4px 0}"
          ".pfkit-table th,.pfkit-table td{border:1px solid #ccc;padding:3px 6px;"
          "text-align:left;vertical-align:top}.pfkit-table th{background:#f3f3f3}</style>")


def _cell(value: Any) -> str:
    if isinstance(value, float):
        text = f"{value:.4g}"
    elif isinstance(value, str):
        text = value
    else:
        try:
            text = json.dumps(value, ensure_ascii=False, default=repr)
        except (TypeError, ValueError):
            text = repr(value)
    if len(text) > _MAX_CELL:
        text = text[:_MAX_CELL - 1] + "\u2026"
    return escape(text)


def html_table(rows: list[dict[str, Any]], columns: list[str] | None = None, *,
               caption: str | None = None, limit: int = _MAX_ROWS) -> str:
    columns = columns or list(dict.fromkeys(k for row in rows for k in row))
    head = "".join(f"<th>{escape(str(c))}</th>" for c in columns)
    body = "".join("<tr>" + "".join(f"<td>{_cell(row.get(c, ''))}</td>" for c in columns)
                   + "</tr>" for row in rows[:limit])
    more = (f'<tr><td colspan="{len(columns)}">\u2026 {len(rows) - limit} more rows</td></tr>'
            if len(rows) > limit else "")
    cap = f"<caption>{escape(caption)}</caption>" if caption else ""
    return f'<table class="pfkit-table">{cap}<tr>{head}</tr>{body}{more}</table>'


class Metrics(dict):
    """A run's metrics: a plain dict that shows as a table in Jupyter."""

    def _repr_html_(self) -> str:
        return _STYLE + html_table([{"metric": k, "value": v} for k, v in self.items()],
                                   ["metric", "value"])


def metrics_html(metrics: dict[str, Any]) -> str:
    return Metrics(metrics)._repr_html_()


def run_html(run: Any) -> str:
    """A run: its name, status, line counts and metrics, then its first lines."""
    record = run.record
    lines = run.lines()
    done = sum(1 for line in lines if line.get("status") == "Completed")
    failed = len(lines) - done
    summary = [{"run": run.name, "status": record.status, "flow": record.flow_name or "",
                "lines": len(lines), "completed": done, "failed": failed}]
    parts = [_STYLE, html_table(summary)]
    metrics = run.metrics()
    if metrics:
        parts.append(html_table([{"metric": k, "value": v} for k, v in metrics.items()],
                                ["metric", "value"], caption="metrics"))
    if record.error:
        parts.append(f"<p><b>error:</b> {_cell((record.error or {}).get('message', ''))}</p>")
    if lines:
        rows = []
        for line in lines:
            row: dict[str, Any] = {"line": line.get("line_number"), "status": line.get("status")}
            row.update({f"inputs.{k}": v for k, v in (line.get("inputs") or {}).items()})
            row.update({f"outputs.{k}": v for k, v in (line.get("outputs") or {}).items()})
            if line.get("error"):
                row["error"] = (line["error"] or {}).get("message", "")
            rows.append(row)
        parts.append(html_table(rows, caption="lines"))
    return "".join(parts)


def in_notebook() -> bool:
    """True inside a Jupyter kernel (an IPython kernel app is running)."""
    shell = sys.modules.get("IPython")
    if shell is None:
        return False
    try:
        ip = shell.get_ipython()
    except Exception:  # noqa: BLE001 - IPython without a shell
        return False
    return ip is not None and "IPKernelApp" in getattr(ip, "config", {})


class TqdmProgress:
    """A run observer drawing a tqdm progress bar (``tqdm.auto``: a widget in Jupyter when
    ipywidgets is installed, a text bar redrawn in place otherwise)."""

    def __init__(self, *, label: str | None = None) -> None:
        self.label = label
        self.bar: Any = None
        self.failed = 0

    def on_run_start(self, event: Any) -> None:
        import warnings

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # "IProgress not found": the text bar is fine
            from tqdm.auto import tqdm

            self.bar = tqdm(total=event.total, initial=event.reused,
                            desc=self.label or event.name, unit="line", leave=True,
                            file=sys.stderr)

    def on_line_end(self, line: Any) -> None:
        if self.bar is None:
            return
        if line.status != "Completed":
            self.failed += 1
            self.bar.set_postfix(failed=self.failed, refresh=False)
        self.bar.update(1)

    def on_run_end(self, event: Any) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None


def progress_observer(label: str | None = None) -> Any | None:
    """A tqdm bar when tqdm is installed; None otherwise (the caller keeps pfkit's own line)."""
    try:
        import tqdm  # noqa: F401
    except ImportError:
        return None
    return TqdmProgress(label=label)


def notebook_progress(label: str | None = None) -> Any | None:
    """Inside a Jupyter kernel, a tqdm bar (None elsewhere, or without tqdm): what
    ``pfkit.run(..., progress=True)`` draws there instead of its terminal line."""
    return progress_observer(label) if in_notebook() else None
