"""Cassettes: a cache's entries as a JSONL file committed beside a flow, replayed in CI.

One JSON object per line (key, kind, identity, request, response), sorted by key, credential-like
fields removed and registered secrets masked; written atomically.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import NamedTuple

from .. import _secrets
from ..errors import Location, UserError
from ._cache_keys import KINDS, canonical_json, strip_secrets


class Entry(NamedTuple):
    """One stored call; the three payloads are JSON text."""

    key: str
    kind: str
    identity_json: str
    request_json: str
    response_json: str



def cassette_line(entry: Entry) -> str:
    record = {"key": entry.key, "kind": entry.kind,
              "identity": strip_secrets(json.loads(entry.identity_json)),
              "request": strip_secrets(json.loads(entry.request_json)),
              "response": strip_secrets(json.loads(entry.response_json))}
    record = _secrets.scrub_value(record)
    return json.dumps(record, ensure_ascii=False)


def write_atomic(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="\n") as handle:
            handle.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def read_cassette(path: Path) -> list[Entry]:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise UserError(f"Cassette {path} does not exist.", code="CassetteNotFound",
                        location=Location(file=str(path))) from None
    return [parse_cassette_line(path, number, line)
            for number, line in enumerate(text.splitlines(), start=1) if line.strip()]


def parse_cassette_line(path: Path, number: int, line: str) -> Entry:
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
    return Entry(record["key"], record["kind"], canonical_json(record["identity"]),
                  canonical_json(record["request"]), json.dumps(record["response"],
                                                                ensure_ascii=False))


