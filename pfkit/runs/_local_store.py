"""The local run store: a SQLite registry of runs plus one folder per run in promptflow's layout.

``$PFKIT_HOME/runs.sqlite`` (WAL, one writer at a time) holds one record per run;
``$PFKIT_HOME/runs/<name>/`` holds its files (this module is the only code that knows them)::

    lines.jsonl                 one record per finished line, appended as lines finish
    node_outputs/<node>.jsonl   per-node results, one file per node (not one per line)
    flow_outputs/output.jsonl   outputs of the successful lines, sorted by line number
    inputs.jsonl                resolved inputs of every line (with line_number)
    metrics.json, error.json    run metrics; errors (failed lines, aggregation, run failure)
    logs.txt, meta.json         run log; batch metadata
    snapshot/                   the flow as it ran (variant resolved)

Records carry a schema version; migrations only add columns, so older stores still open.
"""

from __future__ import annotations

import asyncio
import errno
import json
import os
import re
import shutil
import sqlite3
import threading
import time
from array import array
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from .._names import is_safe_name
from .._secrets import scrub, scrub_value
from ..connections._store import pfkit_home
from ..nodes._images import images_to_files
from ._owner import HEARTBEAT_EVERY, current_owner, describe, owner_gone
from ._records import ACTIVE, CANCELED, COMPLETED, SCHEMA_VERSION, LineRecord, RunRecord
from ._runner import FinishedLine, dumps
from ._store_api import RunExists, RunNotFound, StoreWriteError, UserError, check_run_name

_COLUMNS = {  # name -> declaration; new columns are only ever appended
    "name": "TEXT PRIMARY KEY",
    "schema_version": "INTEGER NOT NULL DEFAULT 1",
    "status": "TEXT NOT NULL",
    "created_on": "REAL NOT NULL",
    "archived": "INTEGER NOT NULL DEFAULT 0",
    "run_group": "TEXT",
    "record": "TEXT NOT NULL",
    "heartbeat": "REAL",
}


def store_write_error(path: Path, exc: BaseException, run: str | None = None) -> StoreWriteError:
    """A clear error for a write the store could not make (full disk, read-only folder...)."""
    number = getattr(exc, "errno", None)
    reason = getattr(exc, "strerror", None) or str(exc) or type(exc).__name__
    if number in (errno.ENOSPC, errno.EDQUOT) or "full" in str(exc).lower():
        reason = "no space left on the device"
    code = f" ({errno.errorcode.get(number, number)})" if number else ""
    hint = "Free space (or fix the folder's permissions) where the run store lives"
    if run:
        hint += (f"; the lines written so far are kept: finish the run with  pfkit run create "
                 f"... --resume-from {run}")
    return StoreWriteError(f"cannot write to the run store at {path}: {reason}{code}",
                           hint=hint + ".")


def _resume_command(record: RunRecord) -> str:
    parts = ["pfkit run create"]
    if record.flow_path:
        parts.append(f"--flow {record.flow_path}")
    if record.data:
        parts.append(f"--data {record.data}")
    parts.append(f"--resume-from {record.name}")
    return " ".join(parts)


def _process_gone_detail(record: RunRecord, why: str | None = None) -> str:
    why = why or (f"{describe(record.owner)} ended without finishing the run (killed, crashed, "
                  f"its machine stopped, or it could not write its record)")
    return (f"process gone: {why}; the lines it finished are saved: resume with  "
            f"{_resume_command(record)}")


OLD_RUN_SILENCE = 3600.0  # seconds: a run with no owner record and no write since is over


class LocalRunStore:
    """Runs in ``home`` (default ``$PFKIT_HOME``, ``~/.pfkit``)."""

    def __init__(self, home: Path | str | None = None) -> None:
        self._home = Path(home).expanduser() if home else None
        self._lock = threading.RLock()
        self._conn: sqlite3.Connection | None = None
        self._conn_path: Path | None = None

    @property
    def home(self) -> Path:
        """The given folder, else ``$PFKIT_HOME`` as it is now (a long-lived default store
        follows a changed PFKIT_HOME)."""
        return self._home or Path(pfkit_home()).expanduser()

    @property
    def runs_dir(self) -> Path:
        return self.home / "runs"

    @property
    def db_path(self) -> Path:
        return self.home / "runs.sqlite"

    # -- database ---------------------------------------------------------------------------

    @property
    def db(self) -> sqlite3.Connection:
        if self._conn is not None and self._conn_path != self.db_path:
            self.close()
        if self._conn is None:
            # Two processes opening a new store at once: switching it to WAL can answer "database
            # is locked" at once, without waiting (SQLite's busy handler does not cover it), so
            # opening is retried for as long as a write would wait.
            deadline = time.monotonic() + 30
            while True:
                try:
                    conn = self._open()
                    break
                except sqlite3.OperationalError as exc:
                    if "locked" not in str(exc) or time.monotonic() > deadline:
                        raise store_write_error(self.db_path, exc) from exc
                    time.sleep(0.05)
            self._conn, self._conn_path = conn, self.db_path
        return self._conn

    def _open(self) -> sqlite3.Connection:
        self.home.mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(self.db_path, isolation_level=None, check_same_thread=False,
                               timeout=30)
        try:
            conn.execute("PRAGMA busy_timeout = 30000")
            conn.execute("PRAGMA journal_mode = WAL")
            cols = ", ".join(f"{k} {v}" for k, v in _COLUMNS.items())
            conn.execute(f"CREATE TABLE IF NOT EXISTS runs ({cols})")
            existing = {row[1] for row in conn.execute("PRAGMA table_info(runs)")}
            for name, decl in _COLUMNS.items():
                if name not in existing:
                    conn.execute(f"ALTER TABLE runs ADD COLUMN {name} "
                                 f"{decl.replace('PRIMARY KEY', '')}")
            conn.execute("CREATE TABLE IF NOT EXISTS schema_info (version INTEGER NOT NULL)")
            if conn.execute("SELECT COUNT(*) FROM schema_info").fetchone()[0] == 0:
                conn.execute("INSERT INTO schema_info VALUES (?)", (SCHEMA_VERSION,))
        except BaseException:
            conn.close()
            raise
        return conn

    @contextmanager
    def _writing(self, run: str | None = None):
        """One transaction; a failed write is a StoreWriteError naming the database."""
        with self._lock:
            db = self.db
            try:
                db.execute("BEGIN IMMEDIATE")
                try:
                    yield db
                except BaseException:
                    db.execute("ROLLBACK")
                    raise
                db.execute("COMMIT")
            except sqlite3.OperationalError as exc:
                if db.in_transaction:
                    db.execute("ROLLBACK")
                raise store_write_error(self.db_path, exc, run) from exc

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def location(self, name: str | None = None) -> str:
        return str(self.run_dir(name) if name else self.home)

    def run_dir(self, name: str) -> Path:
        return self.runs_dir / check_run_name(name)

    def run_path(self, name: str) -> Path | None:
        return self.run_dir(name)

    # -- records ----------------------------------------------------------------------------

    @staticmethod
    def _row_values(record: RunRecord) -> tuple[Any, ...]:
        record.schema_version = SCHEMA_VERSION
        text = dumps(scrub_value(record.to_dict()))
        return (record.status, record.created_on, int(bool(record.archived)), record.group, text,
                record.heartbeat)

    def create(self, record: RunRecord) -> None:
        check_run_name(record.name)
        if record.group is not None:
            check_run_name(record.group, "group name")
        record.owner = current_owner()
        record.heartbeat = time.time()
        values = self._row_values(record)
        try:
            with self._writing(record.name) as db:
                db.execute("INSERT INTO runs (status, created_on, archived, run_group, record, "
                           "heartbeat, schema_version, name) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                           (*values, SCHEMA_VERSION, record.name))
        except sqlite3.IntegrityError:
            raise RunExists(f"a run named '{record.name}' already exists",
                            hint="Pick another --name, or delete it with  pfkit run delete -n "
                                 f"{record.name}.") from None
        # the name is ours now: a folder left by a run whose record was removed is stale
        folder = self.run_dir(record.name)
        if folder.exists():
            shutil.rmtree(folder, ignore_errors=True)

    def save(self, record: RunRecord) -> None:
        check_run_name(record.name)
        values = self._row_values(record)
        with self._writing(record.name) as db:
            # the heartbeat column belongs to the owner's heartbeat thread: never set back
            changed = db.execute("UPDATE runs SET status = ?, created_on = ?, archived = ?, "
                                 "run_group = ?, record = ?, "
                                 "heartbeat = NULLIF(MAX(COALESCE(?, 0), COALESCE(heartbeat, 0)), 0), "
                                 "schema_version = ? WHERE name = ?",
                                 (*values, SCHEMA_VERSION, record.name)).rowcount
        if not changed:
            raise self._not_found(record.name)

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

    def exists(self, name: str) -> bool:
        check_run_name(name)
        with self._lock:
            return self.db.execute("SELECT 1 FROM runs WHERE name = ?", (name,)).fetchone() is not None

    @staticmethod
    def _not_found(name: str) -> RunNotFound:
        return RunNotFound(f"run '{name}' does not exist", hint="List runs with  pfkit run list.")

    def _from_row(self, text: str, heartbeat: float | None) -> RunRecord:
        record = RunRecord.from_dict(json.loads(text))
        if heartbeat is not None:
            record.heartbeat = heartbeat
        return self._checked(record)

    def _checked(self, record: RunRecord) -> RunRecord:
        """A run whose owner process is gone is not running: say so, in the store too."""
        if record.status not in ACTIVE:
            return record
        why = None
        if record.owner is None:  # written by a version that kept no owner: go by its files
            last = self._last_write(record.name)
            if last is None or time.time() - last < OLD_RUN_SILENCE:
                return record
            why = (f"nothing was written for over {int(OLD_RUN_SILENCE // 60)} minutes by the "
                   f"process that ran it (an older pfkit that records no process)")
            record.heartbeat = last
        elif not owner_gone(record.owner, record.heartbeat):
            return record
        stale_status = record.status
        record.status = CANCELED
        record.status_detail = _process_gone_detail(record, why)
        record.end_time = record.end_time or record.heartbeat
        try:
            values = self._row_values(record)
            with self._writing(record.name) as db:  # only if nobody changed it meanwhile
                db.execute("UPDATE runs SET status = ?, created_on = ?, archived = ?, "
                           "run_group = ?, record = ?, heartbeat = COALESCE(?, heartbeat) "
                           "WHERE name = ? AND status = ?",
                           (*values, record.name, stale_status))
        except StoreWriteError:
            pass  # a read-only store still shows the truth
        return record

    def _last_write(self, name: str) -> float | None:
        folder = self.run_dir(name)
        times = []
        for file in (folder, folder / "lines.jsonl", folder / "logs.txt"):
            try:
                times.append(file.stat().st_mtime)
            except OSError:
                continue
        return max(times) if times else None

    def get(self, name: str) -> RunRecord:
        check_run_name(name)
        with self._lock:
            row = self.db.execute("SELECT record, heartbeat FROM runs WHERE name = ?",
                                  (name,)).fetchone()
        if row is None:
            raise self._not_found(name)
        return self._from_row(row[0], row[1])

    def list(self, *, max_results: int | None = 50, archived: str = "exclude",
             group: str | None = None) -> list[RunRecord]:
        where, params = [], []
        if archived == "exclude":
            where.append("archived = 0")
        elif archived == "only":
            where.append("archived = 1")
        if group:
            where.append("run_group = ?")
            params.append(group)
        sql = "SELECT record, heartbeat FROM runs" + (f" WHERE {' AND '.join(where)}" if where else "")
        sql += " ORDER BY created_on DESC"
        if max_results:
            sql += f" LIMIT {int(max_results)}"
        with self._lock:
            rows = self.db.execute(sql, params).fetchall()
        return [self._from_row(text, heartbeat) for text, heartbeat in rows]

    def delete(self, name: str) -> None:
        record = self.get(name)
        if record.status in ACTIVE:
            raise UserError(f"run '{name}' is still running ({describe(record.owner)})",
                            code="RunActive", hint="Stop it first (Ctrl-C), then delete it.")
        with self._writing(name) as db:
            db.execute("DELETE FROM runs WHERE name = ?", (name,))
        folder = self.run_dir(name)
        if folder.parent == self.runs_dir:  # a safe name never leaves runs/; checked anyway
            shutil.rmtree(folder, ignore_errors=True)

    def heartbeat(self, name: str) -> None:
        with self._writing(name) as db:
            db.execute("UPDATE runs SET heartbeat = ? WHERE name = ?", (time.time(), name))

    # -- run files --------------------------------------------------------------------------

    def open_writer(self, name: str) -> LocalRunWriter:
        return LocalRunWriter(self, name)

    def lines(self, name: str) -> Iterator[LineRecord]:
        return map(LineRecord.from_dict, self.line_dicts(name))

    def line_dicts(self, name: str) -> Iterator[dict[str, Any]]:
        for _, record in LineFile(self.run_dir(name) / "lines.jsonl").iter_sorted():
            yield record

    def finished_lines(self, name: str, *, status: str | None = None) -> Iterator[FinishedLine]:
        folder = self.run_dir(name)
        node_files = [LineFile(f) for f in sorted((folder / "node_outputs").glob("*.jsonl"))]
        for number, text in LineFile(folder / "lines.jsonl").iter_raw():
            record = json.loads(text)
            if status is not None and record.get("status") != status:
                continue
            nodes = {f.path.stem: raw for f in node_files if (raw := f.get_raw(number)) is not None}
            yield FinishedLine(number, record.get("status", ""), text, nodes, record.get("error"),
                               record.get("outputs") or {}, record.get("aggregation_inputs"),
                               record.get("usage"))

    def metrics(self, name: str) -> dict[str, Any]:
        file = self.run_dir(name) / "metrics.json"
        return json.loads(file.read_text(encoding="utf-8")) if file.is_file() else {}

    def line_records(self, name: str) -> dict[int, dict[str, Any]]:
        """The last record of each line, as dicts (small runs)."""
        return {r.line_number: r.to_dict() for r in self.lines(name)}


_PREFIX = '{"line_number": '


class LineFile:
    """A JSONL file of line records (``lines.jsonl`` or a node file), read by line number
    without holding it in memory: one pass builds ``line_number -> offset`` (the last record of
    a line wins: a resumed run may hold it twice; a record cut by a crash is ignored), then
    records are read one at a time."""

    def __init__(self, path: Path, offsets: array | None = None) -> None:
        self.path = path
        # offsets[n] = where line n's record starts, -1 when absent: 8 bytes a line
        self.offsets = array("q")
        if offsets is not None:  # known by the writer of the file
            self.offsets = offsets
            return
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

    def iter_raw(self) -> Iterator[tuple[int, str]]:
        """``(line_number, record JSON text)`` in line order."""
        if not self.offsets:
            return
        with self.path.open("rb") as fh:
            for number in self.numbers():
                fh.seek(self.offsets[number])
                yield number, fh.readline().decode("utf-8").rstrip("\n")

    def iter_sorted(self) -> Iterator[tuple[int, dict[str, Any]]]:
        """``(line_number, record)`` in line order."""
        for number, text in self.iter_raw():
            yield number, json.loads(text)

    def get_raw(self, number: int) -> str | None:
        if number not in self:
            return None
        with self.path.open("rb") as fh:
            fh.seek(self.offsets[number])
            return fh.readline().decode("utf-8").rstrip("\n")

    def get(self, number: int) -> dict[str, Any] | None:
        text = self.get_raw(number)
        return None if text is None else json.loads(text)


_BYTES_PREFIX = _PREFIX.encode()


def _line_number(raw: bytes) -> int | None:
    """Records start with ``{"line_number": N,`` (pfkit writes them so): read N without parsing
    (or decoding) the whole record; anything else is parsed."""
    if raw.startswith(_BYTES_PREFIX):
        end = raw.find(b",", len(_BYTES_PREFIX))
        digits = raw[len(_BYTES_PREFIX):end]
        if digits.isdigit():
            return int(digits)
    try:
        return int(json.loads(raw.decode("utf-8", errors="replace"))["line_number"])
    except (ValueError, KeyError, TypeError, RecursionError):
        return None


_scan_value = json.JSONDecoder().raw_decode
_INPUTS, _OUTPUTS, _ERROR = '", "inputs": ', ', "outputs": ', ', "error": '


def _summary_texts(text: str, number: int) -> tuple[str, str, str | None] | None:
    """``(status, inputs line, outputs line or None)`` of a line record as pfkit writes it
    (``{"line_number": N, "status": S, "inputs": {...}, "outputs": {...}, ...}``), cut from
    its text: the JSON of ``inputs`` and ``outputs`` as written, with the line number added,
    is what encoding them again gives. None when the record is shaped otherwise, or when the
    slow path must decide (a ``line_number`` key, an image to save as a file)."""
    head = f'{_PREFIX}{number}, "status": "'
    if not text.startswith(head):
        return None
    end = text.find('"', len(head))
    if end < 0 or not text.startswith(_INPUTS, end):
        return None
    status = text[len(head):end]
    start = end + len(_INPUTS)
    # ', "outputs": ' cannot occur inside a JSON string (its quote would be escaped): found
    # once, it is the record's own key, which follows the inputs; the same for "error", which
    # follows the outputs. Found more than once (a nested key of that name): decoded.
    stop = text.find(_OUTPUTS, start)
    after = text.find(_ERROR, stop)
    if stop > 0 and after > 0 and text.find(_OUTPUTS, stop + 1) < 0 \
            and text.find(_ERROR, after + 1) < 0:
        inputs = text[start:stop]
        outputs = text[stop + len(_OUTPUTS):after]
    else:
        try:
            _, stop = _scan_value(text, start)
            inputs = text[start:stop]
            if not text.startswith(_OUTPUTS, stop):
                return None
            start = stop + len(_OUTPUTS)
            _, stop = _scan_value(text, start)
        except (ValueError, RecursionError):
            return None
        outputs = text[start:stop]
    if inputs[:1] != "{" or outputs[:1] != "{" or '"line_number"' in inputs:
        return None
    inputs_line = (f'{inputs[:-1]}, "line_number": {number}}}' if inputs != "{}"
                   else f'{{"line_number": {number}}}')
    if status != COMPLETED:
        return status, inputs_line, None
    if '"line_number"' in outputs or "data:image/" in outputs:
        return None
    outputs_line = (f'{{"line_number": {number}, {outputs[1:]}' if outputs != "{}"
                    else f'{{"line_number": {number}}}')
    return status, inputs_line, outputs_line


def _summary_lines(text: str, number: int, outputs_dir: Path) -> tuple[str, str | None]:
    """``(inputs.jsonl line, output.jsonl line or None)`` of one line record: cut from its
    text where it can be (most records), decoded otherwise (images are saved as files in
    ``outputs_dir``, as promptflow does)."""
    texts = _summary_texts(text, number)
    if texts is not None:
        return texts[1], texts[2]
    record = json.loads(text)
    outputs_line = None
    if record["status"] == COMPLETED:
        outputs = images_to_files(record["outputs"], outputs_dir)
        outputs_line = dumps({"line_number": number, **outputs})
    return dumps({**record["inputs"], "line_number": number}), outputs_line


SUMMARY_HOLD = 20_000  # lines that may wait for an earlier one before the summary gives up


class _SummaryFiles:
    """``flow_outputs/output.jsonl`` and ``inputs.jsonl`` written as lines finish, in line
    order. Lines finish a little out of order (concurrent lines, worker processes): a line
    that comes before one it follows waits here until the lines before it are written. Gives
    up (``active`` false: the writer then builds both files in one pass over ``lines.jsonl``
    at the end, as before) when a line number comes twice, a record has no number, or more
    than SUMMARY_HOLD lines wait (a resumed run writes its reused lines first, with gaps)."""

    def __init__(self, folder: Path) -> None:
        self.outputs_dir = folder / "flow_outputs"
        self.outputs_dir.mkdir(exist_ok=True)
        self._out = open(self.outputs_dir / "output.jsonl", "w", encoding="utf-8")  # noqa: SIM115
        self._inputs = open(folder / "inputs.jsonl", "w", encoding="utf-8")  # noqa: SIM115
        self._next = 0
        self._held: dict[int, tuple[str, str | None]] = {}
        self.active = True

    def add(self, number: int | None, text: str) -> None:
        """The record ``text`` of line ``number``, as written to ``lines.jsonl``."""
        held = self._held
        if number == self._next:
            self.write(_summary_lines(text, number, self.outputs_dir))
            number += 1
            while held and number in held:
                self.write(held.pop(number))
                number += 1
            self._next = number
        elif number is not None and number > self._next and number not in held \
                and len(held) < SUMMARY_HOLD:
            held[number] = _summary_lines(text, number, self.outputs_dir)
        else:
            self.give_up()

    def write(self, lines: tuple[str, str | None]) -> None:
        """One line's ``(inputs line, outputs line or None)``, at the end of both files."""
        inputs_line, outputs_line = lines
        if outputs_line is not None:
            _write(self._out, outputs_line + "\n")
        _write(self._inputs, inputs_line + "\n")

    def finish(self) -> None:
        """The lines still waiting (those after a line that never came), in order; both files
        closed. Raises what writing them raises (a full disk at the last flush included)."""
        held, self._held = self._held, {}
        for number in sorted(held):
            self.write(held[number])
        try:
            self._out.close()
        finally:
            self._inputs.close()

    def give_up(self) -> None:
        self.active = False
        self._held = {}
        self.close()

    def close(self) -> None:
        """Closed without a word: the files are written again by the end pass, or the run
        did not finish."""
        for fh in (self._out, self._inputs):
            if not fh.closed:
                try:
                    fh.close()
                except OSError:
                    pass


def read_line_records(path: Path) -> dict[int, dict[str, Any]]:
    """Every line's last record, in line order (small runs; large ones use LineFile)."""
    return dict(LineFile(path).iter_sorted())


PENDING_LINES = 512  # finished lines held for the next flush, at most


class LocalRunWriter:
    """Appends line and node records as lines finish, with the summary files (``output.jsonl``,
    ``inputs.jsonl``) in line order beside them (:class:`_SummaryFiles`), and keeps the run's
    heartbeat while open. Every failed write is a StoreWriteError naming the
    file.

    On an event loop, the lines finished in one turn of the loop (a worker's message of
    results, the lines quick tools finish in a row) are written together at the start of the
    next turn: node files first, each flushed once, then ``lines.jsonl``, flushed once. A
    killed process loses only lines in flight and those of the last turn, which were not
    recorded: resume runs them again. A write that fails there is raised by the next
    :meth:`write_line`, or by :meth:`finish`. Without a running loop each line is written at
    once."""

    def __init__(self, store: LocalRunStore, name: str) -> None:
        self.store = store
        self.name = name
        self.folder = folder = store.run_dir(name)
        self._nodes: dict[str, Any] = {}
        self._lines = self._log = None
        self._pending: list[tuple[str, dict[str, str], int | None]] = []
        self._flush_soon: Any = None  # the loop's handle of the next flush
        self._failure: StoreWriteError | None = None
        with self._guard(folder):
            folder.mkdir(parents=True, exist_ok=True)
            (folder / "node_outputs").mkdir(exist_ok=True)
            self._lines = open(folder / "lines.jsonl", "a", encoding="utf-8")  # noqa: SIM115
            self._log = open(folder / "logs.txt", "a", encoding="utf-8")  # noqa: SIM115
            # where each line's record starts in lines.jsonl, as written (finish() then needs
            # no pass over the file to find them); None once unknown (a file written before)
            self._end = self._lines.tell()
        self._offsets: array | None = array("q") if self._end == 0 else None
        # a new run's summary files are written as its lines finish (a folder written before
        # gets them in one pass at the end)
        self._summary: _SummaryFiles | None = None
        if self._end == 0:
            with self._guard(folder / "flow_outputs"):
                self._summary = _SummaryFiles(folder)
        self._stop = threading.Event()
        self._beat = threading.Thread(target=self._heartbeat, name=f"pfkit-heartbeat-{name}",
                                      daemon=True)
        self._beat.start()

    @contextmanager
    def _guard(self, path: Path):
        try:
            yield
        except OSError as exc:
            raise store_write_error(path, exc, self.name) from exc

    def _heartbeat(self) -> None:
        while not self._stop.wait(HEARTBEAT_EVERY):
            try:
                self.store.heartbeat(self.name)
            except Exception:  # noqa: BLE001 - a missed beat is retried at the next one
                pass

    def log(self, message: str) -> None:
        stamp = time.strftime("%Y-%m-%d %H:%M:%S")
        with self._guard(self.folder / "logs.txt"):
            self._log.write(f"[{stamp}] {scrub(message)}\n")
            self._log.flush()

    def _node_file(self, node: str):
        fh = self._nodes.get(node)
        if fh is None:
            # node names are checked when the flow loads; a name that could leave the folder
            # is written under a safe file name all the same
            file = node if is_safe_name(node) else f"node_{abs(hash(node))}"
            fh = self._nodes[node] = open(  # noqa: SIM115
                self.folder / "node_outputs" / f"{file}.jsonl", "a", encoding="utf-8")
        return fh

    def write_line(self, line: FinishedLine) -> None:
        self.write_encoded(line.record_json, line.node_json, line.line_number)

    def write_encoded(self, record_json: str, node_json: dict[str, str],
                      line_number: int | None = None) -> None:
        """A line's records as JSON text (node files first: a line in lines.jsonl is whole)."""
        if self._failure is not None:
            raise self._failure
        pending = self._pending
        pending.append((record_json, node_json, line_number))
        if len(pending) < PENDING_LINES:
            if self._flush_soon is not None:
                return  # written with the others of this turn of the loop
            try:
                self._flush_soon = asyncio.get_running_loop().call_soon(self._flush_later)
                return
            except RuntimeError:  # no running loop: written now
                pass
        self.flush()

    def _flush_later(self) -> None:
        self._flush_soon = None
        try:
            self.flush()
        except StoreWriteError:
            pass  # kept in self._failure: raised by the next write, or by finish()

    def flush(self) -> None:
        """Write the lines held for the next flush (node files first, then ``lines.jsonl``)."""
        if self._failure is not None:
            raise self._failure
        pending, self._pending = self._pending, []
        if self._flush_soon is not None:
            self._flush_soon.cancel()
            self._flush_soon = None
        if not pending:
            return
        offsets = self._offsets
        self._offsets = None  # unknown until the batch is written whole
        try:
            files = self._nodes
            for _, node_json, _ in pending:
                for node, text in node_json.items():
                    fh = files.get(node) or self._node_file(node)
                    _write(fh, text + "\n")
            for fh in files.values():
                fh.flush()
            lines = self._lines
            end = self._end
            summary = self._summary if self._summary is not None and self._summary.active \
                else None
            for record_json, _, number in pending:
                text = _write(lines, record_json + "\n")
                if number is None and (offsets is not None or summary is not None):
                    number = _line_number(text.encode("utf-8"))
                if offsets is not None:
                    if number is None or number < 0:
                        offsets = None
                    else:
                        if number >= len(offsets):
                            offsets.extend([-1] * (number + 1 - len(offsets)))
                        offsets[number] = end
                if summary is not None:
                    summary.add(number, text[:-1])
                    if not summary.active:
                        summary = None
                end += len(text) if text.isascii() else len(text.encode("utf-8"))
            lines.flush()
        except Exception as exc:  # noqa: BLE001 - OSError mostly; never lost in a callback
            self._failure = store_write_error(self.folder, exc, self.name)
            raise self._failure from exc
        self._end = end
        self._offsets = offsets

    def save_snapshot(self, source_dir: Path, resolved_yaml: str,
                      file_name: str = "flow.dag.yaml") -> None:
        with self._guard(self.folder / "snapshot"):
            copy_snapshot(source_dir, self.folder / "snapshot", resolved_yaml, file_name)

    def finish(self, metrics: dict[str, Any], errors: dict[str, Any] | None,
               meta: dict[str, Any]) -> None:
        """The summary files, in promptflow's layout: the lines still waiting for an earlier
        one, or (when the files could not be written as lines finished) one pass over the line
        records, one at a time, so memory stays flat however many lines the run has."""
        failure = None
        try:
            self.flush()
        except StoreWriteError as exc:  # raised once the summary of what was written is
            failure = exc
        finally:
            summary, self._summary = self._summary, None  # finished below, not closed
            self.close()
        with self._guard(self.folder):
            if summary is not None and summary.active and failure is None:
                summary.finish()
            else:
                if summary is not None:
                    summary.give_up()
                self._write_summary_files(failure is None)
            (self.folder / "metrics.json").write_text(dumps(scrub_value(metrics)),
                                                      encoding="utf-8")
            error_file = self.folder / "error.json"
            if errors:
                error_file.write_text(json.dumps(scrub_value(errors), ensure_ascii=False,
                                                 indent=2, default=repr), encoding="utf-8")
            elif error_file.exists():
                error_file.unlink()
            (self.folder / "meta.json").write_text(dumps(meta), encoding="utf-8")
        if failure is not None:
            raise failure

    def _write_summary_files(self, offsets_known: bool) -> None:
        """Both summary files in one pass over ``lines.jsonl`` (one record at a time)."""
        records = LineFile(self.folder / "lines.jsonl", self._offsets if offsets_known else None)
        summary = _SummaryFiles(self.folder)
        try:
            for number, text in records.iter_raw():
                summary.write(_summary_lines(text, number, summary.outputs_dir))
            summary.finish()
        finally:
            summary.close()

    def close(self) -> None:
        self._stop.set()
        if self._pending and self._failure is None and self._lines is not None \
                and not self._lines.closed:
            try:
                self.flush()
            except StoreWriteError:
                pass  # kept in self._failure; what was written stays
        if self._summary is not None:
            self._summary.close()
        for fh in [self._lines, self._log, *self._nodes.values()]:
            if fh is not None and not fh.closed:
                try:
                    fh.close()
                except OSError:
                    pass  # already reported by the write that failed


_SURROGATE = re.compile("[\ud800-\udfff]")


def _write(fh: Any, text: str) -> str:
    """Write ``text``; a lone surrogate (which UTF-8 cannot hold) is written as its JSON
    escape, which reads back as the same string. The text as written."""
    try:
        fh.write(text)
    except UnicodeEncodeError:
        text = _SURROGATE.sub(lambda m: f"\\u{ord(m.group()):04x}", text)
        fh.write(text)
    return text


def copy_snapshot(source_dir: Path, destination: Path, resolved_yaml: str,
                  file_name: str = "flow.dag.yaml") -> None:
    """The flow as it ran: its folder (without caches and virtualenvs) and the flow file as it
    ran (for a DAG, ``flow.dag.yaml`` with the chosen variants written into ``nodes``; a flex
    YAML or a prompty file under its own name)."""
    patterns = shutil.ignore_patterns("__pycache__", ".promptflow", ".git", ".venv", "*.pyc",
                                      "pfkit.cassette.jsonl")
    inside = destination.resolve()

    def ignore(folder: str, names: list[str]) -> set[str]:
        # a run store (PFKIT_HOME) inside the flow folder: never copied into itself
        skipped = set(patterns(folder, names))
        for name in names:
            path = Path(folder, name).resolve()
            if path == inside or path in inside.parents:
                skipped.add(name)
        return skipped

    shutil.copytree(source_dir, destination, ignore=ignore, dirs_exist_ok=True)
    (destination / file_name).write_text(resolved_yaml, encoding="utf-8")
    os.utime(destination)
