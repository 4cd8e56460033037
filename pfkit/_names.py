"""Names that become paths (runs, nodes, connections): one rule, checked where they enter.

A safe name is 1-200 characters of letters, digits, ``_``, ``-`` and ``.``, starts with a letter,
digit or ``_``, and is not ``.`` or ``..``: it can never leave the folder it is joined to.
"""

from __future__ import annotations

import re

_SAFE = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.\-]{0,199}")


def is_safe_name(name: object) -> bool:
    return isinstance(name, str) and _SAFE.fullmatch(name) is not None and name not in (".", "..")


def unsafe_name_reason(name: object) -> str | None:
    """Why ``name`` cannot be used as a path component, or None when it can."""
    if not isinstance(name, str):
        return f"it is a {type(name).__name__}, not text"
    if not name:
        return "it is empty"
    if len(name) > 200:
        return f"it is {len(name)} characters long (at most 200)"
    if name in (".", ".."):
        return "it is a relative folder name"
    if _SAFE.fullmatch(name) is None:
        bad = sorted({c for c in name if not (c.isascii() and (c.isalnum() or c in "_.-"))})
        if bad:
            return f"it contains {''.join(bad)!r}"
        return "it must start with a letter, a digit or '_'"
    return None
