"""Install footprint: packages and MB of a fresh venv with pfkit's core vs promptflow.

Run: ``.venv/bin/python bench/install.py`` (needs the package registry; about two minutes).
Both installs go into throw-away venvs under .bench/; pip and setuptools, which every venv has,
are left out of the counts.
"""

from __future__ import annotations

import shutil
import subprocess
import sys

from _common import REPO, append_results, markdown_table

SCRATCH = REPO / ".bench" / "install"
BASELINE = {"pip", "setuptools", "wheel"}


def footprint(name: str, requirement: list[str]) -> tuple[int, float]:
    venv = SCRATCH / name
    shutil.rmtree(venv, ignore_errors=True)
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    pip = venv / "bin" / "pip"
    subprocess.run([str(pip), "install", "-q", *requirement], check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    listed = subprocess.run([str(pip), "list", "--format=freeze"], check=True,
                            capture_output=True, text=True).stdout.split()
    packages = [line.split("==")[0].lower() for line in listed if "==" in line]
    counted = [p for p in packages if p not in BASELINE]
    site = next((venv / "lib").glob("python*/site-packages"))
    size = 0
    for path in site.rglob("*"):
        if path.is_file() and not any(part.startswith(("pip", "setuptools", "_distutils"))
                                      for part in path.relative_to(site).parts[:1]):
            size += path.stat().st_size
    shutil.rmtree(venv, ignore_errors=True)
    return len(counted), size / 1e6


def main() -> None:
    rows = []
    pfkit = footprint("pfkit", [str(REPO)])
    promptflow = footprint("promptflow", ["promptflow==1.18.5", "promptflow-tools"])
    rows.append(["pfkit (core: `pip install .`)", pfkit[0], f"{pfkit[1]:.0f}", "≤ 40", "≤ 120"])
    rows.append(["promptflow 1.18.5 + promptflow-tools", promptflow[0], f"{promptflow[1]:.0f}",
                 "", ""])
    table = markdown_table(["install", "packages", "MB on disk", "pfkit target (packages)",
                            "pfkit target (MB)"], rows)
    body = "\n".join([table, "",
                      "- Fresh venvs, pip and setuptools excluded from both counts; extras "
                      "(`local`, `parquet`, `hf`, `pandas`) are not part of the core."])
    print(append_results("Install footprint (bench/install.py)", body))


if __name__ == "__main__":
    main()
