"""A progress line on stderr: lines done/total, rate, errors, tokens, ETA."""

from __future__ import annotations

import sys
import time
from typing import TextIO


def _duration(seconds: float) -> str:
    seconds = int(seconds)
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"


class Progress:
    """Redraws one line on a terminal (at most ten times a second); elsewhere (CI logs) prints a
    line every ``log_every`` seconds. Always ends with a summary line."""

    def __init__(self, total: int | None, *, label: str = "", stream: TextIO | None = None,
                 enabled: bool = True, log_every: float = 10.0) -> None:
        self.total = total
        self.label = label
        self.stream = stream or sys.stderr
        self.enabled = enabled
        self.tty = enabled and getattr(self.stream, "isatty", lambda: False)()
        self.interval = 0.1 if self.tty else log_every
        self.done = self.failed = self.tokens = 0
        self.start = time.monotonic()
        self._last = 0.0

    def update(self, failed: bool, tokens: int = 0) -> None:
        self.done += 1
        self.failed += int(failed)
        self.tokens += tokens
        now = time.monotonic()
        if self.enabled and now - self._last >= self.interval:
            self._last = now
            self._draw(now)

    def text(self, now: float | None = None) -> str:
        elapsed = max((now or time.monotonic()) - self.start, 1e-9)
        rate = self.done / elapsed
        total = f"/{self.total}" if self.total is not None else ""
        parts = [f"{self.label}lines {self.done}{total}", f"{rate:,.1f} lines/s"]
        if self.failed:
            parts.append(f"{self.failed} failed")
        if self.tokens:
            parts.append(f"{self.tokens:,} tokens")
        if self.total and rate > 0 and self.done < self.total:
            parts.append(f"ETA {_duration((self.total - self.done) / rate)}")
        else:
            parts.append(f"elapsed {_duration(elapsed)}")
        return " | ".join(parts)

    def _draw(self, now: float) -> None:
        if self.tty:
            self.stream.write("\r\033[K" + self.text(now))
        else:
            self.stream.write(self.text(now) + "\n")
        self.stream.flush()

    # -- as a run observer -------------------------------------------------------------------

    def on_run_start(self, event) -> None:
        self.total = event.total
        self.done = event.reused
        self.start = time.monotonic()

    def on_line_end(self, line) -> None:
        self.update(line.status != "Completed", int((line.usage or {}).get("total_tokens") or 0))

    def on_run_end(self, event) -> None:
        self.close()

    def close(self) -> None:
        if not self.enabled:
            return
        if self.tty:
            self.stream.write("\r\033[K")
        self.stream.write(self.text() + "\n")
        self.stream.flush()
