"""Batch runs: mapping rules, partial failures, aggregation, evaluation runs, resume after a
killed process, all variants, the run commands' JSON outputs, and the Python API."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

import pfkit
from pfkit.errors import UserError

ROOT = Path(__file__).resolve().parent.parent

SQUARE_FLOW = """
inputs:
  x: {type: int}
  label: {type: string, default: none}
outputs:
  y: {type: int, reference: "${square.output}"}
  label: {type: string, reference: "${inputs.label}"}
nodes:
- name: square
  type: python
  source: {type: code, path: square.py}
  inputs: {x: "${inputs.x}"}
- name: total
  type: python
  source: {type: code, path: total.py}
  inputs: {ys: "${square.output}", xs: "${inputs.x}"}
  aggregation: true
"""
SQUARE = ("from promptflow.core import tool\n\n@tool\ndef square(x: int) -> int:\n"
          "    if x < 0:\n        raise ValueError(f'negative: {x}')\n    return x * x\n")
TOTAL = ("from promptflow.core import tool, log_metric\n\n@tool\ndef total(ys: list, xs: list):\n"
         "    log_metric('sum', sum(ys))\n    log_metric('lines', len(xs))\n    return sum(ys)\n")


@pytest.fixture(autouse=True)
def pfkit_home(tmp_path, monkeypatch):
    home = tmp_path / "pfkit_home"
    monkeypatch.setenv("PFKIT_HOME", str(home))
    return home


@pytest.fixture
def square_flow(make_flow, tmp_path):
    folder = make_flow({"flow.dag.yaml": SQUARE_FLOW, "square.py": SQUARE, "total.py": TOTAL},
                       name="square")
    data = tmp_path / "data.jsonl"
    rows = [{"x": 1, "label": "a"}, {"x": -2}, {"x": 3, "label": "c"}, {"x": "4"}]
    data.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    return folder, data


def pfkit_cli(*args: str, env: dict | None = None, check: bool = True):
    result = subprocess.run([sys.executable, "-m", "pfkit", *args], capture_output=True,
                            text=True, cwd=ROOT, env={**os.environ, **(env or {})}, timeout=120)
    if check:
        assert result.returncode == 0, result.stderr
    return result


def test_run_with_partial_failures_completes_and_aggregates_successful_lines(square_flow):
    flow, data = square_flow
    run = pfkit.run(flow, data, name="r1")
    assert run.status == "Completed"
    system = run.info["properties"]["system_metrics"]
    assert system["__pf__.lines.completed"] == 3 and system["__pf__.lines.failed"] == 1
    assert run.info["error"]["message"].startswith(
        "Failed to run 1/4 lines. First error message is: Execution failure in 'square': "
        "(ValueError) negative: -2")
    outputs = [json.loads(x) for x in (run.path / "flow_outputs" / "output.jsonl").read_text().splitlines()]
    assert outputs == [{"line_number": 0, "y": 1, "label": "none"},
                       {"line_number": 2, "y": 9, "label": "none"},
                       {"line_number": 3, "y": 16, "label": "none"}]  # a default wins over data
    assert run.metrics() == {"sum": 26, "lines": 3}
    inputs = [json.loads(x) for x in (run.path / "inputs.jsonl").read_text().splitlines()]
    assert [i["line_number"] for i in inputs] == [0, 1, 2, 3]
    assert (run.path / "node_outputs" / "square.jsonl").is_file()
    assert (run.path / "snapshot" / "flow.dag.yaml").is_file()
    assert json.loads((run.path / "error.json").read_text())["lines"]["failed_lines"] == 1
    details = run.details()
    assert list(details["inputs.line_number"]) == [0, 1, 2, 3]
    assert details.loc[0, "outputs.y"] == 1


def test_explicit_mapping_literal_and_missing_columns(square_flow, tmp_path):
    flow, _ = square_flow
    data = tmp_path / "other.jsonl"
    data.write_text('{"value": 5, "tag": "t"}\n{"tag": "only"}\n')
    run = pfkit.run(flow, data, column_mapping={"x": "${data.value}", "label": "${data.tag}"})
    lines = run.lines()
    assert lines[0]["outputs"] == {"y": 25, "label": "t"}
    assert lines[1]["status"] == "Failed"
    assert "value" in lines[1]["error"]["message"]  # the missing column is named
    literal = pfkit.run(flow, data, column_mapping={"x": "7", "label": "fixed"})
    assert [r["outputs"] for r in literal.lines()] == [{"y": 49, "label": "fixed"}] * 2


def test_unknown_column_stops_the_run_before_it_starts(square_flow):
    flow, data = square_flow
    with pytest.raises(UserError) as info:
        pfkit.run(flow, data, column_mapping={"x": "${data.nope}"}, name="bad")
    assert "nope" in info.value.message and "x" in str(info.value)
    record = pfkit.get_run("bad").info
    assert record["status"] == "Failed" and record["error"]["code"]


def test_evaluation_run_joins_base_outputs_by_line_number(square_flow, make_flow):
    flow, data = square_flow
    base = pfkit.run(flow, data, name="base")
    evaluator = make_flow({"flow.dag.yaml": """
inputs:
  prediction: {type: int}
  x: {type: int}
outputs:
  ok: {type: bool, reference: "${check.output}"}
nodes:
- name: check
  type: python
  source: {type: code, path: check.py}
  inputs: {prediction: "${inputs.prediction}", x: "${inputs.x}"}
- name: rate
  type: python
  source: {type: code, path: rate.py}
  inputs: {oks: "${check.output}"}
  aggregation: true
""", "check.py": "from promptflow.core import tool\n\n@tool\ndef check(prediction: int, x: int):\n    return prediction == x * x\n",
        "rate.py": "from promptflow.core import tool, log_metric\n\n@tool\ndef rate(oks: list):\n    log_metric('accuracy', sum(oks) / len(oks))\n"},
        name="evaluator")
    ev = pfkit.run(evaluator, data, run="base", name="eval",
                   column_mapping={"prediction": "${run.outputs.y}", "x": "${data.x}"})
    assert ev.status == "Completed"
    assert [r["line_number"] for r in ev.lines()] == [0, 2, 3]  # line 1 failed in the base run
    assert ev.metrics() == {"accuracy": 1.0}
    assert ev.info["run"] == base.name


def test_missing_default_mapped_column_is_a_line_error(square_flow, tmp_path):
    flow, _ = square_flow
    data = tmp_path / "d.jsonl"
    data.write_text('{"x": 2}\n{"y": 3}\n')
    run = pfkit.run(flow, data)
    assert [r["status"] for r in run.lines()] == ["Completed", "Failed"]
    assert "'x'" in run.lines()[1]["error"]["message"]


def test_cli_run_commands_print_json(square_flow):
    flow, data = square_flow
    created = pfkit_cli("run", "create", "--flow", str(flow), "--data", str(data), "-n", "cli_run",
                        "--no-progress")
    record = json.loads(created.stdout)
    assert record["name"] == "cli_run" and record["status"] == "Completed"
    assert "1 failed" in created.stderr
    shown = json.loads(pfkit_cli("run", "show", "-n", "cli_run").stdout)
    assert shown["properties"]["system_metrics"]["__pf__.lines.failed"] == 1
    assert json.loads(pfkit_cli("run", "show-metrics", "-n", "cli_run").stdout) == {"sum": 26,
                                                                                     "lines": 3}
    details = json.loads(pfkit_cli("run", "show-details", "-n", "cli_run", "--json").stdout)
    assert [d["line_number"] for d in details] == [0, 1, 2, 3]
    assert set(details[0]) == {"line_number", "status", "inputs", "outputs", "error"}
    assert details[1]["status"] == "Failed" and details[1]["outputs"] == {}
    table = pfkit_cli("run", "show-details", "-n", "cli_run").stdout
    assert "inputs.line_number" in table.splitlines()[0] and "negative: -2" in table
    listed = json.loads(pfkit_cli("run", "list").stdout)
    assert [r["name"] for r in listed] == ["cli_run"]
    page = pfkit_cli("run", "visualize", "-n", "cli_run").stdout.strip()
    html = Path(page).read_text()
    assert "<script src" not in html and "cli_run" in html
    pfkit_cli("run", "archive", "-n", "cli_run")
    assert json.loads(pfkit_cli("run", "list").stdout) == []
    assert len(json.loads(pfkit_cli("run", "list", "--include-archived").stdout)) == 1
    pfkit_cli("run", "restore", "-n", "cli_run")
    pfkit_cli("run", "delete", "-n", "cli_run")
    missing = pfkit_cli("run", "show", "-n", "cli_run", check=False)
    assert missing.returncode == 1 and "does not exist" in missing.stderr


def test_run_that_cannot_start_exits_non_zero(square_flow, tmp_path):
    flow, _ = square_flow
    result = pfkit_cli("run", "create", "--flow", str(flow), "--data", str(tmp_path / "nope.jsonl"),
                       check=False)
    assert result.returncode == 1 and "Traceback" not in result.stderr


def test_all_variants_runs_every_combination(make_flow, tmp_path):
    variant = "{type: python, source: {type: code, path: v.py}, inputs: {x: '${inputs.x}', k: %s}}"
    flow = make_flow({"flow.dag.yaml": f"""
inputs:
  x: {{type: int}}
outputs:
  a: {{type: int, reference: "${{first.output}}"}}
  b: {{type: int, reference: "${{second.output}}"}}
nodes:
- name: first
  use_variants: true
- name: second
  use_variants: true
node_variants:
  first:
    default_variant_id: variant_0
    variants:
      variant_0: {{node: {variant % 1}}}
      variant_1: {{node: {variant % 10}}}
  second:
    default_variant_id: variant_0
    variants:
      variant_0: {{node: {variant % 100}}}
      variant_1: {{node: {variant % 1000}}}
""", "v.py": "from promptflow.core import tool\n\n@tool\ndef v(x: int, k: int):\n    return x * k\n"},
        name="variants")
    data = tmp_path / "v.jsonl"
    data.write_text('{"x": 2}\n')
    result = pfkit_cli("run", "create", "--flow", str(flow), "--data", str(data),
                       "--all-variants", "-n", "grid", "--no-progress")
    summary = json.loads(result.stdout)
    assert len(summary["runs"]) == 4
    outputs = sorted(tuple(pfkit.get_run(r["run"]).outputs()[0].values())[1:]
                     for r in summary["runs"])
    assert outputs == [(2, 200), (2, 2000), (20, 200), (20, 2000)]
    snapshot = (pfkit.get_run(summary["runs"][0]["run"]).path / "snapshot" / "flow.dag.yaml").read_text()
    assert "use_variants" not in snapshot


SLOW_FLOW = """
inputs:
  x: {type: int}
outputs:
  y: {type: int, reference: "${slow.output}"}
nodes:
- name: slow
  type: python
  source: {type: code, path: slow.py}
  inputs: {x: "${inputs.x}"}
"""
SLOW_TOOL = ("import asyncio\nfrom promptflow.core import tool\n\n@tool\nasync def slow(x: int):\n"
             "    await asyncio.sleep(0.05)\n    return x + 1000\n")
COUNT_NODE = """- name: count
  type: python
  source: {type: code, path: count.py}
  inputs: {ys: "${slow.output}"}
  aggregation: true
"""
COUNT_TOOL = ("from promptflow.core import tool, log_metric\n\n@tool\ndef count(ys: list):\n"
              "    log_metric('n', len(ys))\n    log_metric('unique', len(set(ys)))\n")


def start_run_in_background(flow: Path, data: Path, name: str, home: Path, *, lines: int,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL):
    """``pfkit run create`` in a child process, returned once ``lines`` lines are saved."""
    proc = subprocess.Popen([sys.executable, "-m", "pfkit", "run", "create", "--flow", str(flow),
                             "--data", str(data), "-n", name, "--concurrency", "4"], cwd=ROOT,
                            env={**os.environ, "PFKIT_HOME": str(home)}, stdout=stdout,
                            stderr=stderr, text=True)
    lines_file = home / "runs" / name / "lines.jsonl"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not (
            lines_file.is_file() and lines_file.read_text().count("\n") >= lines):
        time.sleep(0.02)
    return proc, lines_file


def write_rows(path: Path, count: int) -> Path:
    path.write_text("".join(json.dumps({"x": i}) + "\n" for i in range(count)))
    return path


def test_resume_after_a_killed_process_loses_and_duplicates_nothing(make_flow, tmp_path, pfkit_home):
    flow = make_flow({"flow.dag.yaml": SLOW_FLOW + COUNT_NODE, "slow.py": SLOW_TOOL,
                      "count.py": COUNT_TOOL}, name="slowflow")
    data = write_rows(tmp_path / "many.jsonl", 200)
    proc, lines_file = start_run_in_background(flow, data, "killed", pfkit_home, lines=20)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    done_before = lines_file.read_text().count("\n")
    assert 20 <= done_before < 200, "the run must be killed part-way"
    killed = pfkit.get_run("killed")  # it never got to finish, and its process is gone
    assert killed.status == "Canceled"
    assert "process gone" in killed.info["status_detail"]
    assert "--resume-from killed" in killed.info["status_detail"]
    resumed = pfkit.run(flow, data, name="resumed", resume_from="killed", concurrency=8)
    lines = resumed.lines()
    assert [r["line_number"] for r in lines] == list(range(200))
    assert all(r["status"] == "Completed" for r in lines)
    assert resumed.metrics() == {"n": 200, "unique": 200}
    out = (resumed.path / "flow_outputs" / "output.jsonl").read_text().splitlines()
    assert [json.loads(o)["line_number"] for o in out] == list(range(200))
    assert resumed.info["properties"]["system_metrics"]["lines.reused"] >= done_before - 4


def test_ctrl_c_cancels_cleanly_and_the_run_resumes(make_flow, tmp_path, pfkit_home):
    flow = make_flow({"flow.dag.yaml": SLOW_FLOW, "slow.py": SLOW_TOOL}, name="interrupted")
    data = write_rows(tmp_path / "rows.jsonl", 100)
    proc, _ = start_run_in_background(flow, data, "ctrl_c", pfkit_home, lines=10,
                                      stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert "--resume-from ctrl_c" in err and "Traceback" not in err
    canceled = pfkit.get_run("ctrl_c")
    assert canceled.status == "Canceled"
    assert 10 <= len(canceled.lines()) < 100
    resumed = pfkit.run(flow, data, resume_from="ctrl_c", name="ctrl_c_2")
    assert [r["outputs"]["y"] for r in resumed.lines()] == [i + 1000 for i in range(100)]


def test_store_written_by_an_older_version_opens(pfkit_home):
    import sqlite3

    pfkit_home.mkdir(parents=True)
    db = sqlite3.connect(pfkit_home / "runs.sqlite")
    db.execute("CREATE TABLE runs (name TEXT PRIMARY KEY, schema_version INTEGER, status TEXT, "
               "created_on REAL, archived INTEGER, record TEXT)")  # no run_group column yet
    old = {"name": "old_run", "status": "Completed", "created_on": 1.0, "flow_path": "/x",
           "properties": {"system_metrics": {}}}
    db.execute("INSERT INTO runs VALUES ('old_run', 0, 'Completed', 1.0, 0, ?)",
               (json.dumps(old),))
    db.commit()
    db.close()
    assert pfkit.get_run("old_run").status == "Completed"
    listed = json.loads(pfkit_cli("run", "list", env={"PFKIT_HOME": str(pfkit_home)}).stdout)
    assert [r["name"] for r in listed] == ["old_run"]


def test_python_api_inside_a_running_loop(square_flow):
    import asyncio

    flow, data = square_flow

    async def notebook_cell():
        return pfkit.run(flow, data)

    run = asyncio.run(notebook_cell())
    assert run.status == "Completed"


def test_a_run_starts_its_clock_once_the_models_http_library_is_imported(square_flow,
                                                                          monkeypatch):
    """Binding an OpenAI model imports aiohttp in the background; a run waits for that import
    before its first line (otherwise every first line waits on it, inside the run's time)."""
    import threading
    import time

    from pfkit.providers import _http

    finished: list[float] = []

    def slow_import() -> None:
        time.sleep(0.3)
        finished.append(time.time())

    thread = threading.Thread(target=slow_import, daemon=True)
    thread.start()
    monkeypatch.setattr(_http, "_prefetch_thread", thread)
    flow, data = square_flow
    run = pfkit.run(flow, data, name="after_import")
    assert finished, "the run did not wait for the import"
    first_line = min(line["start_time"] for line in run.lines())
    assert run.info["start_time"] >= finished[0] and first_line >= finished[0]


@pytest.mark.parametrize("owned", [True, False], ids=["pfkit-process", "users-process"])
def test_a_run_in_pfkit_s_own_process_keeps_its_flow_applied(tmp_path, make_flow, monkeypatch,
                                                              owned):
    """In a process pfkit owns (the pfkit command) a run applies its flow's folder once for
    all its lines; in a user's process it is applied around each line's tool calls. Either
    way the tools see the flow folder and the directory is the caller's afterwards."""
    from pfkit import _runtime

    folder = make_flow({"flow.dag.yaml": (
        "inputs: {x: {type: int}}\noutputs: {here: {type: string, reference: '${where.output}'}}\n"
        "nodes:\n- name: where\n  type: python\n  source: {type: code, path: where.py}\n"
        "  inputs: {x: '${inputs.x}'}\n"),
        "where.py": "import os\nfrom promptflow.core import tool\n\n@tool\n"
                    "def where(x: int) -> str:\n    return os.getcwd()\n"})
    data = tmp_path / "rows.jsonl"
    data.write_text("".join(json.dumps({"x": i}) + "\n" for i in range(40)))
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(_runtime, "_claimed", owned)
    moves: list[str] = []
    real_chdir = os.chdir

    def counting_chdir(path):
        moves.append(str(path))
        real_chdir(path)

    monkeypatch.setattr(os, "chdir", counting_chdir)
    run = pfkit.run(folder, data, concurrency=1)
    assert run.status == "Completed"
    assert {line["outputs"]["here"] for line in run.lines()} == {str(folder)}
    assert os.getcwd() == str(tmp_path)
    into_flow = moves.count(str(folder))
    if owned:
        assert into_flow <= 2, moves  # binding the tool, then once for the whole run
    else:
        assert into_flow >= 40, moves  # one stretch of tool calls per line
