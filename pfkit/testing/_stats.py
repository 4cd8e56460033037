"""What the test server counts and remembers: :class:`Counters` and the request log."""

from __future__ import annotations

import threading
from collections import Counter, deque
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Counters:
    """A snapshot of the server's counters. Endpoints are ``chat.completions``,
    ``completions``, ``embeddings``, ``models`` and ``not_found``."""

    total: int = 0
    by_endpoint: Mapping[str, int] = field(default_factory=dict)
    by_status: Mapping[int, int] = field(default_factory=dict)
    in_flight: int = 0
    max_in_flight: int = 0


@dataclass
class RecordedRequest:
    """One request as received. ``body`` is the parsed JSON (None if absent or invalid);
    ``headers`` have lower-case names; ``status`` is filled in when the response is sent
    (None while in flight, and for hangs)."""

    method: str
    path: str
    endpoint: str
    query: dict[str, str]
    headers: dict[str, str]
    body: Any
    deployment: str | None = None
    status: int | None = None
    received_at: float = 0.0


class Stats:
    """Thread-safe counters plus the bounded request log."""

    def __init__(self, log_size: int) -> None:
        self._lock = threading.Lock()
        self._log: deque[RecordedRequest] = deque(maxlen=log_size)
        self.clear()

    def clear(self) -> None:
        """Zero the counters and empty the log. ``in_flight`` is a gauge, not a count: requests
        still being answered stay in it (and in ``max_in_flight``), so it never goes negative."""
        with self._lock:
            self._total = 0
            self._by_endpoint: Counter[str] = Counter()
            self._by_status: Counter[int] = Counter()
            self._in_flight = getattr(self, "_in_flight", 0)
            self._max_in_flight = self._in_flight
            self._log.clear()

    def begin(self, record: RecordedRequest) -> None:
        with self._lock:
            self._total += 1
            self._by_endpoint[record.endpoint] += 1
            self._in_flight += 1
            self._max_in_flight = max(self._max_in_flight, self._in_flight)
            self._log.append(record)

    def finish(self, record: RecordedRequest, status: int | None) -> None:
        with self._lock:
            self._in_flight -= 1
            record.status = status
            if status is not None:
                self._by_status[status] += 1

    def snapshot(self) -> Counters:
        with self._lock:
            return Counters(self._total, dict(self._by_endpoint), dict(self._by_status),
                            self._in_flight, self._max_in_flight)

    def requests(self) -> list[RecordedRequest]:
        with self._lock:
            return list(self._log)
