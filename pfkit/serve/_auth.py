"""Optional API keys: ``PFKIT_API_KEYS`` (comma-separated) or a file (one key a line, ``#``
comments), sent as ``Authorization: Bearer KEY``. Keys are compared in constant time and
registered as secrets, so no log, error or response ever shows one."""

from __future__ import annotations

import hmac
import os
from collections.abc import Iterable
from pathlib import Path

from .. import _secrets
from ..errors import UserError

ENV_KEYS = "PFKIT_API_KEYS"
ENV_KEYS_FILE = "PFKIT_API_KEYS_FILE"
MIN_KEY_LENGTH = 16


class ApiKeys:
    """The accepted keys (empty: no authentication)."""

    def __init__(self, keys: Iterable[str] = ()) -> None:
        cleaned = [k.strip() for k in keys if k and k.strip()]
        short = [k for k in cleaned if len(k) < MIN_KEY_LENGTH]
        if short:
            raise UserError(f"an API key is shorter than {MIN_KEY_LENGTH} characters",
                            code="WeakApiKey",
                            hint="Use long random keys, e.g. python -c \"import secrets; "
                                 "print(secrets.token_urlsafe(32))\".")
        self._keys = tuple(k.encode("utf-8") for k in cleaned)
        _secrets.register(*cleaned)

    def __bool__(self) -> bool:
        return bool(self._keys)

    def __len__(self) -> int:
        return len(self._keys)

    def accepts(self, authorization: str | None) -> bool:
        if not self._keys:
            return True
        if not authorization:
            return False
        scheme, _, token = authorization.strip().partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            return False
        given = token.strip().encode("utf-8", "replace")
        ok = False
        for key in self._keys:  # every key compared, so the time says nothing about which
            ok |= hmac.compare_digest(given, key)
        return ok

    @classmethod
    def from_sources(cls, keys: Iterable[str] | str | None = None,
                     file: str | Path | None = None, *, environ: bool = True) -> ApiKeys:
        """Keys given directly, from ``file``, and from ``$PFKIT_API_KEYS`` /
        ``$PFKIT_API_KEYS_FILE`` (when ``environ``)."""
        found: list[str] = []
        if isinstance(keys, str):
            found += keys.split(",")
        elif keys:
            found += list(keys)
        files = [file] if file else []
        if environ:
            found += os.environ.get(ENV_KEYS, "").split(",")
            if os.environ.get(ENV_KEYS_FILE):
                files.append(os.environ[ENV_KEYS_FILE])
        for path in files:
            found += read_keys_file(path)
        return cls(found)


def read_keys_file(path: str | Path) -> list[str]:
    file = Path(path).expanduser()
    try:
        text = file.read_text(encoding="utf-8")
    except OSError as exc:
        raise UserError(f"cannot read the API keys file {file}: {exc.strerror or exc}",
                        code="ApiKeysFileUnreadable",
                        hint="Give a file with one key a line (--api-keys-file).") from None
    keys = [line.strip() for line in text.splitlines()
            if line.strip() and not line.strip().startswith("#")]
    if not keys:
        raise UserError(f"the API keys file {file} holds no key", code="ApiKeysFileEmpty",
                        hint="Write one key a line; lines starting with # are comments.")
    return keys
