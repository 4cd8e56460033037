"""Batch runs: a flow over a dataset, in-process and async, streamed, resumable.

Rows are read lazily and run by ``concurrency`` workers on one event loop; each finished line is
appended to the run folder at once (a crash loses only lines in flight). Only what aggregation
nodes need is kept in memory. ``--resume-from`` reuses the completed lines of an earlier run.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from .._secrets import scrub
from ..engine import AggregationInputs
from ..errors import PfkitError, UserError, error_dict
from ._records import COMPLETED
from ._runner import FinishedLine, dumps
from ._store_api import RunStore

DEFAULT_CONCURRENCY = 16


@dataclass
class RunRequest:
    """Everything ``pfkit run create`` (or ``pfkit.run``) was asked to do."""

    flow: str
    data: str | None = None
    column_mapping: dict[str, Any] = field(default_factory=dict)
    variant: str | dict[str, str] | None = None
    run: str | None = None  # base run, for evaluation runs
    name: str | None = None
    display_name: str | None = None
    description: str | None = None
    tags: dict[str, str] = field(default_factory=dict)
    concurrency: int = DEFAULT_CONCURRENCY
    resume_from: str | None = None
    environment_variables: dict[str, str] = field(default_factory=dict)
    connections: dict[str, str] = field(default_factory=dict)
    cache: str | None = None
    cassette: str | None = None
    line_timeout: float | None = None
    stream: bool = False
    group: str | None = None
    workers: int | None = None  # worker processes (None: what suits the flow)
    init: dict[str, Any] = field(default_factory=dict)  # a flex flow's class init values


def default_run_name(flow_dir: Path, variant_id: str | None) -> str:
    stamp = datetime.now().strftime("%Y%m%d_%H%M%S_%f")
    return safe_name_part(f"{flow_dir.name}_{variant_id or 'variant_0'}") + f"_{stamp}"


def safe_name_part(text: str) -> str:
    """``text`` with every character a run name cannot hold replaced by ``_``."""
    import re

    cleaned = re.sub(r"[^A-Za-z0-9_.\-]", "_", text)[:150]
    return cleaned if cleaned[:1].isalnum() or cleaned[:1] == "_" else f"_{cleaned}"


@dataclass
class BatchOutcome:
    """What the run's lines came to; an observer of finished lines (counts, tokens, the first
    error, aggregation inputs)."""

    completed: int = 0
    failed: int = 0
    reused: int = 0
    canceled: bool = False
    first_error: dict[str, Any] | None = None
    tokens: dict[str, int] = field(default_factory=dict)
    by_model: dict[str, list[int]] = field(default_factory=dict)
    collected: AggregationInputs | None = None

    def on_line_end(self, line: FinishedLine) -> None:
        if self.collected is not None and line.aggregation_values is not None \
                and line.status == COMPLETED:
            self.collected.add(line.line_number, line.aggregation_values)
        usage = line.usage
        if usage:
            for key in ("prompt_tokens", "completion_tokens", "total_tokens"):
                self.tokens[key] = self.tokens.get(key, 0) + int(usage.get(key) or 0)
            for model, (p, c) in (usage.get("by_model") or {}).items():
                entry = self.by_model.setdefault(model, [0, 0])
                entry[0] += p
                entry[1] += c
        if line.status == COMPLETED:
            self.completed += 1
        else:
            self.failed += 1
            if self.first_error is None:
                self.first_error = line.error

    def add_reused(self, line: FinishedLine) -> None:
        self.on_line_end(line)
        self.reused += 1

    @property
    def recorded(self) -> int:
        return self.completed + self.failed


class LineWriter:
    """The run writer as an observer: every finished line is written as it arrives (first of
    the observers: a line that cannot be written stops the run, and is not counted)."""

    def __init__(self, writer: Any) -> None:
        self.writer = writer

    def on_line_end(self, line: FinishedLine) -> None:
        self.writer.write_line(line)


class StreamPrinter:
    """``--stream``: one line on stdout per finished line (outputs already scrubbed)."""

    def on_line_end(self, line: FinishedLine) -> None:
        status = "completed" if line.status == COMPLETED else \
            f"failed: {scrub((line.error or {}).get('message', ''))}"
        print(scrub(f"line {line.line_number} {status} {dumps(line.outputs)}"), flush=True)


class CountedRows:
    """The rows iterator, counting what runners took from it (lines read vs lines sunk)."""

    def __init__(self, rows: Iterator[tuple[int, Any]]) -> None:
        self._rows = rows
        self.read = 0

    def __iter__(self) -> CountedRows:
        return self

    def __next__(self) -> tuple[int, Any]:
        item = next(self._rows)
        self.read += 1
        return item


def summarize_errors(outcome: BatchOutcome, total: int, aggregation_error: dict | None,
                     run_error: dict | None) -> dict[str, Any] | None:
    errors: dict[str, Any] = {}
    if outcome.failed:
        first = (outcome.first_error or {}).get("message", "")
        errors["lines"] = {
            "code": "BulkRunException",
            "message": f"Failed to run {outcome.failed}/{total} lines. First error message is: {first}",
            "failed_lines": outcome.failed,
        }
    if aggregation_error:
        errors["aggregation"] = aggregation_error
    if run_error:
        errors["run"] = run_error
    return errors or None


def line_timeout(value: float | None) -> float | None:
    if value is not None:
        return value
    env = os.environ.get("PF_LINE_TIMEOUT_SEC") or os.environ.get("PFKIT_LINE_TIMEOUT")
    return float(env) if env else 600.0


def run_error_record(exc: BaseException) -> dict[str, Any]:
    data = error_dict(exc)
    if isinstance(exc, UserError):
        data["category"] = "UserError"
    return data


def mapping_warnings(flow: Any, request: RunRequest, mapping: Any,
                     columns: list[str]) -> list[str]:
    """What users trip over: promptflow's rule that a YAML default beats a data column of the
    same name when nothing maps it, and default-mapped columns missing from the data."""
    notes = []
    for name, definition in flow.inputs.items():
        if definition.has_default and name not in request.column_mapping and name in columns:
            notes.append(f"flow input '{name}' has a default in flow.dag.yaml, so the data column "
                         f"'{name}' is not used (promptflow's rule); to use it, pass "
                         f"--column-mapping {name}='${{data.{name}}}'")
    for column in mapping.missing_default_columns(columns):
        notes.append(f"the data has no column '{column}' for flow input '{column}': lines will "
                     f"fail unless mapped, e.g. --column-mapping {column}='${{data.other}}'")
    return notes


class _BaseRunInputs:
    """The inputs of a base run's lines as a dataset part (each row with its line_number)."""

    def __init__(self, store: RunStore, name: str) -> None:
        self.store = store
        self.name = name
        self.label = f"run {name}"

    def records(self) -> Iterator[tuple[int, dict[str, Any]]]:
        for line in self.store.lines(self.name):
            yield line.line_number + 1, {**line.inputs, "line_number": line.line_number}

    def columns(self) -> list[str]:
        for _, row in self.records():
            return list(row)
        return []

    def count(self) -> int:
        return sum(1 for _ in self.store.lines(self.name))


def base_run_inputs(store: RunStore, name: str) -> Any:
    from ..data._readers import Dataset

    return Dataset(f"run {name}", [_BaseRunInputs(store, name)])


def rows_for_run(flow: Any, request: RunRequest, store: RunStore, skip: Mapping[int, Any]
                 ) -> tuple[Iterator[tuple[int, Any]], int | None, list[str]]:
    """The lines to run, lazily: ``(line_number, inputs)`` or ``(line_number, error)``; the total
    when known; warnings about the mapping."""
    from ..data import (
        LINE_FIELDS,
        RUN_LINE,
        ColumnMapping,
        line_fields,
        open_dataset,
        pair_with_base,
    )

    mapping = ColumnMapping.build(flow.inputs, request.column_mapping)
    base_outputs: dict[int, dict] | None = None
    base_inputs: dict[int, dict] | None = None
    base_lines: dict[int, dict] = {}
    wants_lines = mapping.uses_source(RUN_LINE)
    if request.run:
        base = store.get(request.run)
        if base.status != COMPLETED:
            raise UserError(f"base run '{request.run}' is {base.status}, not Completed",
                            code="InvalidBaseRun",
                            hint="Evaluate a completed run (resume it first with --resume-from).")
        base_outputs, base_inputs = {}, {}
        for line in store.lines(request.run):
            if line.status == COMPLETED:
                base_outputs[line.line_number] = line.outputs
                if wants_lines:
                    base_lines[line.line_number] = line_fields(line.duration, line.usage)
            base_inputs[line.line_number] = line.inputs
    if request.data:
        dataset = open_dataset(request.data)
    elif request.run:
        dataset = base_run_inputs(store, request.run)
    else:
        raise UserError("a run needs --data (or --run for an evaluation run)", code="NoData",
                        hint="Pass  --data path/to/data.jsonl.")
    columns = dataset.columns()
    warnings = mapping_warnings(flow, request, mapping, columns) if not request.run else []
    mapping.check(columns,
                  sorted({k for o in (base_outputs or {}).values() for k in o}) if request.run else None,
                  sorted({k for i in (base_inputs or {}).values() for k in i}) if request.run else None,
                  list(LINE_FIELDS) if request.run else None)
    total = dataset.count()

    def generate() -> Iterator[tuple[int, Any]]:
        rows = iter(dataset)
        if request.run:
            paired = pair_with_base(rows, base_outputs or {}, base_inputs or {})
        else:
            paired = ((row, None, None) for row in rows)
        paired = iter(paired)
        last = -1
        while True:
            try:
                row, outputs, inputs = next(paired)
            except StopIteration:
                return
            except PfkitError:
                raise
            except Exception as exc:  # noqa: BLE001 - a reader that broke on a hostile row
                raise UserError(
                    f"cannot read the data {dataset.source} after line {last + 1} "
                    f"(row {last + 2}): {type(exc).__name__}: {str(exc)[:300]}",
                    code="DataReadError",
                    hint="Fix or remove that row (nesting of thousands of levels, a broken "
                         "file), then finish with --resume-from.") from None
            last = row.index
            if row.index in skip:
                continue
            try:
                yield row.index, mapping.resolve(row.data, line_number=row.index,
                                                 run_outputs=outputs, run_inputs=inputs,
                                                 run_line=base_lines.get(row.index))
            except PfkitError as exc:
                yield row.index, exc
            except Exception as exc:  # noqa: BLE001 - an internal error is this line's error
                yield row.index, PfkitError(
                    f"internal error while reading line {row.index}: {type(exc).__name__}: "
                    f"{str(exc)[:300]}", code="InternalError")

    if request.run and base_outputs is not None:
        total = len(base_outputs) if total is None else min(total, len(base_outputs))
    return generate(), total, warnings
