"""Cache keys and modes: which calls share an answer, and when the cache is consulted.

:func:`cache_key` is the sha256 of a canonical JSON of the model's secret-free ``identity``, the
call kind and the normalised request (:func:`normalise_request`).
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
from typing import Any

from ..errors import UserError

CACHE_ENV_VAR = "PFKIT_CACHE"
CACHE_MODES: tuple[str, ...] = ("off", "read_write", "record", "replay")
KINDS: tuple[str, ...] = ("chat", "completion", "embedding")
KEY_VERSION = 1

# Request keys that never change the answer: transport (streaming) and end-user attribution.
_IGNORED_REQUEST_KEYS = frozenset({"stream", "stream_options", "user"})
# Names of fields that may hold credentials; removed before anything is written to disk.
_SECRET_NAME = re.compile(
    r"(^|[_-])(api[_-]?key|authorization|access[_-]?token|secret|password|subscription[_-]?key)$",
    re.IGNORECASE)


def normalise_request(request: dict[str, Any]) -> dict[str, Any]:
    """The part of a request that determines the answer.

    Drops ``stream``, ``stream_options`` and ``user``, drops keys whose value is None (at any
    depth of nested dicts) and writes integral floats as ints (``1.0`` -> ``1``) so that equal
    requests always give equal keys.
    """
    return {k: _normalise_value(v) for k, v in request.items()
            if k not in _IGNORED_REQUEST_KEYS and v is not None}


def _normalise_value(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _normalise_value(v) for k, v in value.items() if v is not None}
    if isinstance(value, (list, tuple)):
        return [_normalise_value(v) for v in value]
    if isinstance(value, float) and math.isfinite(value) and value.is_integer():
        return int(value)
    return value


def canonical_json(value: Any) -> str:
    """Sorted keys, no whitespace, UTF-8 kept: the same text for equal values."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def cache_key(identity: dict[str, Any], kind: str, request: dict[str, Any]) -> str:
    """The sha256 hex digest naming a call of ``kind`` with ``request`` to the model ``identity``.

    A streamed and a non-streamed chat call with otherwise equal requests share a key.
    Credential-like fields of ``identity`` (which should have none) are ignored, so the key is
    the one recomputed from a stored or exported entry.
    """
    if kind not in KINDS:
        raise ValueError(f"unknown call kind {kind!r}; expected one of {', '.join(KINDS)}")
    payload = {"v": KEY_VERSION, "identity": strip_secrets(identity), "kind": kind,
               "request": normalise_request(request)}
    return hashlib.sha256(canonical_json(payload).encode("utf-8")).hexdigest()


def strip_secrets(value: Any) -> Any:
    """A copy of ``value`` without any dict entry whose name looks like a credential."""
    if isinstance(value, dict):
        return {k: strip_secrets(v) for k, v in value.items()
                if not (isinstance(k, str) and _SECRET_NAME.search(k))}
    if isinstance(value, (list, tuple)):
        return [strip_secrets(v) for v in value]
    return value


# -------------------------------------------------------------------------------------- modes

def resolve_cache_mode(cli_value: str | None) -> str:
    """The cache mode: the CLI flag wins, else ``$PFKIT_CACHE``, else ``"off"``.

    Values are case-insensitive and ``read-write`` is accepted for ``read_write``.
    """
    if cli_value is not None and cli_value.strip():
        return _check_mode(cli_value, "--cache")
    env_value = os.environ.get(CACHE_ENV_VAR, "")
    if env_value.strip():
        return _check_mode(env_value, f"${CACHE_ENV_VAR}")
    return "off"


def _check_mode(value: str, source: str) -> str:
    mode = value.strip().lower().replace("-", "_")
    if mode not in CACHE_MODES:
        raise UserError(f"Unknown cache mode {value!r} from {source}; valid modes are: "
                        f"{', '.join(CACHE_MODES)}.", code="InvalidCacheMode",
                        hint=f"Use one of {', '.join(CACHE_MODES)}.")
    return mode


def is_nondeterministic(kind: str, request: dict[str, Any]) -> bool:
    """True for a chat/completion request sampled with temperature > 0 and no ``seed``.

    A missing temperature counts as OpenAI's default of 1.0. Embeddings are deterministic.
    """
    if kind == "embedding" or request.get("seed") is not None:
        return False
    temperature = request.get("temperature")
    if temperature is None:
        return True
    try:
        return float(temperature) > 0
    except (TypeError, ValueError):
        return True


