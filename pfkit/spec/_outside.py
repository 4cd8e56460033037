"""Paths that lead out of the flow folder: ``source.path`` and ``additional_includes`` outside
it, an ``environment_variables`` file elsewhere, and symlinks in the folder that point out.

Their content is read, and copied into run snapshots, from outside the folder the user handed
over. Loading records them on :attr:`FlowSpec.outside_paths` and warns once per flow file
(:class:`OutsideFlowFolderWarning`, via :mod:`warnings`); commands that package or expose a flow
(``flow build``, ``flow serve``) call :func:`refuse_outside_paths` and go on only when the user
allowed it explicitly.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import FlowValidationError, Location
from ._models import OutsidePath

if TYPE_CHECKING:
    from ._models import FlowSpec, NodeSpec

# Folders never copied into snapshots (see _includes._IGNORE), so never scanned for symlinks.
_SKIP_DIRS = frozenset({"__pycache__", ".promptflow", ".git", ".venv", "node_modules"})
# A flow folder is small; the symlink scan stops after this many entries.
MAX_SCANNED_ENTRIES = 20_000


class OutsideFlowFolderWarning(UserWarning):
    """The flow reads files from outside its folder (see :func:`describe_outside_paths`)."""


def _resolve(path: Path) -> Path | None:
    try:
        return path.resolve()
    except (OSError, RuntimeError):  # a symlink loop, a path too long
        return None


def _inside(path: Path, folder: Path) -> bool:
    return path == folder or path.is_relative_to(folder)


def _node_sources(spec: FlowSpec) -> list[NodeSpec]:
    nodes = [n for n in spec.nodes if not n.use_variants]
    for variants in spec.node_variants.values():
        nodes.extend(variants.variants.values())
    return nodes


def find_outside_paths(spec: FlowSpec, *, env_file: str | None = None,
                       env_line: int | None = None,
                       include_lines: tuple[int, ...] = ()) -> tuple[OutsidePath, ...]:
    folder = _resolve(spec.code_dir) or spec.code_dir
    found: list[OutsidePath] = []

    def check(written: str, field: str, node: str | None, line: int | None) -> None:
        target = _resolve(spec.code_dir / written)
        if target is not None and not _inside(target, folder):
            found.append(OutsidePath(field=field, path=written, target=str(target), node=node,
                                     line=line))

    for node in _node_sources(spec):
        if node.source is not None and node.source.path:
            check(node.source.path, "source.path", node.name, node.source.line or node.line)
    for i, include in enumerate(spec.additional_includes):
        check(include, "additional_includes", None,
              include_lines[i] if i < len(include_lines) else None)
    if env_file:
        check(env_file, "environment_variables", None, env_line)
    found.extend(_outside_symlinks(spec.code_dir, folder))
    return tuple(found)


def _outside_symlinks(code_dir: Path, folder: Path) -> list[OutsidePath]:
    found: list[OutsidePath] = []
    seen = 0
    stack = [code_dir]
    while stack and seen < MAX_SCANNED_ENTRIES:
        current = stack.pop()
        try:
            entries = list(os.scandir(current))
        except OSError:
            continue
        for entry in entries:
            seen += 1
            try:
                if entry.is_symlink():
                    target = _resolve(Path(entry.path))
                    if target is None or not _inside(target, folder):
                        found.append(OutsidePath(
                            field="symlink", path=os.path.relpath(entry.path, code_dir),
                            target=str(target) if target else "(a symlink that does not resolve)"))
                elif entry.is_dir(follow_symlinks=False) and entry.name not in _SKIP_DIRS:
                    stack.append(Path(entry.path))
            except OSError:
                continue
    return found


def describe_outside_paths(spec: FlowSpec) -> str | None:
    """The warning text for a flow that reads files from outside its folder, or None."""
    if not spec.outside_paths:
        return None
    items = "; ".join(str(p) for p in spec.outside_paths)
    return (f"the flow reads files from outside its folder {spec.code_dir} (they are copied "
            f"into run snapshots): {items}")


_warned: set[str] = set()


def warn_outside_paths(spec: FlowSpec) -> None:
    """Warn (once per flow file and process) when the flow reads files from outside its folder."""
    text = describe_outside_paths(spec)
    if text is None or spec.file in _warned:
        return
    _warned.add(spec.file)
    # Placed at the flow file's line, so Python prints "flow.dag.yaml:6: ..." and that line.
    line = next((p.line for p in spec.outside_paths if p.line), None) or 1
    warnings.warn_explicit(text, OutsideFlowFolderWarning, filename=spec.file, lineno=line,
                           module="pfkit.spec")


def refuse_outside_paths(spec: FlowSpec, allow: bool = False) -> tuple[OutsidePath, ...]:
    """For ``flow build`` and ``flow serve``: raise a :class:`FlowValidationError` naming the first
    path that leads out of the flow folder, unless ``allow`` (the user's explicit choice).
    Returns the outside paths (empty when there are none)."""
    if not spec.outside_paths or allow:
        return spec.outside_paths
    first = spec.outside_paths[0]
    more = len(spec.outside_paths) - 1
    others = f" (and {more} more: {'; '.join(map(str, spec.outside_paths[1:4]))})" if more else ""
    what = "a symlink in the flow folder" if first.field == "symlink" else first.field
    raise FlowValidationError(
        f"{what} '{first.path}' leads outside the flow folder, to {first.target}{others}",
        code="PathOutsideFlow",
        location=Location(file=spec.file, line=first.line, node=first.node, field=first.field),
        hint="Copy the files into the flow folder (or replace the symlink with the file), or "
             "allow files from outside the flow folder explicitly.",
    )
