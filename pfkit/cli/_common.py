"""What every command shares: error reporting, input parsing, JSON printing."""

from __future__ import annotations

import json
import sys
import traceback
from pathlib import Path
from typing import Any

from .._secrets import scrub
from ..errors import PfkitError, UserError

EXIT_ERROR = 1
EXIT_USAGE = 2


def fail(message: str, hint: str | None = None, code: str = "UsageError") -> UserError:
    return UserError(message, code=code, hint=hint)


def err(text: str) -> None:
    """One line (or block) on stderr, with every known secret masked."""
    sys.stderr.write(scrub(text).rstrip("\n") + "\n")


def warn(message: str) -> None:
    err(f"pfkit: warning: {message}")


def report_error(exc: BaseException, *, debug: bool) -> int:
    """One clear line; with ``--debug`` the traceback first: the user's own (from their tool)
    when the error came from one, pfkit's otherwise. Secrets are masked in all of it."""
    if debug:
        user_trace = getattr(exc, "user_traceback", None)
        if user_trace:
            err(user_trace)
        else:
            err("".join(traceback.format_exception(type(exc), exc, exc.__traceback__)))
    if isinstance(exc, PfkitError):
        err(f"pfkit: error: {exc}")
        return EXIT_ERROR
    err(f"pfkit: internal error: ({type(exc).__name__}) {exc}")
    if not debug:
        err("Re-run with --debug for the traceback, and please report it.")
    return EXIT_ERROR


def parse_key_values(pairs: list[str] | None, *, option: str) -> dict[str, str]:
    """``["a=1", "b=x=y"]`` -> ``{"a": "1", "b": "x=y"}``; values stay text."""
    result: dict[str, str] = {}
    for pair in pairs or []:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise fail(f"{option} expects key=value, got {pair!r}",
                       hint=f"Write it as  {option} name=value.")
        result[key.strip()] = value
    return result


def read_inputs_file(path: str) -> dict[str, Any]:
    """A .json object, or the first line of a .jsonl file."""
    file = Path(path)
    if not file.is_file():
        raise fail(f"input file {path} does not exist")
    text = file.read_text(encoding="utf-8")
    number = 1
    if file.suffix == ".jsonl":
        lines = [(n, line) for n, line in enumerate(text.splitlines(), start=1) if line.strip()]
        if not lines:
            raise fail(f"{path} has no lines")
        number, text = lines[0]
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        line = number if file.suffix == ".jsonl" else exc.lineno
        raise UserError(f"{path}:{line}: not valid JSON ({exc.msg})", code="InvalidInputFile",
                        hint="Fix the JSON, or pass inputs with --inputs key=value.") from None
    if not isinstance(data, dict):
        raise fail(f"{path} must hold a JSON object of flow inputs, got {type(data).__name__}")
    return data


def to_json(value: Any) -> str:
    """JSON text for people (indented, UTF-8 kept), secrets masked. A value JSON cannot hold
    (nested too deeply, containing itself, a huge integer) is shown by its type, not a crash."""
    try:
        text = json.dumps(value, ensure_ascii=False, indent=2, default=str)
    except (ValueError, RecursionError) as exc:
        reason = "nested too deeply" if isinstance(exc, RecursionError) else str(exc)
        text = json.dumps({"unprintable": f"{type(value).__name__} ({reason})"}, indent=2)
    return scrub(text)


def print_json(value: Any) -> None:
    sys.stdout.write(to_json(value) + "\n")
