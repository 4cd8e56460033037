"""Checking a connection's fields when it is created and each time it is loaded.

Every problem is a :class:`ConnectionSettingError` naming the connection, its file and the
field, and saying what is expected - never a traceback later, and never blamed on the server.

A secret with surrounding whitespace (typically the trailing newline of a pasted key or a
key file) is stripped, with a warning that names the field (never the value); whitespace or
control characters *inside* a secret are refused.
"""

from __future__ import annotations

import math
import re
import sys
import threading
from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import urlsplit

from ..errors import Location, UserError
from ._registry import ConnectionType

ENV_REF = re.compile(r"^\$\{env:([A-Za-z_][A-Za-z0-9_]*)\}$")


class ConnectionSettingError(UserError):
    default_code = "InvalidConnection"


def _whole(minimum: int) -> Callable[[Any], int]:
    def parse(value: Any) -> int:
        if isinstance(value, bool):
            raise ValueError
        if isinstance(value, float):
            if not value.is_integer():
                raise ValueError
            value = int(value)
        number = int(str(value).strip()) if not isinstance(value, int) else value
        if number < minimum:
            raise ValueError
        return number

    return parse


def _seconds(value: Any) -> float:
    if isinstance(value, bool):
        raise ValueError
    number = float(str(value).strip()) if not isinstance(value, (int, float)) else float(value)
    if not math.isfinite(number) or number <= 0:
        raise ValueError
    return number


# pfkit's options on model connections: field -> (parser, what is expected)
OPTIONS: dict[str, tuple[Callable[[Any], Any], str]] = {
    "timeout": (_seconds, "a number of seconds greater than 0 (e.g.  timeout: 60)"),
    "max_retries": (_whole(0), "a whole number, 0 or more (e.g.  max_retries: 3)"),
    "max_concurrency": (_whole(1), "a whole number of concurrent requests, 1 or more "
                                   "(e.g.  max_concurrency: 8)"),
    "requests_per_minute": (_whole(1), "a whole number, 1 or more; leave it out for no limit "
                                       "(e.g.  requests_per_minute: 600)"),
    "tokens_per_minute": (_whole(1), "a whole number, 1 or more; leave it out for no limit "
                                     "(e.g.  tokens_per_minute: 90000)"),
    "n_ctx": (_whole(16), "a whole number of tokens, 16 or more (e.g.  n_ctx: 4096)"),
}

_warned: set[tuple[str, str]] = set()
_warn_lock = threading.Lock()


def warn(name: str, field: str, message: str) -> None:
    """Print a warning once per connection and field in this process."""
    with _warn_lock:
        if (name, field) in _warned:
            return
        _warned.add((name, field))
    print(f"pfkit: warning: connection '{name}': {message}", file=sys.stderr)


def is_env_ref(value: Any) -> bool:
    return isinstance(value, str) and ENV_REF.match(value) is not None


def check_fields(ctype: ConnectionType, record: Mapping[str, Any], *, name: str,
                 file: str | None, resolved: bool) -> dict[str, Any]:
    """A copy of ``record`` with options parsed to numbers and secrets stripped.

    ``resolved=False`` (at create time) skips values still written as ``${env:VAR}``: they are
    checked once resolved, each time the connection is loaded."""
    out = dict(record)
    # when loaded, callers may put the error at the node that uses the connection: the message
    # itself names the connection's file
    label = f"connection '{name}' ({file})" if resolved and file else f"connection '{name}'"

    def fail(field: str, problem: str, hint: str | None = None) -> ConnectionSettingError:
        return ConnectionSettingError(
            f"{label}: field '{field}' {problem}", code="InvalidConnection",
            location=Location(file=file, field=field), hint=hint)

    def pending(value: Any) -> bool:
        return not resolved and is_env_ref(value)

    if ctype.model:
        for field, (parse, expected) in OPTIONS.items():
            value = record.get(field)
            if value == "":
                out.pop(field, None)
                continue
            if value is None or pending(value):
                continue
            try:
                out[field] = parse(value)
            except (TypeError, ValueError, OverflowError):
                raise fail(field, f"is {_show(value)}; expected {expected}",
                           f"Fix '{field}' (or remove it) and create the connection again.") from None
    for field in ctype.url_fields:
        value = record.get(field)
        if value is None or value == "" or pending(value):
            continue
        if not _is_url(value):
            raise fail(field, f"is {_show(value)}, which is not an http(s) URL",
                       f"Give the endpoint's URL, e.g.  {field}: http://127.0.0.1:8000/v1")
    for field in ctype.secret_fields:
        value = record.get(field)
        if value is None or pending(value):
            continue
        out[field] = clean_secret(name, field, value, fail)
    for field in ctype.config_fields:
        value = record.get(field)
        if field in ctype.url_fields or value is None or pending(value) or field in OPTIONS:
            continue
        if isinstance(value, (dict, list)):
            raise fail(field, f"is a {type(value).__name__}; expected a string")
    return out


def clean_secret(name: str, field: str, value: Any,
                 fail: Callable[..., ConnectionSettingError] | None = None) -> Any:
    """A secret without surrounding whitespace (warned about); refuses what cannot be a key."""
    if fail is None:
        def fail(field: str, problem: str, hint: str | None = None) -> ConnectionSettingError:
            return ConnectionSettingError(f"connection '{name}': field '{field}' {problem}",
                                          location=Location(field=field), hint=hint)
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        raise fail(field, f"is a {type(value).__name__}; expected a string")
    text = str(value)
    stripped = text.strip()
    if stripped != text:
        from .. import _secrets

        _secrets.register(text)  # masked in any form
        warn(name, field, f"'{field}' had surrounding whitespace (a trailing newline?); it was "
                          "removed. Remove it from the file or variable to silence this warning.")
    if any(ch.isspace() or ord(ch) < 32 or ord(ch) == 127 for ch in stripped):
        raise fail(field, "contains whitespace or control characters, which a key never has",
                   "Check the value (or the environment variable it names).")
    return stripped


def check_secrets_mapping(name: str, secrets: Mapping[str, Any], file: str | None) -> dict:
    """A custom connection's ``secrets``: each stripped of surrounding whitespace (warned)."""
    cleaned = {}
    for key, value in secrets.items():
        if value is None or is_env_ref(value):
            cleaned[key] = value
            continue
        if isinstance(value, str):
            stripped = value.strip()
            if stripped != value:
                from .. import _secrets

                _secrets.register(value)
                warn(name, f"secrets.{key}", f"'secrets.{key}' had surrounding whitespace; it "
                                            "was removed.")
            cleaned[key] = stripped
        else:
            cleaned[key] = value
    return cleaned


def _is_url(value: Any) -> bool:
    if not isinstance(value, str) or any(ch.isspace() for ch in value):
        return False
    try:
        parts = urlsplit(value)
        parts.port  # noqa: B018 - raises on a bad port
    except ValueError:
        return False
    return parts.scheme in ("http", "https") and bool(parts.hostname)


def _show(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."
