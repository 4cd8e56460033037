"""Fingerprints of what a run ran on (its data file and its flow), so that ``--resume-from``
can tell when either changed and say what changed.

Data: path, size, modification time and a SHA-256 of the whole file when it is small (at most
``WHOLE_LIMIT`` bytes), else of its first and last MiB. Flow: a SHA-256 of each source file of the
flow folder (what a snapshot copies) and of the resolved flow YAML.
"""

from __future__ import annotations

import hashlib
import os
from fnmatch import fnmatch
from pathlib import Path
from typing import Any

WHOLE_LIMIT = 8 * 1024 * 1024
EDGE = 1024 * 1024
IGNORED = ("__pycache__", ".promptflow", ".git", ".venv", "*.pyc", "pfkit.cassette.jsonl",
           ".pytest_cache", ".runs")
MAX_FLOW_FILES = 2000


def _hash_file(path: Path, size: int) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        if size <= WHOLE_LIMIT:
            for chunk in iter(lambda: fh.read(EDGE), b""):
                digest.update(chunk)
        else:
            digest.update(fh.read(EDGE))
            fh.seek(size - EDGE)
            digest.update(fh.read(EDGE))
    return digest.hexdigest()


def data_fingerprint(source: str | None) -> dict[str, Any] | None:
    """The fingerprint of a data file or folder (every data file in it), or None for other
    sources (``hf:`` names)."""
    if not source or source.startswith("hf:"):
        return None
    path = Path(source)
    try:
        if path.is_file():
            stat = path.stat()
            return {"path": str(path), "size": stat.st_size, "mtime": stat.st_mtime,
                    "sha256": _hash_file(path, stat.st_size)}
        if path.is_dir():
            files = {}
            for file in sorted(p for p in path.rglob("*") if p.is_file())[:MAX_FLOW_FILES]:
                stat = file.stat()
                files[str(file.relative_to(path))] = _hash_file(file, stat.st_size)
            return {"path": str(path), "files": files}
    except OSError:
        return None
    return None


def _ignored(rel: Path) -> bool:
    return any(fnmatch(part, pattern) for part in rel.parts for pattern in IGNORED)


def flow_fingerprint(code_dir: Path, resolved_yaml: str) -> dict[str, Any]:
    files: dict[str, str] = {}
    for root, dirs, names in os.walk(code_dir):
        if len(files) >= MAX_FLOW_FILES:
            break
        rel_root = Path(root).relative_to(code_dir)
        dirs[:] = sorted(d for d in dirs if not _ignored(rel_root / d))
        for name in sorted(names):
            rel = rel_root / name
            if _ignored(rel) or len(files) >= MAX_FLOW_FILES:
                continue
            path = Path(root) / name
            try:
                files[rel.as_posix()] = _hash_file(path, path.stat().st_size)
            except OSError:
                continue
    return {"path": str(code_dir), "files": files,
            "resolved_yaml": hashlib.sha256(resolved_yaml.encode("utf-8")).hexdigest()}


def data_changes(old: dict[str, Any] | None, new: dict[str, Any] | None) -> list[str]:
    """What differs between two data fingerprints, in words ([] when nothing does)."""
    if not old or not new:
        return []
    if old.get("path") != new.get("path"):
        return [f"the data is another file: {new.get('path')} (the run used {old.get('path')})"]
    if "files" in old or "files" in new:
        return [f"data file {name} changed" for name in _changed(old.get("files") or {},
                                                                 new.get("files") or {})]
    if old.get("size") != new.get("size"):
        return [f"the data file {new['path']} changed size ({old.get('size')} -> "
                f"{new.get('size')} bytes)"]
    if old.get("sha256") != new.get("sha256"):
        return [f"the data file {new['path']} changed (same size, other content)"]
    return []


def _changed(old: dict[str, str], new: dict[str, str]) -> list[str]:
    names = sorted(set(old) | set(new))
    return [n if n in old and n in new else f"{n} ({'added' if n in new else 'removed'})"
            for n in names if old.get(n) != new.get(n)]


def flow_changes(old: dict[str, Any] | None, new: dict[str, Any] | None) -> list[str]:
    if not old or not new:
        return []
    changed = _changed(old.get("files") or {}, new.get("files") or {})
    if changed:
        shown = ", ".join(changed[:10]) + (f" and {len(changed) - 10} more" if len(changed) > 10 else "")
        return [f"flow files changed: {shown}"]
    if old.get("resolved_yaml") != new.get("resolved_yaml"):
        return ["the flow as resolved (variants, connection overrides) differs"]
    return []
