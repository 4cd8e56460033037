"""A content-addressed cache of model calls with record/replay, stored in SQLite.

Every call is keyed by :func:`cache_key`: the sha256 of a canonical JSON of the model's
secret-free ``identity``, the call kind and the normalised request. :class:`ResponseCache` keeps
the responses (a SQLite file in WAL mode, plus read-only in-memory layers loaded from JSONL
cassettes) and :class:`CachingModel` wraps any :class:`~pfkit.providers.ChatModel` so that an
evaluation recorded once replays bit for bit in CI without any model.

Modes (:data:`CACHE_MODES`, chosen with ``--cache`` or ``PFKIT_CACHE``):

* ``off`` - pass every call through.
* ``read_write`` - answer from the cache, call the model and store on a miss.
* ``record`` - always call the model and store (overwrite) the response.
* ``replay`` - answer from the cache; a miss raises :class:`ReplayMissError`.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
import sqlite3
import tempfile
import threading
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from dataclasses import asdict, dataclass, fields
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, NamedTuple, TypeVar

from ..errors import Location, UserError
from ._base import ChatModel, ChatResponse, CompletionResponse, EmbeddingResponse, Usage

__all__ = [
    "CACHE_ENV_VAR",
    "CACHE_MODES",
    "CacheStats",
    "CachingModel",
    "CachingModelStats",
    "ReplayMissError",
    "ResponseCache",
    "cache_key",
    "is_nondeterministic",
    "normalise_request",
    "resolve_cache_mode",
]

CACHE_ENV_VAR = "PFKIT_CACHE"
CACHE_MODES: tuple[str, ...] = ("off", "read_write", "record", "replay")
KINDS: tuple[str, ...] = ("chat", "completion", "embedding")
KEY_VERSION = 1
SCHEMA_VERSION = 2

# Request keys that never change the answer: transport (streaming) and end-user attribution.
_IGNORED_REQUEST_KEYS = frozenset({"stream", "stream_options", "user"})
# Names of fields that may hold credentials; removed before anything is written to disk.
_SECRET_NAME = re.compile(
    r"(^|[_-])(api[_-]?key|authorization|access[_-]?token|secret|password|subscription[_-]?key)$",
    re.IGNORECASE)
_EXCERPT_CHARS = 60


# --------------------------------------------------------------------------------------- keys

def normalise_request(request: dict[str, Any]) -> dict[str, Any]:
    """The part of a request that determines the answer.

    Drops ``stream``, ``stream_options`` and ``user``, drops keys whose value is None (at any
    depth of nested dicts) and writes integral floats as ints (``1.0`` -> ``1``) so that equal
    requests always give equal keys.
    """
    return {k: _normalise_value(v) for k, v in request.items()
            if k not in _IGNORED_REQUEST_KEYS and v is not None}


def _normalise_value(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _normalise_value(v) for k, v in value.items() if v is not None}
    if isinstance(value, (list, tuple)):
        return [_normalise_value(v) for v in value]
    if isinstance(value, float) and math.isfinite(value) and value.is_integer():
        return int(value)
    return value


def canonical_json(value: Any) -> str:
    """Sorted keys, no whitespace, UTF-8 kept: the same text for equal values."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def cache_key(identity: dict[str, Any], kind: str, request: dict[str, Any]) -> str:
    """The sha256 hex digest naming a call of ``kind`` with ``request`` to the model ``identity``.

    A streamed and a non-streamed chat call with otherwise equal requests share a key.
    Credential-like fields of ``identity`` (which should have none) are ignored, so the key is
    the one recomputed from a stored or exported entry.
    """
    if kind not in KINDS:
        raise ValueError(f"unknown call kind {kind!r}; expected one of {', '.join(KINDS)}")
    payload = {"v": KEY_VERSION, "identity": strip_secrets(identity), "kind": kind,
               "request": normalise_request(request)}
    return hashlib.sha256(canonical_json(payload).encode("utf-8")).hexdigest()


def strip_secrets(value: Any) -> Any:
    """A copy of ``value`` without any dict entry whose name looks like a credential."""
    if isinstance(value, dict):
        return {k: strip_secrets(v) for k, v in value.items()
                if not (isinstance(k, str) and _SECRET_NAME.search(k))}
    if isinstance(value, (list, tuple)):
        return [strip_secrets(v) for v in value]
    return value


# -------------------------------------------------------------------------------------- modes

def resolve_cache_mode(cli_value: str | None) -> str:
    """The cache mode: the CLI flag wins, else ``$PFKIT_CACHE``, else ``"off"``.

    Values are case-insensitive and ``read-write`` is accepted for ``read_write``.
    """
    if cli_value is not None and cli_value.strip():
        return _check_mode(cli_value, "--cache")
    env_value = os.environ.get(CACHE_ENV_VAR, "")
    if env_value.strip():
        return _check_mode(env_value, f"${CACHE_ENV_VAR}")
    return "off"


def _check_mode(value: str, source: str) -> str:
    mode = value.strip().lower().replace("-", "_")
    if mode not in CACHE_MODES:
        raise UserError(f"Unknown cache mode {value!r} from {source}; valid modes are: "
                        f"{', '.join(CACHE_MODES)}.", code="InvalidCacheMode",
                        hint=f"Use one of {', '.join(CACHE_MODES)}.")
    return mode


def is_nondeterministic(kind: str, request: dict[str, Any]) -> bool:
    """True for a chat/completion request sampled with temperature > 0 and no ``seed``.

    A missing temperature counts as OpenAI's default of 1.0. Embeddings are deterministic.
    """
    if kind == "embedding" or request.get("seed") is not None:
        return False
    temperature = request.get("temperature")
    if temperature is None:
        return True
    try:
        return float(temperature) > 0
    except (TypeError, ValueError):
        return True


# ------------------------------------------------------------------------------------- errors

class ReplayMissError(UserError):
    """Replay mode found no recorded response for a call."""

    default_code = "CacheReplayMiss"
    key: str | None = None
    kind: str | None = None

    @classmethod
    def for_call(cls, identity: dict[str, Any], kind: str, key: str,
                 request: dict[str, Any]) -> ReplayMissError:
        """The error for a missing ``kind`` call with ``request`` (key ``key``)."""
        message = (f"No recorded {kind} response for model {_model_label(identity, request)} "
                   f"(cache key {key[:12]}) in replay mode; request: "
                   f"{json.dumps(_excerpt(kind, request), ensure_ascii=False)}.")
        hint = ("Record the responses first: run once with `--cache record` (or set "
                f"{CACHE_ENV_VAR}=record), then replay. If the prompt, parameters or model "
                "changed on purpose, record again.")
        error = cls(message, hint=hint)
        error.key, error.kind = key, kind
        return error


def _model_label(identity: dict[str, Any], request: dict[str, Any]) -> str:
    name = (request.get("model") or identity.get("deployment")
            or identity.get("deployment_name") or identity.get("model"))
    provider = identity.get("provider")
    if name and provider:
        return f"'{name}' ({provider})"
    return f"'{name or provider or 'unknown'}'"


def _excerpt(kind: str, request: dict[str, Any]) -> str:
    """A short single-line excerpt of the last message, the prompt or the embedding input."""
    if kind == "chat":
        messages = request.get("messages") or [{}]
        value = messages[-1].get("content") if isinstance(messages[-1], dict) else messages[-1]
    else:
        value = request.get("prompt" if kind == "completion" else "input")
    text = " ".join(_text_of(value).split())
    return text if len(text) <= _EXCERPT_CHARS else text[:_EXCERPT_CHARS - 1] + "…"


def _text_of(value: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, list):  # content parts, a prompt list or an input list
        return " ".join(_text_of(v.get("text", "") if isinstance(v, dict) else v) for v in value)
    return "" if value is None else str(value)


# -------------------------------------------------------------------------------------- store

@dataclass(frozen=True, slots=True)
class CacheStats:
    """Counters of one :class:`ResponseCache` in this process."""

    hits: int = 0
    misses: int = 0
    writes: int = 0
    replay_misses: int = 0

    def to_dict(self) -> dict[str, int]:
        return asdict(self)


class _Entry(NamedTuple):
    """One stored call; the three payloads are JSON text."""

    key: str
    kind: str
    identity_json: str
    request_json: str
    response_json: str


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
        self._layer: dict[str, _Entry] = {}
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
               canonical_json(strip_secrets(normalise_request(request))),
               json.dumps(response, ensure_ascii=False), _now())
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
        lines = [_cassette_line(entry) for entry in entries]
        _write_atomic(Path(path), "".join(line + "\n" for line in lines))
        return len(lines)

    def load_cassette(self, path: str | os.PathLike[str]) -> int:
        """Add a cassette's entries as a read-only layer consulted before the database.

        Later cassettes override earlier ones for the same key. Returns the entry count.
        """
        entries = _read_cassette(Path(path))
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

    def _entries(self, keys: Iterable[str] | None) -> list[_Entry]:
        with self._lock:
            if keys is None:
                rows = self._conn.execute(f"SELECT {_ENTRY_COLUMNS} FROM entries").fetchall()
                found = {row[0]: _Entry(*row) for row in rows}
                found.update(self._layer)
                return list(found.values())
            return [entry for key in dict.fromkeys(keys)
                    if (entry := self._lookup_entry(key)) is not None]

    def _lookup_entry(self, key: str) -> _Entry | None:
        if key in self._layer:
            return self._layer[key]
        row = self._conn.execute(f"SELECT {_ENTRY_COLUMNS} FROM entries WHERE key = ?",
                                 (key,)).fetchone()
        return _Entry(*row) if row else None

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


def _cassette_line(entry: _Entry) -> str:
    record = {"key": entry.key, "kind": entry.kind,
              "identity": strip_secrets(json.loads(entry.identity_json)),
              "request": strip_secrets(json.loads(entry.request_json)),
              "response": strip_secrets(json.loads(entry.response_json))}
    return json.dumps(record, ensure_ascii=False)


def _write_atomic(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="\n") as handle:
            handle.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _read_cassette(path: Path) -> list[_Entry]:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise UserError(f"Cassette {path} does not exist.", code="CassetteNotFound",
                        location=Location(file=str(path))) from None
    return [_parse_cassette_line(path, number, line)
            for number, line in enumerate(text.splitlines(), start=1) if line.strip()]


def _parse_cassette_line(path: Path, number: int, line: str) -> _Entry:
    def fail(reason: str) -> UserError:
        return UserError(f"Malformed cassette {path} line {number}: {reason}.",
                         code="InvalidCassette", location=Location(file=str(path), line=number),
                         hint="Each line must be one JSON object with key, kind, identity, "
                              "request and response; re-export the cassette to repair it.")

    try:
        record = json.loads(line)
    except json.JSONDecodeError as exc:
        raise fail(f"not valid JSON ({exc.msg} at column {exc.colno})") from None
    if not isinstance(record, dict):
        raise fail("expected a JSON object")
    if not isinstance(record.get("key"), str) or not record["key"]:
        raise fail("'key' must be a non-empty string")
    if record.get("kind") not in KINDS:
        raise fail(f"'kind' must be one of {', '.join(KINDS)}")
    for name in ("identity", "request", "response"):
        if not isinstance(record.get(name), dict):
            raise fail(f"'{name}' must be a JSON object")
    return _Entry(record["key"], record["kind"], canonical_json(record["identity"]),
                  canonical_json(record["request"]), json.dumps(record["response"],
                                                                ensure_ascii=False))


# -------------------------------------------------------------------- response serialisation

def _hit_fields(cls: type) -> dict[str, Any]:
    """``cached=True`` for response classes that have a ``cached`` field (marks a cache hit
    without changing equality, when the field is declared with ``compare=False``)."""
    return {"cached": True} if "cached" in {f.name for f in fields(cls)} else {}


def _usage_from(data: dict[str, Any] | None) -> Usage:
    data = data or {}
    return Usage(int(data.get("prompt_tokens", 0)), int(data.get("completion_tokens", 0)),
                 int(data.get("total_tokens", 0)))


def chat_to_dict(response: ChatResponse) -> dict[str, Any]:
    return {"message": response.message, "usage": response.usage.to_dict(),
            "model": response.model}


def chat_from_dict(data: dict[str, Any]) -> ChatResponse:
    return ChatResponse(message=data["message"], usage=_usage_from(data.get("usage")),
                        model=data.get("model"), **_hit_fields(ChatResponse))


def completion_to_dict(response: CompletionResponse) -> dict[str, Any]:
    return {"text": response.text, "usage": response.usage.to_dict(), "model": response.model}


def completion_from_dict(data: dict[str, Any]) -> CompletionResponse:
    return CompletionResponse(text=data["text"], usage=_usage_from(data.get("usage")),
                              model=data.get("model"), **_hit_fields(CompletionResponse))


def embedding_to_dict(response: EmbeddingResponse) -> dict[str, Any]:
    return {"embeddings": response.embeddings, "usage": response.usage.to_dict(),
            "model": response.model}


def embedding_from_dict(data: dict[str, Any]) -> EmbeddingResponse:
    return EmbeddingResponse(embeddings=data["embeddings"], usage=_usage_from(data.get("usage")),
                             model=data.get("model"), **_hit_fields(EmbeddingResponse))


def stream_to_dict(chunks: list[str], usage: Usage | None) -> dict[str, Any]:
    """A streamed chat as a chat entry that also keeps the chunks and whether the stream ended
    with a ``Usage`` item (the model name is not known from a stream)."""
    return {"message": {"role": "assistant", "content": "".join(chunks)},
            "usage": (usage or Usage()).to_dict(), "model": None, "chunks": chunks,
            "stream_usage": usage is not None}


def stream_items(data: dict[str, Any]) -> list[str | Usage]:
    """What ``chat_stream`` replays for a stored chat entry.

    A recorded stream gives its chunks, then its ``Usage`` item if it had one. A non-streamed
    chat gives its whole text as one chunk, then its usage (so token accounting matches).
    """
    if isinstance(data.get("chunks"), list):
        items: list[str | Usage] = [str(chunk) for chunk in data["chunks"]]
        if data.get("stream_usage"):
            items.append(_usage_from(data.get("usage")))
        return items
    content = (data.get("message") or {}).get("content")
    text: list[str | Usage] = [content] if isinstance(content, str) and content else []
    return [*text, _usage_from(data.get("usage"))]


# -------------------------------------------------------------------------------------- model

@dataclass(frozen=True, slots=True)
class CachingModelStats:
    """Counters of one :class:`CachingModel`.

    ``calls`` counts every call made to it, ``hits``/``misses`` the cache look-ups and their
    outcome, ``inner_calls`` the calls forwarded to the wrapped model.
    """

    calls: int = 0
    hits: int = 0
    misses: int = 0
    inner_calls: int = 0

    def to_dict(self) -> dict[str, int]:
        return asdict(self)


R = TypeVar("R")


class CachingModel:
    """A :class:`~pfkit.providers.ChatModel` answering from a :class:`ResponseCache`.

    ``mode`` is one of :data:`CACHE_MODES`. Sampled requests (temperature > 0 without ``seed``)
    bypass the cache in ``read_write`` unless ``cache_nondeterministic`` is set; ``record`` and
    ``replay`` always cache them, since the user asked for it explicitly.
    """

    def __init__(self, inner: ChatModel, cache: ResponseCache | None, mode: str, *,
                 cache_nondeterministic: bool = False) -> None:
        self.mode = _check_mode(mode, "CachingModel")
        if cache is None and self.mode != "off":
            raise ValueError(f"cache mode {self.mode!r} needs a ResponseCache")
        self.inner = inner
        self.cache = cache
        self.cache_nondeterministic = cache_nondeterministic
        self._lock = threading.Lock()
        self._stats = CachingModelStats()

    @property
    def api_style(self) -> str:
        return self.inner.api_style

    @property
    def identity(self) -> dict[str, Any]:
        return self.inner.identity

    @property
    def stats(self) -> CachingModelStats:
        """A snapshot of this wrapper's calls, hits, misses and inner calls."""
        with self._lock:
            return self._stats

    # -- the ChatModel interface

    async def chat(self, request: dict[str, Any]) -> ChatResponse:
        return await self._call("chat", request, self.inner.chat, chat_to_dict, chat_from_dict)

    async def complete(self, request: dict[str, Any]) -> CompletionResponse:
        return await self._call("completion", request, self.inner.complete,
                                completion_to_dict, completion_from_dict)

    async def embed(self, request: dict[str, Any]) -> EmbeddingResponse:
        return await self._call("embedding", request, self.inner.embed,
                                embedding_to_dict, embedding_from_dict)

    async def chat_stream(self, request: dict[str, Any]) -> AsyncIterator[str | Usage]:
        """Stream content deltas (and the inner model's final ``Usage`` item, if any); a hit
        replays them. A miss is stored only once the inner stream completed (not when it failed
        or the consumer stopped early)."""
        self._count(calls=1)
        key = self._key_for("chat", request)
        if key is not None and self.mode != "record":
            stored = self._lookup(key, "chat", request)
            if stored is not None:
                for item in stream_items(stored):
                    yield item
                return
        self._count(inner_calls=1)
        chunks: list[str] = []
        usage: Usage | None = None
        stream = self.inner.chat_stream(request)
        try:
            async for item in stream:
                if isinstance(item, Usage):
                    usage = item
                else:
                    chunks.append(item)
                yield item
        finally:
            aclose = getattr(stream, "aclose", None)
            if aclose is not None:  # stop the inner stream now if our consumer stopped early
                await aclose()
        if key is not None:
            self._store(key, "chat", request, stream_to_dict(chunks, usage))

    # -- internals

    async def _call(self, kind: str, request: dict[str, Any],
                    call: Callable[[dict[str, Any]], Awaitable[R]],
                    to_dict: Callable[[R], dict[str, Any]],
                    from_dict: Callable[[dict[str, Any]], R]) -> R:
        self._count(calls=1)
        key = self._key_for(kind, request)
        if key is not None and self.mode != "record":
            stored = self._lookup(key, kind, request)
            if stored is not None:
                return from_dict(stored)
        self._count(inner_calls=1)
        response = await call(request)
        if key is not None:
            self._store(key, kind, request, to_dict(response))
        return response

    def _key_for(self, kind: str, request: dict[str, Any]) -> str | None:
        """The cache key, or None when this call goes straight to the inner model."""
        if self.mode == "off":
            return None
        if (self.mode == "read_write" and not self.cache_nondeterministic
                and is_nondeterministic(kind, request)):
            return None
        return cache_key(self.identity, kind, request)

    def _lookup(self, key: str, kind: str, request: dict[str, Any]) -> dict[str, Any] | None:
        """The stored response, or None on a read_write miss; raises on a replay miss."""
        assert self.cache is not None
        stored = self.cache.get(key)
        if stored is not None:
            self._count(hits=1)
            return stored
        self._count(misses=1)
        if self.mode == "replay":
            self.cache.note_replay_miss()
            raise ReplayMissError.for_call(self.identity, kind, key, request)
        return None

    def _store(self, key: str, kind: str, request: dict[str, Any],
               response: dict[str, Any]) -> None:
        assert self.cache is not None
        self.cache.put(key, kind, self.identity, request, response)

    def _count(self, **deltas: int) -> None:
        with self._lock:
            current = asdict(self._stats)
            self._stats = CachingModelStats(
                **{k: v + deltas.get(k, 0) for k, v in current.items()})

    def __repr__(self) -> str:
        return f"CachingModel({self.inner!r}, mode={self.mode!r})"
