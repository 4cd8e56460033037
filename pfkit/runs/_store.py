"""The run store: a SQLite registry of runs plus one folder per run in promptflow's layout.

``$PFKIT_HOME/runs.sqlite`` (WAL, one writer at a time) holds one record per run;
``$PFKIT_HOME/runs/<name>/`` holds its files::

    lines.jsonl                 one record per finished line, appended as lines finish
    node_outputs/<node>.jsonl   per-node results, one file per node (not one per line)
    flow_outputs/output.jsonl   outputs of the successful lines, sorted by line number
    inputs.jsonl                resolved inputs of every line (with line_number)
    metrics.json, error.json    run metrics; errors (failed lines, aggregation, run failure)
    logs.txt, meta.json         run log; batch metadata
    snapshot/                   the flow as it ran (variant resolved)

Records carry a schema version; migrations only add columns.
"""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import threading
import time
from array import array
from pathlib import Path
from typing import Any

from ..connections._store import pfkit_home
from ..errors import UserError

SCHEMA_VERSION = 1
NOT_STARTED, PREPARING, RUNNING = "NotStarted", "Preparing", "Running"
COMPLETED, FAILED, CANCELED = "Completed", "Failed", "Canceled"

_COLUMNS = {  # name -> declaration; new columns are only ever appended
    "name": "TEXT PRIMARY KEY",
    "schema_version": "INTEGER NOT NULL DEFAULT 1",
    "status": "TEXT NOT NULL",
    "created_on": "REAL NOT NULL",
    "archived": "INTEGER NOT NULL DEFAULT 0",
    "run_group": "TEXT",
    "record": "TEXT NOT NULL",
}


class RunNotFound(UserError):
    default_code = "RunNotFound"


def dumps(value: Any) -> str:
    """JSON for records: UTF-8 kept, NaN/Infinity as promptflow writes them, odd values repr'd."""
    return json.dumps(value, ensure_ascii=False, allow_nan=True, default=repr)


class RunStore:
    def __init__(self, home: Path | None = None) -> None:
        self.home = (home or pfkit_home()).expanduser()
        self.runs_dir = self.home / "runs"
        self._lock = threading.Lock()
        self._conn: sqlite3.Connection | None = None

    # -- database ---------------------------------------------------------------------------

    @property
    def db(self) -> sqlite3.Connection:
        if self._conn is None:
            self.home.mkdir(parents=True, exist_ok=True)
            conn = sqlite3.connect(self.home / "runs.sqlite", isolation_level=None,
                                   check_same_thread=False, timeout=30)
            conn.execute("PRAGMA journal_mode = WAL")
            conn.execute("PRAGMA busy_timeout = 30000")
            cols = ", ".join(f"{k} {v}" for k, v in _COLUMNS.items())
            conn.execute(f"CREATE TABLE IF NOT EXISTS runs ({cols})")
            existing = {row[1] for row in conn.execute("PRAGMA table_info(runs)")}
            for name, decl in _COLUMNS.items():
                if name not in existing:
                    conn.execute(f"ALTER TABLE runs ADD COLUMN {name} {decl.replace('PRIMARY KEY', '')}")
            conn.execute("CREATE TABLE IF NOT EXISTS schema_info (version INTEGER NOT NULL)")
            if conn.execute("SELECT COUNT(*) FROM schema_info").fetchone()[0] == 0:
                conn.execute("INSERT INTO schema_info VALUES (?)", (SCHEMA_VERSION,))
            self._conn = conn
        return self._conn

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def run_dir(self, name: str) -> Path:
        return self.runs_dir / name

    def exists(self, name: str) -> bool:
        return self.db.execute("SELECT 1 FROM runs WHERE name = ?", (name,)).fetchone() is not None

    def save(self, record: dict[str, Any]) -> None:
        """Insert or replace a run record (the whole record is kept as JSON)."""
        record["schema_version"] = SCHEMA_VERSION
        with self._lock:
            self.db.execute(
                "INSERT OR REPLACE INTO runs (name, schema_version, status, created_on, archived, "
                "run_group, record) VALUES (?, ?, ?, ?, ?, ?, ?)",
                (record["name"], SCHEMA_VERSION, record["status"], record["created_on"],
                 int(record.get("archived", False)), record.get("group"), dumps(record)),
            )

    def update(self, name: str, **fields: Any) -> dict[str, Any]:
        record = self.get(name)
        record.update(fields)
        self.save(record)
        return record

    def get(self, name: str) -> dict[str, Any]:
        row = self.db.execute("SELECT record FROM runs WHERE name = ?", (name,)).fetchone()
        if row is None:
            raise RunNotFound(f"run '{name}' does not exist", hint="List runs with  pfkit run list.")
        return json.loads(row[0])

    def list(self, *, max_results: int | None = 50, archived: str = "exclude",
             group: str | None = None) -> list[dict[str, Any]]:
        """Newest first. ``archived``: exclude, include or only."""
        where, params = [], []
        if archived == "exclude":
            where.append("archived = 0")
        elif archived == "only":
            where.append("archived = 1")
        if group:
            where.append("run_group = ?")
            params.append(group)
        sql = "SELECT record FROM runs" + (f" WHERE {' AND '.join(where)}" if where else "")
        sql += " ORDER BY created_on DESC"
        if max_results:
            sql += f" LIMIT {int(max_results)}"
        return [json.loads(row[0]) for row in self.db.execute(sql, params)]

    def delete(self, name: str) -> None:
        self.get(name)
        with self._lock:
            self.db.execute("DELETE FROM runs WHERE name = ?", (name,))
        shutil.rmtree(self.run_dir(name), ignore_errors=True)

    # -- run folder reading -----------------------------------------------------------------

    def line_records(self, name: str) -> dict[int, dict[str, Any]]:
        """The last record of each line (a resumed run may hold a line twice)."""
        return read_line_records(self.run_dir(name) / "lines.jsonl")


_PREFIX = '{"line_number": '


class LineFile:
    """A JSONL file of line records (``lines.jsonl`` or a node file), read by line number
    without holding it in memory: one pass builds ``line_number -> offset`` (the last record of
    a line wins: a resumed run may hold it twice; a record cut by a crash is ignored), then
    records are read one at a time."""

    def __init__(self, path: Path) -> None:
        self.path = path
        # offsets[n] = where line n's record starts, -1 when absent: 8 bytes a line
        self.offsets = array("q")
        if not path.is_file():
            return
        with path.open("rb") as fh:
            offset = 0
            for raw in fh:
                if not raw.endswith(b"\n"):
                    break
                number = _line_number(raw)
                if number is not None and number >= 0:
                    if number >= len(self.offsets):
                        self.offsets.extend([-1] * (number + 1 - len(self.offsets)))
                    self.offsets[number] = offset
                offset += len(raw)

    def __contains__(self, number: int) -> bool:
        return 0 <= number < len(self.offsets) and self.offsets[number] >= 0

    def numbers(self):
        return (n for n, offset in enumerate(self.offsets) if offset >= 0)

    def iter_sorted(self):
        """``(line_number, record)`` in line order."""
        if not self.offsets:
            return
        with self.path.open("rb") as fh:
            for number in self.numbers():
                fh.seek(self.offsets[number])
                yield number, json.loads(fh.readline())

    def get(self, number: int) -> dict[str, Any] | None:
        if number not in self:
            return None
        with self.path.open("rb") as fh:
            fh.seek(self.offsets[number])
            return json.loads(fh.readline())


def _line_number(raw: bytes) -> int | None:
    """Records start with ``{"line_number": N,`` (pfkit writes them so): read N without parsing
    the whole record; anything else is parsed."""
    text = raw.decode("utf-8", errors="replace")
    if text.startswith(_PREFIX):
        end = text.find(",", len(_PREFIX))
        try:
            return int(text[len(_PREFIX):end])
        except ValueError:
            pass
    try:
        return int(json.loads(text)["line_number"])
    except (ValueError, KeyError, TypeError):
        return None


def read_line_records(path: Path) -> dict[int, dict[str, Any]]:
    """Every line's last record, in line order (small runs; large ones use LineFile)."""
    return dict(LineFile(path).iter_sorted())


class RunWriter:
    """Appends line and node records as lines finish (one write per record, so a killed process
    loses only the lines in flight), and writes the summary files at the end."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "node_outputs").mkdir(exist_ok=True)
        self._lines = open(folder / "lines.jsonl", "a", encoding="utf-8")  # noqa: SIM115
        self._nodes: dict[str, Any] = {}
        self._log = open(folder / "logs.txt", "a", encoding="utf-8")  # noqa: SIM115

    def log(self, message: str) -> None:
        stamp = time.strftime("%Y-%m-%d %H:%M:%S")
        self._log.write(f"[{stamp}] {message}\n")
        self._log.flush()

    def _node_file(self, node: str):
        fh = self._nodes.get(node)
        if fh is None:
            fh = self._nodes[node] = open(  # noqa: SIM115
                self.folder / "node_outputs" / f"{node}.jsonl", "a", encoding="utf-8")
        return fh

    def write_line(self, record: dict[str, Any], node_records: dict[str, dict[str, Any]]) -> None:
        self.write_encoded(dumps(record), {n: dumps(r) for n, r in node_records.items()})

    def write_encoded(self, record_json: str, node_json: dict[str, str]) -> None:
        """A line's records as JSON text (node files first: a line in lines.jsonl is whole)."""
        for node, text in node_json.items():
            fh = self._node_file(node)
            fh.write(text + "\n")
            fh.flush()
        self._lines.write(record_json + "\n")
        self._lines.flush()

    def finish(self, metrics: dict[str, Any], errors: dict[str, Any] | None,
               meta: dict[str, Any]) -> None:
        """Summary files, in promptflow's layout, from the line records (one at a time: memory
        stays flat however many lines the run has)."""
        self.close()
        outputs_dir = self.folder / "flow_outputs"
        outputs_dir.mkdir(exist_ok=True)
        with open(outputs_dir / "output.jsonl", "w", encoding="utf-8") as out, \
                open(self.folder / "inputs.jsonl", "w", encoding="utf-8") as inputs:
            for number, rec in LineFile(self.folder / "lines.jsonl").iter_sorted():
                if rec["status"] == COMPLETED:
                    out.write(dumps({"line_number": number, **rec["outputs"]}) + "\n")
                inputs.write(dumps({**rec["inputs"], "line_number": number}) + "\n")
        (self.folder / "metrics.json").write_text(dumps(metrics), encoding="utf-8")
        error_file = self.folder / "error.json"
        if errors:
            error_file.write_text(json.dumps(errors, ensure_ascii=False, indent=2, default=repr),
                                  encoding="utf-8")
        elif error_file.exists():
            error_file.unlink()
        (self.folder / "meta.json").write_text(dumps(meta), encoding="utf-8")

    def close(self) -> None:
        for fh in [self._lines, self._log, *self._nodes.values()]:
            if not fh.closed:
                fh.close()


def copy_snapshot(source_dir: Path, destination: Path, resolved_yaml: str) -> None:
    """The flow as it ran: its folder (without caches and virtualenvs) and the flow YAML with
    the chosen variants written into ``nodes``."""
    ignore = shutil.ignore_patterns("__pycache__", ".promptflow", ".git", ".venv", "*.pyc",
                                    "pfkit.cassette.jsonl")
    shutil.copytree(source_dir, destination, ignore=ignore, dirs_exist_ok=True)
    (destination / "flow.dag.yaml").write_text(resolved_yaml, encoding="utf-8")
    os.utime(destination)
