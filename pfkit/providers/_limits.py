"""Per-connection limits shared by every node, line, flow and evaluator using the connection:
concurrent requests, requests per minute and tokens per minute.

A :class:`Limiter` is not tied to an event loop: its accounting is thread-safe and each waiter
waits on a future of its own loop, so one session's budget holds across the session's
background loop, callers' own loops and threads, at once or one after another."""

from __future__ import annotations

import asyncio
import collections
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from ._text import request_text


@dataclass(frozen=True, slots=True)
class Limits:
    max_concurrency: int | None = None
    requests_per_minute: int | None = None
    tokens_per_minute: int | None = None


class Limiter:
    """``async with limiter.slot(tokens):`` waits until the request fits every limit.

    Requests and tokens are counted over a sliding 60-second window. The token count of a
    request is estimated up front and corrected with :meth:`settle` once the usage is known.

    The accounting is guarded by a thread lock and waiters are futures of their own event
    loop, woken thread-safely: one limiter (so one connection's budget) is shared by every
    task, thread and event loop of a session, at the same time or one after another.
    """

    WINDOW = 60.0

    def __init__(self, limits: Limits) -> None:
        self.limits = limits
        self._lock = threading.Lock()
        self._in_flight = 0
        self._requests: collections.deque[float] = collections.deque()
        self._tokens: collections.deque[list[float]] = collections.deque()  # [time, tokens]
        self._waiters: collections.deque[tuple[asyncio.AbstractEventLoop, asyncio.Future]] = (
            collections.deque())
        self.max_in_flight_seen = 0

    @property
    def active(self) -> bool:
        lim = self.limits
        return bool(lim.max_concurrency or lim.requests_per_minute or lim.tokens_per_minute)

    @property
    def in_flight(self) -> int:
        return self._in_flight

    def tokens_in_window(self) -> float:
        """Tokens counted in the current window (estimates until settled)."""
        with self._lock:
            self._prune(time.monotonic())
            return sum(t for _, t in self._tokens)

    def requests_in_window(self) -> int:
        with self._lock:
            self._prune(time.monotonic())
            return len(self._requests)

    def _prune(self, now: float) -> None:
        while self._requests and now - self._requests[0] >= self.WINDOW:
            self._requests.popleft()
        while self._tokens and now - self._tokens[0][0] >= self.WINDOW:
            self._tokens.popleft()

    def _wait_time(self, tokens: int, now: float) -> float:
        lim = self.limits
        wait = 0.0
        if lim.requests_per_minute and len(self._requests) >= lim.requests_per_minute:
            wait = max(wait, self._requests[0] + self.WINDOW - now)
        if lim.tokens_per_minute:
            used = sum(t for _, t in self._tokens)
            if used and used + tokens > lim.tokens_per_minute:
                # wait until enough of the window has expired
                need = used + tokens - lim.tokens_per_minute
                freed = 0.0
                for stamp, count in self._tokens:
                    freed += count
                    if freed >= need:
                        wait = max(wait, stamp + self.WINDOW - now)
                        break
        return max(wait, 0.0)

    def _try_take(self, tokens: int) -> tuple[list[float] | None, float | None]:
        """Under the lock: (entry, None) when the request may go now, else (None, seconds to
        wait or None for "until a slot is released")."""
        now = time.monotonic()
        self._prune(now)
        if self.limits.max_concurrency and self._in_flight >= self.limits.max_concurrency:
            return None, None
        wait = self._wait_time(tokens, now)
        if wait > 0:
            return None, wait
        self._in_flight += 1
        self.max_in_flight_seen = max(self.max_in_flight_seen, self._in_flight)
        entry = [now, float(tokens)]
        if self.windowed:
            self._requests.append(now)
            self._tokens.append(entry)
        return entry, None

    @property
    def windowed(self) -> bool:
        return bool(self.limits.requests_per_minute or self.limits.tokens_per_minute)

    async def acquire(self, tokens: int = 0) -> list[float]:
        """Wait for a slot. With concurrency alone a released slot is handed to the longest
        waiter (first come, first served); with windows a woken waiter checks again."""
        loop = asyncio.get_running_loop()
        while True:
            with self._lock:
                if not self._waiters or self.windowed:
                    entry, wait = self._try_take(tokens)
                    if entry is not None:
                        return entry
                else:  # others are queued: wait behind them
                    wait = None
                future = loop.create_future()
                self._waiters.append((loop, future))
            # a waiter that stops waiting (timeout, cancellation) leaves a done future in the
            # queue, skipped when its turn comes: no O(n) removal
            try:
                if wait is None:
                    granted = await future
                else:
                    granted = await asyncio.wait_for(future, timeout=wait)
            except asyncio.TimeoutError:
                continue
            except BaseException:
                if future.done() and not future.cancelled():
                    if future.result():
                        self.release()  # a slot handed to us: pass it on
                    else:
                        self._wake_one()  # the wake-up meant for us goes to the next waiter
                else:
                    future.cancel()
                raise
            if granted:
                return [time.monotonic(), float(tokens)]

    def release(self) -> None:
        if self.windowed:
            with self._lock:
                self._in_flight -= 1
            self._wake_one()
            return
        self._hand_over()

    def _hand_over(self) -> None:
        """Concurrency only: the slot goes to the longest live waiter, else back to the pool."""
        with self._lock:
            if not self._signal_longest(True, self._grant):
                self._in_flight -= 1

    def _grant(self, future: asyncio.Future) -> None:
        if not future.done():
            future.set_result(True)
        else:  # cancelled meanwhile: the slot goes on
            self._hand_over()

    def _wake_one(self) -> None:
        """Windowed limits: wake the longest waiter (on its own loop) to check again."""
        with self._lock:
            self._signal_longest(False, self._resolve)

    def _signal_longest(self, value: bool, relay: Callable[[asyncio.Future], None]) -> bool:
        """Under the lock: resolve the longest live waiter with ``value``, on its own loop
        (``relay(future)`` runs there and handles a waiter cancelled meanwhile); False when
        nobody waits."""
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        while self._waiters:
            loop, future = self._waiters.popleft()
            if future.done() or loop.is_closed():
                continue
            if loop is running:  # same loop: no cross-thread wake-up (a syscall) needed
                future.set_result(value)
                return True
            try:
                loop.call_soon_threadsafe(relay, future)
            except RuntimeError:  # its loop closed meanwhile
                continue
            return True
        return False

    def _resolve(self, future: asyncio.Future) -> None:
        if not future.done():
            future.set_result(False)
        else:  # cancelled meanwhile: pass the wake-up on
            self._wake_one()

    def slot(self, tokens: int = 0) -> _Slot:
        """``async with limiter.slot(tokens) as entry:`` - ``entry`` is what :meth:`settle`
        corrects (None without windowed limits)."""
        return _Slot(self, tokens)

    def settle(self, entry: list[float] | None, actual_tokens: int) -> None:
        """Replace a request's estimated tokens with the real count."""
        if entry is not None:
            with self._lock:
                entry[1] = float(actual_tokens)


class _Slot:
    """The async context manager of :meth:`Limiter.slot` (a class: cheaper than a generator)."""

    __slots__ = ("limiter", "tokens", "taken")

    def __init__(self, limiter: Limiter, tokens: int) -> None:
        self.limiter = limiter
        self.tokens = tokens
        self.taken = False

    async def __aenter__(self) -> list[float] | None:
        limiter = self.limiter
        if not limiter.active:
            return None
        entry = await limiter.acquire(self.tokens)
        self.taken = True
        return entry if limiter.windowed else None

    async def __aexit__(self, *exc_info: object) -> None:
        if self.taken:
            self.taken = False
            self.limiter.release()


def estimate_tokens(request: dict) -> int:
    """A cheap upper-ish estimate: ~4 characters a token, plus the completion budget."""
    return len(request_text(request, sep="")) // 4 + 1 + int(request.get("max_tokens") or 0)
