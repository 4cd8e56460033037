"""``pfkit flow build --format docker``: a folder that ``docker build`` turns into an image
serving the flow.

::

    OUT/
      Dockerfile        slim official Python base, non-root user, HEALTHCHECK, pfkit pinned
      start.sh          the entrypoint: pfkit flow serve with several workers
      wheels/           the pfkit wheel (pfkit is not on PyPI; installs without an index)
      flow/             the flow with its variant resolved (and --connections applied)
      home/connections/ the connections it uses, every secret an ${env:VAR} reference
      settings.json     the environment variables to set: {"VAR": ""}
      requirements.txt  the flow's own requirements (when it has one)
      README.md
"""

from __future__ import annotations

import json
import re
import shutil
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from .._version import __version__
from ..errors import UserError
from ._wheel import build_wheel, wheel_name

FORMATS = ("docker",)
DEFAULT_WORKERS = 4
_ENV_REF = re.compile(r"^\$\{env:([A-Za-z_][A-Za-z0-9_]*)\}$")


def _env_name(*parts: str) -> str:
    return re.sub(r"[^A-Z0-9_]", "_", "_".join(parts).upper())


def _check_output(output: Path, source: Path) -> None:
    if output.exists() and (not output.is_dir() or any(output.iterdir())):
        raise UserError(f"the output folder {output} exists and is not empty",
                        code="OutputNotEmpty",
                        hint="Give a new or empty folder with --output (nothing is overwritten).")
    resolved, flow_dir = output.resolve(), source.resolve()
    if resolved == flow_dir or resolved.is_relative_to(flow_dir):
        raise UserError(f"the output folder {output} is inside the flow folder {source}",
                        code="OutputInsideFlow",
                        hint="Build into a folder outside the flow (it would copy itself).")


def _apply_overrides(raw: dict[str, Any], overrides: Mapping[str, str]) -> None:
    nodes = {n.get("name"): n for n in raw.get("nodes") or [] if isinstance(n, dict)}
    for key, value in overrides.items():
        name, _, field = key.rpartition(".")
        node = nodes.get(name)
        if node is None:
            continue  # the loader already refused unknown nodes
        inputs = node.setdefault("inputs", {})
        if field == "connection":
            node["connection"] = value
            if "connection" in inputs:
                inputs["connection"] = value
        else:
            inputs[field] = value


def _used_connections(raw: dict[str, Any], known: set[str]) -> list[str]:
    names: list[str] = []
    for node in raw.get("nodes") or []:
        if not isinstance(node, dict):
            continue
        candidates = [node.get("connection")]
        candidates += [v for v in (node.get("inputs") or {}).values() if isinstance(v, str)]
        for value in candidates:
            if isinstance(value, str) and value in known and value not in names:
                names.append(value)
    return names


def _export_connection(name: str, store: Any, variables: dict[str, str]) -> dict[str, Any]:
    """The connection as a file whose every secret is an ``${env:VAR}`` reference."""
    from ..connections._registry import connection_type

    record = dict(store.read(name))
    ctype = connection_type(record.get("type"))
    if ctype is None:
        raise UserError(f"connection '{name}' has an unknown type {record.get('type')!r}",
                        code="InvalidConnection", hint="Fix it with pfkit connection create.")
    record["name"] = name

    def reference(field: str, value: Any) -> str:
        match = _ENV_REF.match(value) if isinstance(value, str) else None
        variable = match.group(1) if match else _env_name(name, field)
        variables.setdefault(variable, "")
        return f"${{env:{variable}}}"

    if ctype.name == "custom":
        secrets = record.get("secrets")
        if isinstance(secrets, dict):
            record["secrets"] = {k: reference(k, v) for k, v in secrets.items()}
    else:
        for field in ctype.secret_fields:
            if record.get(field) not in (None, ""):
                record[field] = reference(field, record[field])
    return record


_ENV_IN_TEXT = re.compile(r"\$\{env:([A-Za-z_][A-Za-z0-9_]*)\}")
_TEXT_SUFFIXES = {".yaml", ".yml", ".prompty", ".json", ".jinja2", ".txt", ".md"}


def _env_references(folder: Path) -> list[str]:
    """``${env:NAME}`` references in the flow's own text files (flow, prompty, configs)."""
    names: list[str] = []
    for path in sorted(folder.rglob("*")):
        if path.suffix in _TEXT_SUFFIXES and path.is_file() and path.stat().st_size < 1_000_000:
            for name in _ENV_IN_TEXT.findall(path.read_text(encoding="utf-8", errors="ignore")):
                if name not in names:
                    names.append(name)
    return names


def build(source: str | Path, output: str | Path, *, format: str = "docker",
          variant: str | None = None, connections: Mapping[str, str] | None = None,
          allow_outside_paths: bool = False, workers: int = DEFAULT_WORKERS,
          base_image: str | None = None) -> Path:
    """Build a deployable folder for the flow at ``source``; returns the folder."""
    import yaml

    if format not in FORMATS:
        raise UserError(f"--format {format!r} is not supported", code="UsageError",
                        hint=f"Formats: {', '.join(FORMATS)}.")
    if workers < 1:
        raise UserError(f"--workers must be at least 1, got {workers}", code="UsageError")
    from ..session import Session
    from ._app import load_served_flow

    source_path = Path(source).expanduser()
    out = Path(output).expanduser()
    _check_output(out, source_path if source_path.is_dir() else source_path.parent)
    with Session() as session:
        # validates the flow (sources, templates, variants, overrides) before anything is written
        flow = load_served_flow(source_path, session=session, variant=variant,
                                connections=connections,
                                allow_outside_paths=allow_outside_paths)
    out.mkdir(parents=True, exist_ok=True)
    flow_dir = out / "flow"
    flow.snapshot_to(flow_dir)
    flow_file = flow_dir / flow.file.name
    variables: dict[str, str] = {}
    used: list[str] = []
    if getattr(flow, "kind", "dag") == "dag":
        raw = yaml.safe_load(flow_file.read_text(encoding="utf-8")) or {}
        if connections:
            _apply_overrides(raw, connections)
            flow_file.write_text(yaml.safe_dump(raw, sort_keys=False, allow_unicode=True),
                                 encoding="utf-8")
        from ..connections._store import ConnectionStore

        store = ConnectionStore()
        used = _used_connections(raw, set(store.names()) - {"local"})
        folder = out / "home" / "connections"
        folder.mkdir(parents=True, exist_ok=True)
        for name in used:
            record = _export_connection(name, store, variables)
            (folder / f"{name}.yaml").write_text(
                yaml.safe_dump(record, sort_keys=False, allow_unicode=True), encoding="utf-8")
        for value in (raw.get("environment_variables") or {}).values():
            match = _ENV_REF.match(value) if isinstance(value, str) else None
            if match:
                variables.setdefault(match.group(1), "")
    else:
        (out / "home" / "connections").mkdir(parents=True, exist_ok=True)
    for name in _env_references(flow_dir):  # e.g. a prompty's ${env:...} configuration
        variables.setdefault(name, "")
    build_wheel(out / "wheels")
    requirements = flow_dir / "requirements.txt"
    has_requirements = requirements.is_file()
    if has_requirements:
        shutil.copyfile(requirements, out / "requirements.txt")
    (out / "settings.json").write_text(json.dumps(variables, indent=2) + "\n", encoding="utf-8")
    image = base_image or f"python:{sys.version_info.major}.{sys.version_info.minor}-slim"
    (out / "Dockerfile").write_text(_dockerfile(image, has_requirements, workers),
                                    encoding="utf-8")
    start = out / "start.sh"
    start.write_text(START_SH.format(workers=workers, flow_file=flow.file.name),
                     encoding="utf-8")
    start.chmod(0o755)
    (out / ".dockerignore").write_text("**/__pycache__\n**/*.pyc\n", encoding="utf-8")
    (out / "README.md").write_text(_readme(flow.name, used, variables, workers, image),
                                   encoding="utf-8")
    return out


START_SH = """#!/bin/sh
# Starts the flow's server: pfkit flow serve with several workers (uvicorn), on $HOST:$PORT.
# SIGTERM (docker stop) finishes the requests in flight, then exits.
set -eu
HERE=$(cd "$(dirname "$0")" && pwd)
export PFKIT_HOME="${{PFKIT_HOME:-$HERE/home}}"
exec pfkit flow serve --source "$HERE/flow/{flow_file}" --host "${{HOST:-0.0.0.0}}" \\
    --port "${{PORT:-8080}}" --workers "${{PFKIT_WORKERS:-{workers}}}" \\
    --timeout "${{PFKIT_TIMEOUT:-300}}"
"""


def _dockerfile(image: str, has_requirements: bool, workers: int) -> str:
    requirements = ("COPY requirements.txt /app/requirements.txt\n"
                    "RUN pip install -r /app/requirements.txt\n") if has_requirements else ""
    return f"""# Built by pfkit {__version__}: docker build -t my-flow . && docker run -p 8080:8080 \\
#   --env-file my.env my-flow      (settings.json lists the variables to set)
FROM {image}

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 \\
    PIP_DISABLE_PIP_VERSION_CHECK=1
RUN useradd --create-home --uid 10001 --shell /usr/sbin/nologin pfkit
WORKDIR /app

# pfkit {__version__}, pinned, from the bundled wheel (its dependencies from the package index)
COPY wheels/ /app/wheels/
RUN pip install --find-links /app/wheels "pfkit[serve]=={__version__}"
{requirements}
COPY flow/ /app/flow/
COPY home/ /app/home/
COPY start.sh /app/start.sh
RUN chmod 0555 /app/start.sh

ENV PFKIT_HOME=/app/home HOST=0.0.0.0 PORT=8080 PFKIT_WORKERS={workers}
USER pfkit
EXPOSE 8080
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 \\
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:' + os.environ.get('PORT', '8080') + '/health', timeout=4)"]
STOPSIGNAL SIGTERM
CMD ["/app/start.sh"]
"""


def _readme(name: str, connections: list[str], variables: dict[str, str], workers: int,
            image: str) -> str:
    env = "\n".join(f"    {v}=..." for v in variables) or "    (none)"
    conns = ", ".join(connections) or "none"
    return f"""# {name}: a pfkit flow server

Built by `pfkit flow build --format docker` (pfkit {__version__}, base image `{image}`).

    docker build -t {name.lower()} .
    docker run --rm -p 8080:8080 --env-file {name}.env {name.lower()}

Set these environment variables (listed in `settings.json`; the connections' secrets are read
from them, nothing secret is in this folder):

{env}

Connections: {conns} (in `home/connections/`, every secret an `${{env:VAR}}` reference).

The server: `POST /score` (JSON inputs -> outputs; `Accept: text/event-stream` streams),
`GET /health`, `GET /version`, `GET /swagger.json`, `GET /docs`, `POST /feedback`,
`GET /metrics` (Prometheus). {workers} workers by default (`PFKIT_WORKERS`); `PORT`, `HOST`,
`PFKIT_TIMEOUT` (seconds per request) and `PFKIT_API_KEYS` (comma-separated keys, sent as
`Authorization: Bearer KEY`) are read at start. The container runs as the non-root user
`pfkit` and has a HEALTHCHECK on `/health`; `docker stop` lets requests in flight finish.

Without Docker: `pip install --find-links wheels "pfkit[serve]=={__version__}"`, then
`HOST=127.0.0.1 ./start.sh`.
"""


__all__ = ["DEFAULT_WORKERS", "FORMATS", "build", "wheel_name"]
