"""A wheel of the running pfkit, for a deployable folder that installs offline (pfkit is not on
PyPI). Written from the installed package itself (an editable install included): the same code
that built the folder is the code the image runs."""

from __future__ import annotations

import base64
import hashlib
import io
import zipfile
from pathlib import Path

from .._version import __version__

SERVE_REQUIREMENTS = ("starlette>=0.37", "uvicorn>=0.30", "prometheus-client>=0.20",
                      "httptools>=0.6", "uvloop>=0.19")
_EPOCH = (1980, 1, 1, 0, 0, 0)  # fixed timestamps: the same pfkit gives the same wheel
_SKIP_DIRS = {"__pycache__", ".pytest_cache", ".mypy_cache"}
_SKIP_SUFFIXES = (".pyc", ".pyo")


def wheel_name() -> str:
    return f"pfkit-{__version__}-py3-none-any.whl"


def _metadata() -> str:
    try:
        from importlib.metadata import distribution

        text = distribution("pfkit").read_text("METADATA") or ""
    except Exception:  # noqa: BLE001 - not installed as a distribution: minimal metadata
        text = ""
    if not text.strip():
        return (f"Metadata-Version: 2.1\nName: pfkit\nVersion: {__version__}\n"
                "Requires-Dist: PyYAML>=6.0\nRequires-Dist: Jinja2>=3.1\n"
                "Requires-Dist: openai[aiohttp]>=1.86\nRequires-Dist: aiohttp>=3.9\n"
                + "".join(f'Requires-Dist: {r}; extra == "serve"\n' for r in SERVE_REQUIREMENTS)
                + "Provides-Extra: serve\n")
    header, sep, body = text.partition("\n\n")  # drop the long description (the README)
    lines = [f"Version: {__version__}" if line.startswith("Version:") else line
             for line in header.splitlines() if not line.startswith("Description-Content-Type")]
    if "Provides-Extra: serve" not in lines:  # metadata of an install older than the extra
        lines.append("Provides-Extra: serve")
    for requirement in SERVE_REQUIREMENTS:
        name = requirement.split(">")[0].split("=")[0]
        if not any(line.startswith(f"Requires-Dist: {name}") and "serve" in line
                   for line in lines):
            lines.append(f'Requires-Dist: {requirement}; extra == "serve"')
    return "\n".join(lines) + "\n"


def _record_entry(name: str, data: bytes) -> str:
    digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
    return f"{name},sha256={digest},{len(data)}"


def build_wheel(folder: Path) -> Path:
    """Write ``pfkit-<version>-py3-none-any.whl`` into ``folder``; returns its path."""
    package = Path(__file__).resolve().parent.parent
    dist_info = f"pfkit-{__version__}.dist-info"
    files: list[tuple[str, bytes]] = []
    for path in sorted(package.rglob("*")):
        rel = path.relative_to(package)
        if any(part in _SKIP_DIRS for part in rel.parts) or path.suffix in _SKIP_SUFFIXES:
            continue
        if not path.is_file():
            continue
        resolved = path.resolve()
        if not resolved.is_relative_to(package):  # a link out of the package: not shipped
            continue
        files.append((f"pfkit/{rel.as_posix()}", path.read_bytes()))
    files.append((f"{dist_info}/METADATA", _metadata().encode("utf-8")))
    files.append((f"{dist_info}/WHEEL", b"Wheel-Version: 1.0\nGenerator: pfkit\n"
                                        b"Root-Is-Purelib: true\nTag: py3-none-any\n"))
    files.append((f"{dist_info}/entry_points.txt",
                  b"[console_scripts]\npfkit = pfkit.cli:main\n"))
    files.append((f"{dist_info}/top_level.txt", b"pfkit\n"))
    record = [_record_entry(name, data) for name, data in files]
    record.append(f"{dist_info}/RECORD,,")
    files.append((f"{dist_info}/RECORD", ("\n".join(record) + "\n").encode("utf-8")))
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / wheel_name()
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in files:
            info = zipfile.ZipInfo(name, _EPOCH)
            info.external_attr = 0o644 << 16
            info.compress_type = zipfile.ZIP_DEFLATED
            archive.writestr(info, data)
    target.write_bytes(buffer.getvalue())
    return target
