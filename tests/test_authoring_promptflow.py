"""A flow built in Python and saved runs in promptflow 1.18.5 with pfkit's results.

``tests/flows/authored_in_python/`` is what :func:`authored_flow` saves (checked here file by
file), with a ``case.json`` and the ``expected.json`` promptflow produced for it, so the golden
fixture test (tests/test_fixture_flows.py) compares pfkit with promptflow on it. Rewrite the
folder after changing the flow below::

    .venv/bin/python tests/test_authoring_promptflow.py
    .bench/promptflow-venv/bin/python tests/flows/regenerate_expected.py authored_in_python

When promptflow's venv is present, the slow test runs promptflow on a fresh save, on every
variant, and compares it with pfkit line by line.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

import pfkit
from pfkit.authoring import FlowBuilder

ROOT = Path(__file__).resolve().parent.parent
FIXTURE = ROOT / "tests" / "flows" / "authored_in_python"
PROMPTFLOW = ROOT / ".bench" / "promptflow-venv" / "bin" / "python"
VOWELS = "aeiou"
LINES = [{"text": "the quick brown fox"}, {"text": "hi", "shout": True},
         {"text": "  many   spaces here   ", "shout": False}, {"text": "x"}]


def _vowels(text):
    return sum(1 for c in text.lower() if c in VOWELS)


@pfkit.tool
def analyse(text: str) -> dict:
    """Counts of a text: words, vowels, and the square root of the word count."""
    words = text.split()
    return {"words": len(words), "vowels": _vowels(text), "root": round(math.sqrt(len(words)), 6),
            "long": len(words) > 2}


def shout(text: str, mark: str = "!") -> str:
    return text.upper() + mark


def summary(stats: list, texts: list) -> dict:
    counted = [s for s in stats if s is not None]
    pfkit.log_metric("lines", len(counted))
    pfkit.log_metric("mean_words", round(sum(s["words"] for s in counted) / len(counted), 4))
    return {"texts": len(texts)}


def authored_flow() -> FlowBuilder:
    flow = FlowBuilder("authored_in_python")
    text = flow.input("text", str)
    loud = flow.input("shout", bool, default=False)
    stats = flow.python(analyse, text=text)
    prompt = flow.prompt("describe", "{{n}} words, {{v}} vowels: {{text}}",
                         n=stats["words"], v=stats["vowels"], text=text)
    answer = flow.llm("ask", "system:\nCount carefully.\nuser:\n{{question}}\n",
                      connection="echo", question=prompt, max_tokens=16, temperature=0)
    answer.variant("completion", "Describe: {{question}}", api="completion")
    louder = flow.python(shout, text=prompt, activate=(loud, True))
    flow.python(summary, stats=stats, texts=text, aggregation=True)
    flow.output("stats", stats, type="object")
    flow.output("long", stats["long"], type="bool")
    flow.output("answer", answer)
    flow.output("loud", louder)
    return flow


def _folder_files(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*"))
            if p.is_file() and p.name not in ("case.json", "expected.json")
            and "__pycache__" not in p.parts and ".promptflow" not in p.parts}


def test_the_fixture_is_what_the_builder_saves():
    assert FIXTURE.is_dir(), "run this file with python to write the fixture"
    assert _folder_files(FIXTURE) == authored_flow().files()
    case = json.loads((FIXTURE / "case.json").read_text())
    assert case["lines"] == LINES
    expected = json.loads((FIXTURE / "expected.json").read_text())
    assert expected["generator"].startswith("promptflow 1.18.5")
    assert [line["status"] for line in expected["lines"]] == ["Completed"] * len(LINES)
    assert expected["aggregation"]["metrics"] == {"lines": 4, "mean_words": 2.25}


def _promptflow_result(folder: Path, variant: str | None) -> dict:
    case = {"description": "authored in Python", "lines": LINES}
    if variant:
        case["variant"] = variant
    (folder / "case.json").write_text(json.dumps(case))
    script = (
        "import json, sys\n"
        f"sys.path.insert(0, {str(ROOT / 'tests' / 'flows')!r})\n"
        "import regenerate_expected as r\n"
        "from pathlib import Path\n"
        "server, url = r.start_echo_server()\n"
        f"result = r.run_case_in_this_process(Path({str(folder)!r}), url)\n"
        "server.shutdown()\n"
        "print('RESULT' + json.dumps(result))\n")
    env = {**os.environ, "PF_DISABLE_TRACING": "true", "PYTHONDONTWRITEBYTECODE": "1"}
    env.pop("PF_USE_ASYNC", None)
    done = subprocess.run([str(PROMPTFLOW), "-c", script], capture_output=True, text=True,
                          timeout=600, cwd=folder, env=env)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.split("RESULT", 1)[1])


@pytest.mark.slow
@pytest.mark.skipif(not PROMPTFLOW.exists(), reason="promptflow's venv is not installed")
@pytest.mark.parametrize("variant", [None, "${ask.completion}"])
def test_promptflow_runs_the_saved_folder_with_pfkits_results(tmp_path, variant):
    from fixture_cases import Case, normalise, run_case, same

    folder = authored_flow().save(tmp_path / "authored_in_python")
    expected = _promptflow_result(folder, variant)
    case = Case("authored", folder, "", LINES, variant, False, expected, {})
    _, (lines, aggregation) = run_case(case)
    for got, want in zip(lines, expected["lines"], strict=True):
        assert got.status == want["status"] == "Completed", (got.error, want["error"])
        assert same(normalise(got.outputs), want["output"]), (got.outputs, want["output"])
        assert got.node_statuses() == want["nodes"]
    assert same(normalise(aggregation.metrics), expected["aggregation"]["metrics"])
    assert expected["lines"][1]["nodes"]["shout"] == "Completed"
    assert expected["lines"][0]["nodes"]["shout"] == "Bypassed"


def write_fixture() -> None:
    """Save the flow into tests/flows/authored_in_python with its case.json (expected.json comes
    from tests/flows/regenerate_expected.py, run with promptflow)."""
    import shutil

    keep = {n: (FIXTURE / n).read_bytes() for n in ("expected.json",) if (FIXTURE / n).exists()}
    shutil.rmtree(FIXTURE, ignore_errors=True)
    authored_flow().save(FIXTURE)
    case = {"description": "a flow built with pfkit.authoring.FlowBuilder and saved (python "
                           "nodes from functions with a helper, an import and a constant; a "
                           "prompt; an llm node with a completion variant; activate; an "
                           "aggregation node logging metrics)",
            "lines": LINES}
    (FIXTURE / "case.json").write_text(json.dumps(case, indent=2) + "\n")
    for name, content in keep.items():
        (FIXTURE / name).write_bytes(content)


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT / "tests"))
    write_fixture()
    print(f"wrote {FIXTURE}")
