"""The notebooks under notebooks/ run top to bottom in a real Jupyter kernel (nbclient), on the
embedded model, and are committed without outputs."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

NOTEBOOKS = Path(__file__).resolve().parent.parent / "notebooks"
ALL = sorted(NOTEBOOKS.glob("*.ipynb"))
EXPECTED = ["01-author-a-flow.ipynb", "02-compare-prompt-variants.ipynb",
            "03-evaluate-and-deploy.ipynb"]


def test_the_three_notebooks_exist():
    assert [p.name for p in ALL] == EXPECTED


@pytest.mark.parametrize("path", ALL, ids=lambda p: p.stem)
def test_committed_notebooks_have_no_outputs(path):
    nbformat = pytest.importorskip("nbformat")
    nb = nbformat.read(path, as_version=4)
    nbformat.validate(nb)
    for cell in nb.cells:
        if cell.cell_type == "code":
            assert cell.outputs == [] and cell.execution_count is None, cell.source[:60]
        assert "attachments" not in cell or not cell.attachments


@pytest.mark.slow
@pytest.mark.parametrize("path", ALL, ids=lambda p: p.stem)
def test_notebook_runs_top_to_bottom(path, tmp_path, monkeypatch):
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    pytest.importorskip("ipykernel")
    pytest.importorskip("llama_cpp")
    monkeypatch.setenv("PFKIT_HOME", str(tmp_path / "home"))
    # the kernel is this interpreter (its kernelspec says "python", found on PATH)
    monkeypatch.setenv("PATH", os.path.dirname(sys.executable) + os.pathsep + os.environ["PATH"])
    nb = nbformat.read(path, as_version=4)
    client = nbclient.NotebookClient(nb, timeout=900, kernel_name="python3",
                                     resources={"metadata": {"path": str(NOTEBOOKS)}})
    client.execute()  # raises CellExecutionError on the first cell that fails
    errors = [o for cell in nb.cells if cell.cell_type == "code" for o in cell.outputs
              if o.output_type == "error"]
    assert not errors
    shown = [o for cell in nb.cells if cell.cell_type == "code" for o in cell.outputs
             if o.output_type in ("display_data", "execute_result")]
    html = [o["data"]["text/html"] for o in shown if "text/html" in o.get("data", {})]
    assert any("<svg" in h for h in html), "the flow graph is shown as SVG"
    assert any("pfkit-table" in h or "<table" in h for h in html), "tables are shown"
    assert not any("<script" in h for h in html)
    (tmp_path / path.name).write_text(nbformat.writes(nb))  # the executed copy, for a look
