"""Which process owns a running run, and whether it is still alive.

A run records its owner (host, pid, process start time, boot id) and a heartbeat that the
owner refreshes every few seconds. On the owner's host, the process table is the truth (a pid
reused by another process has another start time); elsewhere a heartbeat older than
``STALE_AFTER`` seconds means the owner is gone.
"""

from __future__ import annotations

import os
import socket
import time
from functools import lru_cache
from typing import Any

HEARTBEAT_EVERY = 5.0  # seconds
STALE_AFTER = 120.0  # seconds without a heartbeat before a run on another host counts as gone


def _read(path: str) -> str | None:
    try:
        with open(path, encoding="ascii", errors="replace") as fh:
            return fh.read().strip()
    except OSError:
        return None


def _start_ticks(pid: int) -> str | None:
    """The process start time in clock ticks since boot (Linux), or None."""
    stat = _read(f"/proc/{pid}/stat")
    if not stat:
        return None
    # the command name (field 2) may hold spaces and parentheses: split after the last ')'
    rest = stat.rsplit(")", 1)[-1].split()
    return rest[19] if len(rest) > 19 else None


@lru_cache(maxsize=1)
def _boot_id() -> str | None:
    return _read("/proc/sys/kernel/random/boot_id")


def current_owner() -> dict[str, Any]:
    pid = os.getpid()
    return {"host": socket.gethostname(), "pid": pid, "started": _start_ticks(pid),
            "boot_id": _boot_id()}


def owner_gone(owner: dict[str, Any] | None, heartbeat: float | None,
               now: float | None = None) -> bool:
    """True when the process recorded as ``owner`` surely no longer runs."""
    if not owner:
        return False  # written by an older version: nothing to go by
    now = time.time() if now is None else now
    if owner.get("host") != socket.gethostname():
        return heartbeat is not None and now - heartbeat > STALE_AFTER
    if owner.get("boot_id") and _boot_id() and owner["boot_id"] != _boot_id():
        return True  # the machine restarted since
    pid = owner.get("pid")
    if not isinstance(pid, int):
        return False
    if owner.get("started") is not None and os.path.isdir("/proc"):
        return _start_ticks(pid) != owner["started"]
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return heartbeat is not None and now - heartbeat > STALE_AFTER


def describe(owner: dict[str, Any] | None) -> str:
    if not owner:
        return "its process"
    return f"process {owner.get('pid')} on {owner.get('host')}"
