"""The SQLite store of model responses, plus read-only layers loaded from cassettes.

Secrets never reach the file: credential-like fields are stripped and every registered secret
value (:mod:`pfkit._secrets`) is masked in what is stored.
"""

from __future__ import annotations

import json
import os
import sqlite3
import threading
from collections import Counter
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from .. import _secrets
from ._cache_keys import KINDS, canonical_json, normalise_request, strip_secrets
from ._cassette import Entry, cassette_line, read_cassette, write_atomic

SCHEMA_VERSION = 2


@dataclass(frozen=True, slots=True)
class CacheStats:
    """Counters of one :class:`ResponseCache` in this process."""

    hits: int = 0
    misses: int = 0
    writes: int = 0
    replay_misses: int = 0

    def to_dict(self) -> dict[str, int]:
        return asdict(self)



_CREATE_ENTRIES = (
    "CREATE TABLE IF NOT EXISTS entries (key TEXT PRIMARY KEY, kind TEXT NOT NULL, "
    "identity_json TEXT NOT NULL, request_json TEXT NOT NULL, response_json TEXT NOT NULL, "
    "created_at TEXT NOT NULL)")
# Columns added after version 1: (schema version, name, declaration). Additive only: a new
# column needs a default so older rows and older readers keep working.
_ADDED_COLUMNS: tuple[tuple[int, str, str], ...] = (
    (2, "hits", "INTEGER NOT NULL DEFAULT 0"),
)
_ENTRY_COLUMNS = "key, kind, identity_json, request_json, response_json"


class ResponseCache:
    """Model responses by :func:`cache_key`, in a SQLite file plus read-only cassette layers.

    One connection guarded by a lock serves every thread and asyncio task of the process; each
    operation is a single short statement, so the event loop is never held up noticeably.
    Other processes may share the file (WAL mode, busy timeout).
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = str(path)
        if self.path != ":memory:":
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.RLock()
        self._conn = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        self._layer: dict[str, Entry] = {}
        self._used: dict[str, None] = {}  # an ordered set
        self._pending_hits: Counter[str] = Counter()
        self._stats = CacheStats()
        self._configure()
        self._migrate()

    @classmethod
    def in_memory(cls) -> ResponseCache:
        """A throw-away cache (for tests)."""
        return cls(":memory:")

    # -- setup

    def _configure(self) -> None:
        self._conn.execute("PRAGMA busy_timeout = 10000")
        if self.path != ":memory:":
            self._conn.execute("PRAGMA journal_mode = WAL")
            self._conn.execute("PRAGMA synchronous = NORMAL")

    def _migrate(self) -> None:
        """Create or upgrade the schema; only ever adds tables and columns."""
        with self._lock, self._transaction():
            self._conn.execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")
            self._conn.execute(_CREATE_ENTRIES)
            columns = {row[1] for row in self._conn.execute("PRAGMA table_info(entries)")}
            for _, name, declaration in _ADDED_COLUMNS:
                if name not in columns:
                    self._conn.execute(f"ALTER TABLE entries ADD COLUMN {name} {declaration}")
            row = self._conn.execute("SELECT MAX(version) FROM schema_version").fetchone()
            if row[0] is None:
                self._conn.execute("INSERT INTO schema_version (version) VALUES (?)",
                                   (SCHEMA_VERSION,))
            elif row[0] < SCHEMA_VERSION:  # a newer version is left alone: it only added things
                self._conn.execute("UPDATE schema_version SET version = ?", (SCHEMA_VERSION,))

    def _transaction(self) -> _Transaction:
        return _Transaction(self._conn)

    # -- reading and writing

    def get(self, key: str) -> dict[str, Any] | None:
        """The stored response for ``key`` (a fresh dict), or None. Cassette layers come first."""
        with self._lock:
            entry = self._layer.get(key)
            if entry is None:
                row = self._conn.execute("SELECT response_json FROM entries WHERE key = ?",
                                         (key,)).fetchone()
                if row is not None:
                    self._pending_hits[key] += 1
                response_json = row[0] if row else None
            else:
                response_json = entry.response_json
            if response_json is None:
                self._count(misses=1)
                return None
            self._count(hits=1)
            self._used[key] = None
        return json.loads(response_json)

    def put(self, key: str, kind: str, identity: dict[str, Any], request: dict[str, Any],
            response: dict[str, Any]) -> None:
        """Store (or overwrite) the response of a call. Secrets are stripped from what is kept."""
        if kind not in KINDS:
            raise ValueError(f"unknown call kind {kind!r}; expected one of {', '.join(KINDS)}")
        row = (key, kind, canonical_json(strip_secrets(identity)),
               canonical_json(_secrets.scrub_value(strip_secrets(normalise_request(request)))),
               json.dumps(_secrets.scrub_value(response), ensure_ascii=False), _now())
        with self._lock:
            with self._transaction():
                self._conn.execute(
                    "INSERT INTO entries (key, kind, identity_json, request_json, response_json, "
                    "created_at) VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT(key) DO UPDATE SET "
                    "kind = excluded.kind, identity_json = excluded.identity_json, "
                    "request_json = excluded.request_json, "
                    "response_json = excluded.response_json, created_at = excluded.created_at",
                    row)
            self._count(writes=1)
            self._used[key] = None
            self._flush_hits()

    def note_replay_miss(self) -> None:
        """Count a call that replay mode could not answer."""
        with self._lock:
            self._count(replay_misses=1)

    @property
    def stats(self) -> CacheStats:
        """A snapshot of this process's hits, misses, writes and replay misses."""
        with self._lock:
            return self._stats

    def keys_used(self) -> list[str]:
        """Keys read (hits) or written by this process, in first-use order."""
        with self._lock:
            return list(self._used)

    def _count(self, **deltas: int) -> None:
        current = asdict(self._stats)
        self._stats = CacheStats(**{k: v + deltas.get(k, 0) for k, v in current.items()})

    def _flush_hits(self) -> None:
        """Add the hits counted since the last flush to the ``hits`` column (metrics only)."""
        if not self._pending_hits:
            return
        pending, self._pending_hits = self._pending_hits, Counter()
        try:
            with self._transaction():
                self._conn.executemany("UPDATE entries SET hits = hits + ? WHERE key = ?",
                                       [(n, key) for key, n in pending.items()])
        except sqlite3.DatabaseError:
            pass  # a read-only cache file: the hit counts are informational only

    # -- cassettes

    def export_cassette(self, path: str | os.PathLike[str],
                        keys: Iterable[str] | None = None) -> int:
        """Write entries (all, or those of ``keys`` that exist) as a JSONL cassette.

        One object per line (key, kind, identity, request, response), sorted by key, with any
        credential-like field removed. The file is replaced atomically. Returns the entry count.
        """
        entries = sorted(self._entries(keys), key=lambda entry: entry.key)
        lines = [cassette_line(entry) for entry in entries]
        write_atomic(Path(path), "".join(line + "\n" for line in lines))
        return len(lines)

    def load_cassette(self, path: str | os.PathLike[str]) -> int:
        """Add a cassette's entries as a read-only layer consulted before the database.

        Later cassettes override earlier ones for the same key. Returns the entry count.
        """
        entries = read_cassette(Path(path))
        with self._lock:
            self._layer.update((entry.key, entry) for entry in entries)
        return len(entries)

    def layer_keys(self) -> list[str]:
        """The keys of the loaded cassette entries."""
        with self._lock:
            return list(self._layer)

    def drop_from_layer(self, keys: Iterable[str]) -> None:
        """Forget cassette entries (so the database's newer version of them is used)."""
        with self._lock:
            for key in keys:
                self._layer.pop(key, None)

    def layer_identities(self) -> list[dict[str, Any]]:
        """The identities of the loaded cassette entries (distinct)."""
        with self._lock:
            seen = {entry.identity_json for entry in self._layer.values()}
        return [json.loads(text) for text in sorted(seen)]

    def _entries(self, keys: Iterable[str] | None) -> list[Entry]:
        with self._lock:
            if keys is None:
                rows = self._conn.execute(f"SELECT {_ENTRY_COLUMNS} FROM entries").fetchall()
                found = {row[0]: Entry(*row) for row in rows}
                found.update(self._layer)
                return list(found.values())
            return [entry for key in dict.fromkeys(keys)
                    if (entry := self._lookup_entry(key)) is not None]

    def _lookup_entry(self, key: str) -> Entry | None:
        if key in self._layer:
            return self._layer[key]
        row = self._conn.execute(f"SELECT {_ENTRY_COLUMNS} FROM entries WHERE key = ?",
                                 (key,)).fetchone()
        return Entry(*row) if row else None

    # -- lifetime

    def close(self) -> None:
        """Write pending hit counts and close the database."""
        with self._lock:
            self._flush_hits()
            self._conn.close()

    def __enter__(self) -> ResponseCache:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"ResponseCache({self.path!r})"


class _Transaction:
    """``BEGIN IMMEDIATE`` ... ``COMMIT`` (``ROLLBACK`` on error) on an autocommit connection."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self._conn = conn

    def __enter__(self) -> None:
        self._conn.execute("BEGIN IMMEDIATE")

    def __exit__(self, exc_type: type[BaseException] | None, *_: object) -> None:
        self._conn.execute("ROLLBACK" if exc_type else "COMMIT")


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


