"""``additional_includes``: files and folders from outside the flow folder, made available
inside it, as promptflow does by copying them into the flow's snapshot."""

from __future__ import annotations

import atexit
import shutil
import tempfile
from dataclasses import replace
from pathlib import Path

from ..errors import FlowValidationError, Location
from ._models import FlowSpec

_IGNORE = shutil.ignore_patterns("__pycache__", ".promptflow", ".git", "*.pyc", ".venv")


def copy_flow_with_includes(spec: FlowSpec, destination: Path) -> None:
    """Copy the flow folder to ``destination`` and each include beside it (by its base name)."""
    shutil.copytree(spec.code_dir, destination, ignore=_IGNORE, dirs_exist_ok=True)
    for include in spec.additional_includes:
        source = (spec.code_dir / include).resolve()
        if not source.exists():
            raise FlowValidationError(
                f"additional include '{include}' does not exist ({source})",
                code="InvalidAdditionalInclude",
                location=Location(file=spec.file, field="additional_includes"),
                hint="Paths in additional_includes are relative to the flow folder.",
            )
        target = destination / source.name
        if source.is_dir():
            shutil.copytree(source, target, ignore=_IGNORE, dirs_exist_ok=True)
        else:
            shutil.copy2(source, target)


def with_includes(spec: FlowSpec) -> FlowSpec:
    """A spec whose code folder also holds the includes: a temporary snapshot, removed at exit.
    Flows without includes are returned unchanged (no copy)."""
    if not spec.additional_includes:
        return spec
    snapshot = Path(tempfile.mkdtemp(prefix=f"pfkit-{spec.code_dir.name}-"))
    atexit.register(shutil.rmtree, snapshot, ignore_errors=True)
    copy_flow_with_includes(spec, snapshot)
    return replace(spec, code_dir=snapshot)
