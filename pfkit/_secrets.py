"""Secret values of the connections in use, and scrubbing them from anything shown or stored.

Whenever a connection is resolved (its ``${env:...}`` references read, its secret file opened),
its secret values are registered here. Everything that leaves pfkit - CLI output, error records,
run records, traces, HTTP responses - passes through :func:`scrub` / :func:`scrub_value` at the
place it is written, so a key that a tool put into its own exception message never shows.

Process-wide on purpose: a secret known to one flow is a secret for every output of the process.
"""

from __future__ import annotations

import json
import re
import threading
from typing import Any

MASK = "******"
MIN_LENGTH = 4  # shorter values would mask ordinary text; such "secrets" are not secret anyway

_lock = threading.Lock()
_secrets: set[str] = set()
_pattern: re.Pattern[str] | None = None
# Every secret as it is and as it reads inside JSON text (json.dumps escapes quotes,
# backslashes, control characters and, with ensure_ascii, all non-ASCII): for encoded records.
_json_pattern: re.Pattern[str] | None = None


def register(*values: Any) -> None:
    """Remember secret values (strings; others ignored). Surrounding whitespace is removed too
    (a key pasted with a trailing newline is masked with and without it)."""
    global _pattern, _json_pattern
    added = False
    with _lock:
        for value in values:
            if not isinstance(value, str):
                continue
            for candidate in {value, value.strip()}:
                if len(candidate) >= MIN_LENGTH and candidate not in _secrets:
                    _secrets.add(candidate)
                    added = True
        if added:
            ordered = sorted(_secrets, key=len, reverse=True)  # longest first
            _pattern = re.compile("|".join(re.escape(s) for s in ordered))
            forms = {form for s in ordered for form in
                     (s, json.dumps(s, ensure_ascii=False)[1:-1], json.dumps(s)[1:-1])}
            _json_pattern = re.compile("|".join(
                re.escape(f) for f in sorted(forms, key=len, reverse=True)))


def registered() -> list[str]:
    """The registered secret values, sorted (to hand to a worker process)."""
    with _lock:
        return sorted(_secrets)


def known() -> bool:
    return _pattern is not None


def scrub(text: str) -> str:
    """``text`` with every registered secret replaced by ``******``."""
    pattern = _pattern
    if pattern is None or not isinstance(text, str):
        return text
    return pattern.sub(MASK, text)


def scrub_value(value: Any) -> Any:
    """A copy of a JSON-like value (dicts, lists, tuples, strings) with secrets masked in every
    string, keys included. Other values are returned as they are."""
    if _pattern is None:
        return value
    return _walk(value, 0)


def dumps_scrubbed(value: Any, dumps: Any) -> str:
    """``dumps(value)`` (a JSON encoder) with every secret masked, in one pass over the text:
    in the value's strings and keys, and in what ``default=`` made of odd objects, escaped or
    not. Raises what ``dumps`` raises (a value too deep or that contains itself)."""
    pattern = _json_pattern
    text = dumps(value)
    return text if pattern is None else pattern.sub(MASK, text)


def _walk(value: Any, depth: int) -> Any:
    if isinstance(value, str):
        return scrub(value)
    if depth > 200:  # hostile nesting: stringify the rest rather than recurse without bound
        return scrub(repr(value)[:10_000])
    if isinstance(value, dict):
        return {(_walk(k, depth + 1) if isinstance(k, str) else k): _walk(v, depth + 1)
                for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        items = [_walk(v, depth + 1) for v in value]
        return items if isinstance(value, list) else tuple(items)
    return value


def _reset_for_tests() -> None:
    global _pattern, _json_pattern
    with _lock:
        _secrets.clear()
        _pattern = None
        _json_pattern = None
