"""Per-connection limits shared by every node, line and evaluator using the connection:
concurrent requests, requests per minute and tokens per minute."""

from __future__ import annotations

import asyncio
import collections
import time
import weakref
from contextlib import asynccontextmanager
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Limits:
    max_concurrency: int | None = None
    requests_per_minute: int | None = None
    tokens_per_minute: int | None = None


class _LoopState:
    def __init__(self, max_concurrency: int | None) -> None:
        self.cond = asyncio.Condition()
        self.in_flight = 0
        # concurrency alone: a semaphore wakes exactly one waiter per release
        self.semaphore = asyncio.Semaphore(max_concurrency) if max_concurrency else None


class Limiter:
    """``async with limiter.slot(tokens):`` waits until the request fits every limit.

    Requests and tokens are counted over a sliding 60-second window. The token count of a
    request is estimated up front and corrected with :meth:`settle` once the usage is known.
    """

    WINDOW = 60.0

    def __init__(self, limits: Limits) -> None:
        self.limits = limits
        self._states: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
        self._requests: collections.deque[float] = collections.deque()
        self._tokens: collections.deque[list[float]] = collections.deque()  # [time, tokens]
        self.max_in_flight_seen = 0

    @property
    def active(self) -> bool:
        lim = self.limits
        return bool(lim.max_concurrency or lim.requests_per_minute or lim.tokens_per_minute)

    def _state(self) -> _LoopState:
        loop = asyncio.get_running_loop()
        state = self._states.get(loop)
        if state is None:
            state = self._states[loop] = _LoopState(self.limits.max_concurrency)
        return state

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

    @property
    def windowed(self) -> bool:
        return bool(self.limits.requests_per_minute or self.limits.tokens_per_minute)

    @asynccontextmanager
    async def slot(self, tokens: int = 0):
        if not self.active:
            yield None
            return
        state = self._state()
        if not self.windowed:
            async with state.semaphore:
                state.in_flight += 1
                self.max_in_flight_seen = max(self.max_in_flight_seen, state.in_flight)
                try:
                    yield None
                finally:
                    state.in_flight -= 1
            return
        entry = None
        async with state.cond:
            while True:
                now = time.monotonic()
                self._prune(now)
                if self.limits.max_concurrency and state.in_flight >= self.limits.max_concurrency:
                    await state.cond.wait()
                    continue
                wait = self._wait_time(tokens, now)
                if wait <= 0:
                    break
                try:
                    await asyncio.wait_for(state.cond.wait(), timeout=wait)
                except asyncio.TimeoutError:
                    pass
            state.in_flight += 1
            self.max_in_flight_seen = max(self.max_in_flight_seen, state.in_flight)
            self._requests.append(now)
            entry = [now, float(tokens)]
            self._tokens.append(entry)
        try:
            yield entry
        finally:
            async with state.cond:
                state.in_flight -= 1
                state.cond.notify_all()

    @staticmethod
    def settle(entry: list[float] | None, actual_tokens: int) -> None:
        """Replace a request's estimated tokens with the real count."""
        if entry is not None:
            entry[1] = float(actual_tokens)


def estimate_tokens(request: dict) -> int:
    """A cheap upper-ish estimate: ~4 characters a token, plus the completion budget."""
    text = 0
    for message in request.get("messages") or []:
        content = message.get("content")
        if isinstance(content, str):
            text += len(content)
        elif isinstance(content, list):
            text += sum(len(str(part.get("text", ""))) for part in content if isinstance(part, dict))
    prompt = request.get("prompt")
    if isinstance(prompt, str):
        text += len(prompt)
    inputs = request.get("input")
    if isinstance(inputs, str):
        text += len(inputs)
    elif isinstance(inputs, list):
        text += sum(len(str(i)) for i in inputs)
    return text // 4 + 1 + int(request.get("max_tokens") or 0)
