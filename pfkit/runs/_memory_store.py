"""A run store in memory: for tests, notebooks and servers that keep nothing on disk. It holds
the same records as the local store and passes the same contract tests."""

from __future__ import annotations

import copy
import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from .._secrets import scrub, scrub_value
from ._owner import current_owner
from ._records import ACTIVE, LineRecord, RunRecord
from ._runner import FinishedLine
from ._store_api import RunExists, RunNotFound, UserError, check_run_name


class _Run:
    __slots__ = ("record", "lines", "nodes", "metrics", "errors", "meta", "log", "snapshot")

    def __init__(self, record: RunRecord) -> None:
        self.record = record
        self.lines: dict[int, str] = {}  # line number -> record JSON (last one wins)
        self.nodes: dict[str, dict[int, str]] = {}
        self.metrics: dict[str, Any] = {}
        self.errors: dict[str, Any] | None = None
        self.meta: dict[str, Any] = {}
        self.log: list[str] = []
        self.snapshot: str | None = None


class InMemoryRunStore:
    def __init__(self) -> None:
        self._runs: dict[str, _Run] = {}
        self._lock = threading.RLock()

    def _run(self, name: str) -> _Run:
        check_run_name(name)
        run = self._runs.get(name)
        if run is None:
            raise RunNotFound(f"run '{name}' does not exist", hint="List runs with  pfkit run list.")
        return run

    @staticmethod
    def _copy(record: RunRecord) -> RunRecord:
        return RunRecord.from_dict(scrub_value(copy.deepcopy(record.to_dict())))

    def create(self, record: RunRecord) -> None:
        check_run_name(record.name)
        if record.group is not None:
            check_run_name(record.group, "group name")
        with self._lock:
            if record.name in self._runs:
                raise RunExists(f"a run named '{record.name}' already exists",
                                hint="Pick another --name, or delete it first.")
            record.owner = current_owner()
            record.heartbeat = time.time()
            self._runs[record.name] = _Run(self._copy(record))

    def get(self, name: str) -> RunRecord:
        with self._lock:
            return self._copy(self._run(name).record)

    def exists(self, name: str) -> bool:
        check_run_name(name)
        return name in self._runs

    def save(self, record: RunRecord) -> None:
        with self._lock:
            self._run(record.name).record = self._copy(record)

    def update(self, name: str, **fields: Any) -> RunRecord:
        with self._lock:
            record = self.get(name)
            for key, value in fields.items():
                if hasattr(record, key) and key != "extra":
                    setattr(record, key, value)
                else:
                    record.extra[key] = value
            self.save(record)
            return record

    def list(self, *, max_results: int | None = 50, archived: str = "exclude",
             group: str | None = None) -> list[RunRecord]:
        with self._lock:
            records = [self._copy(r.record) for r in self._runs.values()]
        if archived == "exclude":
            records = [r for r in records if not r.archived]
        elif archived == "only":
            records = [r for r in records if r.archived]
        if group:
            records = [r for r in records if r.group == group]
        records.sort(key=lambda r: r.created_on, reverse=True)
        return records[:max_results] if max_results else records

    def delete(self, name: str) -> None:
        with self._lock:
            run = self._run(name)
            if run.record.status in ACTIVE:
                raise UserError(f"run '{name}' is still running", code="RunActive",
                                hint="Stop it first, then delete it.")
            del self._runs[name]

    def open_writer(self, name: str) -> InMemoryRunWriter:
        return InMemoryRunWriter(self, self._run(name))

    def lines(self, name: str) -> Iterator[LineRecord]:
        return map(LineRecord.from_dict, self.line_dicts(name))

    def line_dicts(self, name: str) -> Iterator[dict[str, Any]]:
        run = self._run(name)
        for number in sorted(run.lines):
            yield json.loads(run.lines[number])

    def finished_lines(self, name: str, *, status: str | None = None) -> Iterator[FinishedLine]:
        run = self._run(name)
        for number in sorted(run.lines):
            text = run.lines[number]
            record = json.loads(text)
            if status is not None and record.get("status") != status:
                continue
            nodes = {node: by_line[number] for node, by_line in run.nodes.items()
                     if number in by_line}
            yield FinishedLine(number, record.get("status", ""), text, nodes, record.get("error"),
                               record.get("outputs") or {}, record.get("aggregation_inputs"),
                               record.get("usage"))

    def metrics(self, name: str) -> dict[str, Any]:
        return copy.deepcopy(self._run(name).metrics)

    def location(self, name: str | None = None) -> str:
        return f"memory:{name}" if name else "memory"

    def run_path(self, name: str) -> Path | None:
        self._run(name)
        return None

    def logs(self, name: str) -> list[str]:
        return list(self._run(name).log)


class InMemoryRunWriter:
    def __init__(self, store: InMemoryRunStore, run: _Run) -> None:
        self.store = store
        self.run = run
        self.closed = False

    def write_line(self, line: FinishedLine) -> None:
        with self.store._lock:
            for node, text in line.node_json.items():
                self.run.nodes.setdefault(node, {})[line.line_number] = text
            self.run.lines[line.line_number] = line.record_json

    def log(self, message: str) -> None:
        self.run.log.append(scrub(message))

    def save_snapshot(self, source_dir: Path, resolved_yaml: str,
                      file_name: str = "flow.dag.yaml") -> None:
        self.run.snapshot = resolved_yaml

    def finish(self, metrics: dict[str, Any], errors: dict[str, Any] | None,
               meta: dict[str, Any]) -> None:
        self.close()
        self.run.metrics = scrub_value(copy.deepcopy(metrics))
        self.run.errors = scrub_value(copy.deepcopy(errors))
        self.run.meta = dict(meta)

    def close(self) -> None:
        self.closed = True
