"""The one error shape of every endpoint: ``{"error": {"code", "message"}}`` (promptflow's),
every secret masked, never a stack trace."""

from __future__ import annotations

import json
from typing import Any

from .._secrets import scrub, scrub_value

MAX_MESSAGE = 2000  # an error message echoes at most this much (a hostile input stays short)


class ApiError(Exception):
    """An HTTP error answer: status, code, message."""

    def __init__(self, status: int, code: str, message: str,
                 headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.headers = headers or {}


def error_body(code: str, message: str) -> bytes:
    text = scrub(str(message))
    if len(text) > MAX_MESSAGE:
        text = text[:MAX_MESSAGE] + " ..."
    return json_bytes({"error": {"code": scrub(code), "message": text}})


def json_bytes(value: Any) -> bytes:
    """JSON of a response body, secrets masked. Values JSON cannot hold become their text."""
    value = scrub_value(value)
    try:
        return json.dumps(value, ensure_ascii=False, default=str).encode("utf-8")
    except (ValueError, RecursionError):
        return json.dumps({"error": {"code": "UnserializableOutput",
                                     "message": "the flow's outputs cannot be written as JSON"}}
                          ).encode("utf-8")
