"""Connection files: promptflow's connection YAML, stored as files, secrets kept out of sight.

* A connection lives in ``$PFKIT_HOME/connections/<name>.yaml`` (``PFKIT_HOME`` defaults to
  ``~/.pfkit``). No OS keyring: promptflow's most common failure on Linux.
* A secret is best given as ``${env:VAR}``: the file then holds only the reference, resolved from
  the environment (or a ``.env`` file) each time the connection is used. A secret given
  literally is stored in a file readable only by its owner (mode 0600).
* ``show`` and ``list`` mask secrets; error messages never contain them. Every secret value is
  registered with :mod:`pfkit._secrets` when the connection is read, so it is masked in every
  output and record, whatever raised it.
* Every field is checked (``_validate``) when a connection is created and each time it is
  loaded: a bad ``timeout``, limit, URL or key names the connection, its file and the field.
  A secret's surrounding whitespace (a pasted key's trailing newline) is removed, with a
  warning.
* Types come from one registry (``_registry.CONNECTION_TYPES``).
* ``local`` always exists and needs no configuration: the embedded model.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from .. import _secrets
from ..errors import Location, UserError
from ._registry import CONNECTION_TYPES, ConnectionType, connection_type
from ._types import CustomConnection, LocalConnection, _Connection
from ._validate import ENV_REF, check_fields, check_secrets_mapping

MASK = "******"
LOCAL = "local"

_META_FIELDS = ("$schema", "name", "type", "module", "description")


class ConnectionError_(UserError):
    default_code = "ConnectionError"


__all__ = ["ConnectionError_", "ConnectionStore", "LocalConnection", "SecretResolver",
           "pfkit_home"]


def pfkit_home() -> Path:
    return Path(os.environ.get("PFKIT_HOME") or Path.home() / ".pfkit").expanduser()


def read_dotenv(path: Path) -> dict[str, str]:
    """``KEY=value`` lines (``export`` prefix, quotes and ``#`` comments allowed)."""
    values: dict[str, str] = {}
    if not path.is_file():
        return values
    for raw in path.read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if not line or line.startswith("#") or "=" not in line:
            continue
        key, _, value = line.removeprefix("export ").partition("=")
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
            value = value[1:-1]
        values[key.strip()] = value
    return values


class SecretResolver:
    """Resolves ``${env:VAR}``: the process environment first, then ``.env`` files (the current
    folder's, then ``$PFKIT_HOME/.env``). The files are read when needed and again whenever
    they change, so a long-lived session sees an edited ``.env``."""

    def __init__(self, extra_dotenv: list[Path] | None = None) -> None:
        self.extra = list(extra_dotenv or [])
        self._parsed: dict[Path, tuple[float, dict[str, str]]] = {}

    @property
    def files(self) -> list[Path]:
        return [Path.cwd() / ".env", *self.extra, pfkit_home() / ".env"]

    def lookup(self, var: str) -> str | None:
        if var in os.environ:
            return os.environ[var]
        for file in self.files:  # the first file that has it wins
            value = self._read(file).get(var)
            if value is not None:
                return value
        return None

    def _read(self, file: Path) -> dict[str, str]:
        try:
            stamp = file.stat().st_mtime
        except OSError:
            return {}
        cached = self._parsed.get(file)
        if cached is None or cached[0] != stamp:
            cached = self._parsed[file] = (stamp, read_dotenv(file))
        return cached[1]


class ConnectionStore:
    """Connection files under ``home/connections``. Without an explicit ``home`` the store
    follows ``$PFKIT_HOME`` (read at each use)."""

    def __init__(self, home: Path | None = None, resolver: SecretResolver | None = None) -> None:
        self._home = Path(home).expanduser() if home else None
        self.resolver = resolver or SecretResolver()

    @property
    def home(self) -> Path:
        return self._home or pfkit_home()

    @property
    def folder(self) -> Path:
        return self.home / "connections"

    # -- files ------------------------------------------------------------------------------

    def path(self, name: str) -> Path:
        if not re.fullmatch(r"[A-Za-z0-9_.\-]+", name or ""):
            raise ConnectionError_(f"invalid connection name {name!r}", code="InvalidConnectionName",
                                   hint="Use letters, digits, '_', '-' and '.'.")
        return self.folder / f"{name}.yaml"

    def names(self) -> list[str]:
        files = sorted(self.folder.glob("*.yaml")) if self.folder.is_dir() else []
        return [LOCAL, *[f.stem for f in files if f.stem != LOCAL]]

    def read(self, name: str) -> dict[str, Any]:
        if name == LOCAL and not self.path(LOCAL).is_file():
            return {"name": LOCAL, "type": "local"}
        path = self.path(name)
        if not path.is_file():
            known = ", ".join(self.names())
            raise ConnectionError_(
                f"connection '{name}' does not exist", code="ConnectionNotFound",
                hint=f"Create it with  pfkit connection create --file {name}.yaml --name {name}  "
                     f"(known connections: {known}).",
            )
        from ..spec._yaml import load_yaml_file, plain

        data = plain(load_yaml_file(path)) or {}
        if not isinstance(data, dict):
            raise ConnectionError_(f"{path} is not a YAML mapping", code="InvalidConnection",
                                   location=Location(file=str(path)))
        return data

    def create(self, data: Mapping[str, Any], *, name: str | None = None,
               overrides: Mapping[str, str] | None = None, source: str | None = None) -> Path:
        """Validate and write a connection; returns its file. Literal secrets make the file
        owner-only (0600)."""
        record = {k: v for k, v in data.items()}
        for key, value in (overrides or {}).items():
            target = record
            parts = key.split(".")
            for part in parts[:-1]:
                target = target.setdefault(part, {})
                if not isinstance(target, dict):
                    raise ConnectionError_(f"--set {key}: '{part}' is not a mapping",
                                           code="InvalidConnection", location=Location(file=source))
            target[parts[-1]] = value
        if name:
            record["name"] = name
        where = Location(file=source)
        conn_name = record.get("name")
        if not conn_name or not isinstance(conn_name, str):
            raise ConnectionError_("the connection has no name", code="InvalidConnection",
                                   location=where, hint="Add  name: my_conn  or pass --name.")
        ctype = connection_type(record.get("type"))
        if ctype is None or not ctype.creatable:
            raise ConnectionError_(
                f"connection type {record.get('type')!r} is not supported",
                code="InvalidConnection", location=Location(file=source, field="type"),
                hint=f"Use one of: {', '.join(t for t, c in CONNECTION_TYPES.items() if c.creatable)}.")
        self._register_literal_secrets(ctype, record)
        missing = [f for f in ctype.required if not record.get(f)]
        if missing:
            raise ConnectionError_(
                f"connection '{conn_name}' ({ctype.name}) lacks {', '.join(missing)}",
                code="InvalidConnection", location=Location(file=source, field=missing[0]),
                hint="Give each as a value or as ${env:VAR}.")
        for field in ctype.secret_fields:
            if record.get(field) == "<user-input>":
                raise ConnectionError_(
                    f"'{field}' is the placeholder '<user-input>'", code="InvalidConnection",
                    location=Location(file=source, field=field),
                    hint=f"Pass it with  --set {field}=${{env:MY_VAR}}  or a value.")
        if ctype.name == "custom":
            record = self._check_custom(str(conn_name), record, source)
        else:
            record = check_fields(ctype, record, name=str(conn_name), file=source, resolved=False)
        path = self.path(str(conn_name))
        self.folder.mkdir(parents=True, exist_ok=True)
        import yaml

        text = yaml.safe_dump(record, sort_keys=False, allow_unicode=True)
        literal_secret = any(
            isinstance(v, str) and v and not ENV_REF.match(v)
            for v in self._secret_values(ctype, record)
        )
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
        os.chmod(path, 0o600 if literal_secret else 0o644)
        return path

    def delete(self, name: str) -> None:
        path = self.path(name)
        if not path.is_file():
            raise ConnectionError_(f"connection '{name}' does not exist", code="ConnectionNotFound")
        path.unlink()

    # -- views ------------------------------------------------------------------------------

    @staticmethod
    def _secret_values(ctype: ConnectionType, record: Mapping[str, Any]) -> list[Any]:
        if ctype.name == "custom":
            secrets = record.get("secrets")
            return list(secrets.values()) if isinstance(secrets, dict) else []
        return [record.get(f) for f in ctype.secret_fields]

    def _register_literal_secrets(self, ctype: ConnectionType, record: Mapping[str, Any]) -> None:
        _secrets.register(*(v for v in self._secret_values(ctype, record)
                            if isinstance(v, str) and not ENV_REF.match(v)))

    def _check_custom(self, name: str, record: dict[str, Any], file: str | None) -> dict[str, Any]:
        for key in ("configs", "secrets"):
            value = record.get(key)
            if value is not None and not isinstance(value, dict):
                raise ConnectionError_(
                    f"connection '{name}': field '{key}' is a {type(value).__name__}; expected "
                    "a mapping of names to values", code="InvalidConnection",
                    location=Location(file=file, field=key))
        out = dict(record)
        if record.get("secrets"):
            out["secrets"] = check_secrets_mapping(name, record["secrets"], file)
        return out

    def show(self, name: str) -> dict[str, Any]:
        """The connection as stored, secrets masked (``${env:VAR}`` references are shown, since
        they are not secrets)."""
        record = self.read(name)
        ctype = connection_type(record.get("type"))
        shown = dict(record)
        if ctype is not None and ctype.name == "custom":
            secrets = record.get("secrets")
            if isinstance(secrets, dict):
                shown["secrets"] = {k: _mask(v) for k, v in secrets.items()}
        elif ctype is not None:
            for field in ctype.secret_fields:
                if field in shown:
                    shown[field] = _mask(shown[field])
        return shown

    def stamp(self, name: str) -> tuple[str, int, int] | None:
        """Identifies the current version of a connection's file (None: no file)."""
        try:
            path = self.path(name)
            info = path.stat()
        except (OSError, UserError):
            return None
        return (str(path), info.st_mtime_ns, info.st_size)

    def file_of(self, name: str) -> str | None:
        path = self.path(name)
        return str(path) if path.is_file() else None

    def get(self, name: str) -> _Connection:
        """The connection object tools receive, with ``${env:VAR}`` secrets resolved, every
        field checked and every secret value registered for scrubbing."""
        record = self.read(name)
        file = self.file_of(name)
        ctype = connection_type(record.get("type"))
        if ctype is None:
            raise ConnectionError_(f"connection '{name}' has unsupported type {record.get('type')!r}",
                                   code="InvalidConnection",
                                   location=Location(file=file, field="type"),
                                   hint=f"Use one of: {', '.join(CONNECTION_TYPES)}.")
        # register literal secrets first: a later error must not show them
        self._register_literal_secrets(ctype, record)
        if ctype.name == "custom":
            record = self._check_custom(name, record, file)
            secrets = {k: self._resolve(name, f"secrets.{k}", v, file)
                       for k, v in (record.get("secrets") or {}).items()}
            _secrets.register(*secrets.values())
            secrets = check_secrets_mapping(name, secrets, file)
            configs = {k: self._resolve(name, f"configs.{k}", v, file)
                       for k, v in (record.get("configs") or {}).items()}
            return CustomConnection(configs=configs, secrets=secrets, name=name)
        resolved = {k: self._resolve(name, k, v, file) for k, v in record.items()
                    if k not in _META_FIELDS}
        _secrets.register(*(resolved.get(f) for f in ctype.secret_fields))
        resolved = check_fields(ctype, resolved, name=name, file=file, resolved=True)
        for field in ctype.required:
            if not resolved.get(field):
                raise ConnectionError_(f"connection '{name}' has no {field}",
                                       code="ConnectionKeyMissing",
                                       location=Location(file=file, field=field),
                                       hint=f"Set it:  pfkit connection create --file ... --set {field}=...")
        known = {k: v for k, v in resolved.items() if k in ctype.fields}
        options = {k: v for k, v in resolved.items() if k not in ctype.fields}
        return ctype.cls(name=name, **known, **options)

    def _resolve(self, name: str, field: str, value: Any, file: str | None = None) -> Any:
        if not isinstance(value, str):
            return value
        match = ENV_REF.match(value)
        if not match:
            return value
        var = match.group(1)
        resolved = self.resolver.lookup(var)
        if resolved is None or resolved == "":
            raise ConnectionError_(
                f"connection '{name}' needs environment variable {var} (for '{field}'), which is "
                "not set", code="ConnectionKeyMissing", location=Location(file=file, field=field),
                hint=f"export {var}=...  or add  {var}=...  to a .env file in this folder.")
        return resolved


def _mask(value: Any) -> Any:
    if isinstance(value, str) and ENV_REF.match(value):
        return value
    return MASK if value else value
