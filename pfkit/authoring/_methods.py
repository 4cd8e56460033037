"""What ``flow.run``, ``flow.evaluate`` and ``flow.compare`` do: the public ``pfkit.run``,
``pfkit.evaluate`` and ``pfkit.compare`` with the flow's folder, variant and models filled in,
and a progress bar that updates in place."""

from __future__ import annotations

import json
import tempfile
from collections.abc import Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

from ..errors import UserError


def data_file(data: Any) -> str:
    """A dataset path as given, or a list of input dicts written to a private .jsonl file."""
    if isinstance(data, (str, Path)):
        return str(data)
    if isinstance(data, Mapping):
        data = [data]
    if isinstance(data, Sequence) and all(isinstance(row, Mapping) for row in data):
        if not data:
            raise UserError("the data has no rows", code="EmptyData",
                            hint="Give a file or a list of input dicts with at least one row.")
        folder = Path(tempfile.mkdtemp(prefix="pfkit-data-"))
        file = folder / "data.jsonl"
        with file.open("w", encoding="utf-8") as out:
            for row in data:
                out.write(json.dumps(dict(row), ensure_ascii=False, default=str) + "\n")
        return str(file)
    raise UserError(f"data must be a file path or a list of dicts, not {type(data).__name__}",
                    code="InvalidData", hint="e.g. flow.run(data=[{'question': 'Hi'}]).")


def _progress(kwargs: dict[str, Any]) -> None:
    """``progress=True`` (the default here): a tqdm bar when tqdm is installed, else pfkit's
    progress line."""
    wanted = kwargs.pop("progress", True)
    if not wanted:
        kwargs["progress"] = False
        return
    from ._display import progress_observer

    bar = progress_observer()
    if bar is None:
        kwargs["progress"] = True
        return
    kwargs["progress"] = False
    kwargs["observers"] = (*tuple(kwargs.get("observers") or ()), bar)


def run_flow(flow: Any, data: Any, **kwargs: Any) -> Any:
    from ..runs._api import run

    options = getattr(flow, "load_options", {})
    for key in ("variant", "models", "cache", "cassette", "connections"):
        if options.get(key) is not None:
            kwargs.setdefault(key, options[key])
    kwargs.setdefault("session", flow.session)
    _progress(kwargs)
    return run(flow.executable.code_dir, data_file(data), **kwargs)


def evaluate_flow(flow: Any, run: Any = None, *, evaluators: Mapping[str, Any],
                  data: Any = None, column_mapping: Mapping[str, Any] | None = None,
                  **kwargs: Any) -> Any:
    from ..evaluate import evaluate

    if run is None:
        if data is None:
            raise UserError("flow.evaluate needs run=... or data=...", code="NoData",
                            hint="Pass a finished run, or data to run the flow on first.")
        run = run_flow(flow, data, column_mapping=column_mapping,
                       progress=kwargs.get("progress", True))
    kwargs.setdefault("progress", False)
    kwargs.setdefault("store", flow.session.store)
    return evaluate(run=run, data=data_file(data) if data is not None else None,
                    evaluators=evaluators, **kwargs)


def compare_flow(flow: Any, runs: Any = None, *, data: Any = None,
                 evaluators: Mapping[str, Any] | None = None,
                 evaluator_config: Mapping[str, Any] | None = None,
                 metrics: Sequence[str] | None = None, baseline: str | None = None,
                 name: str | None = None, **run_options: Any) -> Any:
    """Compare ``runs``; or, given ``data``, run every variant combination of the flow over
    it, evaluate each run with ``evaluators`` and compare them."""
    from ..compare import compare

    store = flow.session.store
    if runs is not None:
        return compare(list(runs), metrics=metrics, baseline=baseline, store=store)
    if data is None:
        raise UserError("flow.compare needs runs=[...] or data=...", code="NothingToCompare",
                        hint="Pass runs to compare, or data to run every variant on.")
    from ..graph import variant_combinations
    from ..runs._batch import safe_name_part
    from ..spec import load_flow_spec

    combos = variant_combinations(load_flow_spec(flow.executable.file))  # as written
    if not combos or combos == [{}]:
        raise UserError("the flow has no nodes with variants", code="UsageError",
                        hint="Compare runs instead: flow.compare([run_a, run_b]).")
    group = name or f"{safe_name_part(flow.executable.code_dir.name)}_variants_" \
                    f"{datetime.now():%Y%m%d_%H%M%S_%f}"
    file = data_file(data)
    made = []
    for combo in combos:
        label = "-".join(f"{node}.{vid}" for node, vid in combo.items())
        run = run_flow(flow, file, variant=combo, name=f"{group}__{label}", **run_options)
        if evaluators:
            from ..evaluate import evaluate

            evaluate(run=run, evaluators=evaluators, evaluator_config=evaluator_config,
                     store=store)
        made.append(run)
    return compare(made, metrics=metrics, baseline=baseline, store=store)
