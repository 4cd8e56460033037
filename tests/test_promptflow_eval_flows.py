"""promptflow's published evaluation-flow shapes run unchanged as pfkit evaluation runs.

Each ``tests/flows/pfeval_<shape>/`` holds a base flow, an evaluation flow written for this
project in the shape of one of promptflow's evaluation flows (eval-basic,
eval-classification-accuracy, eval-accuracy-maths-to-code, eval-entity-match-rate,
eval-groundedness, eval-qna-non-rag, eval-qna-rag-metrics, eval-multi-turn-metrics,
eval-summarization), the data and the column mappings. ``expected.json`` is what promptflow 1.18.5 gave with ``pf run create``
for the base run and for the evaluation run over it (``tests/flows/pfeval_expected.py``),
against pfkit's test server answering from the same rules. pfkit must give the same run
status, the same lines (line numbers included: failed base lines are dropped), the same line
statuses, node statuses (Bypassed where promptflow bypassed), inputs, outputs and error
messages, the same run error, and the same metrics (NaN
where promptflow has NaN).

Regenerate: ``.bench/promptflow-venv/bin/python tests/flows/regenerate_expected.py --pfeval``.
"""

from __future__ import annotations

import json
import math
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import pfkit
from pfkit.testing import RuleResponder, TestServer

FLOWS = Path(__file__).resolve().parent / "flows"
sys.path.insert(0, str(FLOWS))
import pfeval_expected  # noqa: E402  (the generator: case discovery and the shared rules)

CASES = pfeval_expected.discover_cases()
# numpy's nanmean over a metric bypassed on every line (NaN, as in promptflow) warns.
pytestmark = pytest.mark.filterwarnings("ignore:Mean of empty slice:RuntimeWarning")


def same(a, b) -> bool:
    """Equality with NaN == NaN; ints and floats must agree in type as promptflow's JSON does."""
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
        return True
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    return type(a) is type(b) and a == b


def as_json(value):
    """A value as promptflow's files hold it (JSON, NaN kept)."""
    return json.loads(json.dumps(value, ensure_ascii=False, allow_nan=True))


@pytest.fixture(scope="module")
def home(tmp_path_factory):
    with pytest.MonkeyPatch.context() as patch:
        path = tmp_path_factory.mktemp("pfeval_home")
        patch.setenv("PFKIT_HOME", str(path))
        yield path


@pytest.fixture(scope="module")
def server(home):
    from pfkit.connections._store import ConnectionStore

    responder = RuleResponder.from_config(pfeval_expected.all_rules(CASES))
    with TestServer(responder) as srv:
        ConnectionStore().create({"name": pfeval_expected.CONNECTION, "type": "open_ai",
                                  "api_key": pfeval_expected.API_KEY, "base_url": srv.base_url})
        yield srv


def case_copy(name: str, tmp_path: Path) -> Path:
    work = tmp_path / name
    shutil.copytree(FLOWS / name, work, ignore=shutil.ignore_patterns("expected.json", "__pycache__"))
    return work


def check_run(run: pfkit.Run, want: dict, what: str) -> None:
    assert run.status == want["status"], what
    lines = {line["line_number"]: line for line in run.lines()}
    assert sorted(lines) == [line["line_number"] for line in want["lines"]], what
    for expected in want["lines"]:
        got = lines[expected["line_number"]]
        where = f"{what} line {expected['line_number']}"
        assert got["status"] == expected["status"], (where, got.get("error"))
        inputs = {k: v for k, v in got["inputs"].items() if k != "line_number"}
        assert same(as_json(inputs), expected["inputs"]), (where, inputs, expected["inputs"])
        if expected["output"] is not None:
            assert same(as_json(got["outputs"]), expected["output"]), (where, got["outputs"],
                                                                       expected["output"])
        if "nodes" in expected:
            assert got["nodes"] == expected["nodes"], (where, got["nodes"], expected["nodes"])
        if expected.get("error"):
            assert_same_error((got.get("error") or {}).get("message"), expected["error"], where)
    assert same(as_json(dict(run.metrics())), want["metrics"]), (what, run.metrics(), want["metrics"])
    if "error" in want:
        got_error = (run.info.get("error") or {}).get("message")
        assert (got_error is None) == (want["error"] is None), (what, got_error, want["error"])
        if want["error"]:
            assert_same_error(got_error, want["error"], what)


def assert_same_error(got: str | None, want: str, where: str) -> None:
    """Tool and reference errors read exactly as promptflow's. A model's refusal is the one known
    difference: promptflow says "OpenAI API hits BadRequestError: <server message> [Error
    reference: <openai docs URL>]", pfkit names the connection and endpoint and keeps the
    server's message (tests/test_providers.py checks its wording)."""
    assert got, where
    prefix = "OpenAI API hits BadRequestError: "
    if prefix in want:
        server_message = want.split(prefix, 1)[1].split(" [Error reference:", 1)[0]
        lead = want.split(prefix, 1)[0]  # "Failed to run 1/6 lines. First error message is: "
        assert got.startswith(f"{lead}connection '{pfeval_expected.CONNECTION}' "), (where, got)
        assert server_message in got, (where, got)
    else:
        assert got == want, (where, got, want)


def test_every_published_shape_has_a_fixture():
    assert CASES == ["pfeval_accuracy_maths", "pfeval_basic", "pfeval_classification_accuracy",
                     "pfeval_entity_match_rate", "pfeval_groundedness", "pfeval_multi_turn_metrics",
                     "pfeval_qna_non_rag", "pfeval_qna_rag_metrics", "pfeval_summarization"]
    for name in CASES:
        expected = json.loads((FLOWS / name / "expected.json").read_text(encoding="utf-8"))
        statuses = [line["status"] for line in expected["base"]["lines"]]
        assert "Failed" in statuses, f"{name}: the base run needs a failing line"
        assert len(expected["eval"]["lines"]) == statuses.count("Completed"), name
        assert expected["eval"]["metrics"], f"{name}: promptflow logged no metric"


@pytest.mark.parametrize("name", CASES)
def test_evaluation_run_matches_promptflow(name, server, tmp_path):
    meta = pfeval_expected.load_case(name)
    expected = json.loads((FLOWS / name / "expected.json").read_text(encoding="utf-8"))
    work = case_copy(name, tmp_path)
    data = work / "data.jsonl"
    base = pfkit.run(work / "base", data, column_mapping=meta.get("base_column_mapping"))
    check_run(base, expected["base"], f"{name} base run")
    eval_data = data if meta.get("eval_data", True) else None  # False: --run only, no --data
    evaluation = pfkit.run(work / "eval", eval_data, run=base, column_mapping=meta.get("eval_column_mapping"))
    check_run(evaluation, expected["eval"], f"{name} evaluation run")


@pytest.mark.parametrize("name", ["pfeval_qna_non_rag", "pfeval_multi_turn_metrics"])
def test_evaluation_run_in_worker_processes_matches_promptflow(name, server, tmp_path):
    """The same results when pfkit runs the lines in worker processes (promptflow's own batch
    mode): the bypass and reference rules hold there too."""
    meta = pfeval_expected.load_case(name)
    expected = json.loads((FLOWS / name / "expected.json").read_text(encoding="utf-8"))
    work = case_copy(name, tmp_path)
    data = work / "data.jsonl"
    base = pfkit.run(work / "base", data, column_mapping=meta.get("base_column_mapping"), workers=2)
    check_run(base, expected["base"], f"{name} base run (workers)")
    evaluation = pfkit.run(work / "eval", data, run=base, column_mapping=meta.get("eval_column_mapping"),
                           workers=2)
    check_run(evaluation, expected["eval"], f"{name} evaluation run (workers)")


def test_cli_evaluation_run_shows_promptflow_metrics(server, home, tmp_path):
    """``pfkit run create --flow EVAL --run BASE --column-mapping ...`` and ``run show-metrics``
    print promptflow's flat metrics JSON (NaN handling and rounding included)."""
    import os

    name = "pfeval_qna_non_rag"
    meta = pfeval_expected.load_case(name)
    expected = json.loads((FLOWS / name / "expected.json").read_text(encoding="utf-8"))
    work = case_copy(name, tmp_path)
    env = dict(os.environ, PFKIT_HOME=str(home))

    def cli(*args: str) -> str:
        proc = subprocess.run([sys.executable, "-m", "pfkit", *args], cwd=work, env=env,
                              capture_output=True, text=True, timeout=300)
        assert proc.returncode == 0, proc.stderr[-2000:]
        return proc.stdout

    def mapping(m: dict) -> list[str]:
        return ["--column-mapping", *[f"{k}={v}" for k, v in m.items()]]

    cli("run", "create", "--flow", "base", "--data", "data.jsonl", "--name", "cli_pfeval_base",
        *mapping(meta["base_column_mapping"]))
    cli("run", "create", "--flow", "eval", "--data", "data.jsonl", "--run", "cli_pfeval_base",
        "--name", "cli_pfeval_eval", *mapping(meta["eval_column_mapping"]))
    shown = json.loads(cli("run", "show-metrics", "-n", "cli_pfeval_eval"))
    assert same(shown, expected["eval"]["metrics"])


# --- focused tests of the differences the fixtures found (each failed before its fix) ----------
BYPASS_FLOW = """
inputs:
  go: {type: bool}
outputs:
  whole: {type: object, reference: "${pick.output}"}
  part: {type: string, reference: "${pick.output.key}"}
nodes:
- name: pick
  type: python
  source: {type: code, path: tools.py}
  inputs: {x: "${inputs.go}"}
  activate: {when: "${inputs.go}", is: true}
"""
AGGREGATION_FLOW = """
inputs:
  go: {type: bool}
outputs:
  out: {type: object, reference: "${always.output}"}
nodes:
- name: pick
  type: python
  source: {type: code, path: tools.py}
  inputs: {x: "${inputs.go}"}
  activate: {when: "${inputs.go}", is: true}
- name: always
  type: python
  source: {type: code, path: tools.py}
  inputs: {x: "${inputs.go}"}
- name: agg
  type: python
  source: {type: code, path: agg.py}
  inputs: {picked: "${pick.output.key}", kept: "${always.output.key}"}
  aggregation: true
"""
TOOLS = """
from promptflow.core import tool


@tool
def pick(x) -> dict:
    return {"key": str(x)}
"""
AGG = """
from promptflow.core import log_metric, tool


@tool
def agg(picked: list, kept: list) -> int:
    log_metric("lines", len(kept))
    return len(kept)
"""


def _flow(tmp_path: Path, dag: str, **files: str) -> Path:
    folder = tmp_path / "flow"
    folder.mkdir()
    (folder / "flow.dag.yaml").write_text(dag, encoding="utf-8")
    for name, text in {"tools.py": TOOLS, **files}.items():
        (folder / name).write_text(text, encoding="utf-8")
    return folder


def _data(tmp_path: Path) -> Path:
    data = tmp_path / "data.jsonl"
    data.write_text('{"go": true}\n{"go": false}\n', encoding="utf-8")
    return data


def test_flow_output_with_a_path_into_a_bypassed_node_fails_the_line(tmp_path, home):
    """promptflow: ``${node.output}`` of a bypassed node is None, ``${node.output.key}`` fails the
    line with InvalidReferenceProperty (eval-qna-non-rag's outputs read concat_scores' keys)."""
    run = pfkit.run(_flow(tmp_path, BYPASS_FLOW), _data(tmp_path))
    first, second = run.lines()
    assert first["status"] == "Completed" and first["outputs"] == {"whole": {"key": "True"}, "part": "True"}
    assert second["status"] == "Failed"
    assert second["error"]["message"] == ("Flow execution failed. Invalid property 'key' when accessing "
                                          "the node 'pick'. Please check the property and try again.")


def test_aggregation_input_with_a_path_into_a_bypassed_node_fails_the_line(tmp_path, home):
    """promptflow resolves the aggregation inputs of each line when the line ends: a path that does
    not resolve (here into a bypassed node) fails that line, which then is not aggregated."""
    run = pfkit.run(_flow(tmp_path, AGGREGATION_FLOW, **{"agg.py": AGG}), _data(tmp_path))
    first, second = run.lines()
    assert first["status"] == "Completed"
    assert second["status"] == "Failed"
    assert "Invalid property 'key' when accessing the node 'pick'" in second["error"]["message"]
    assert dict(run.metrics()) == {"lines": 1}


NUMPY_AGG = """
import numpy as np
from promptflow.core import log_metric, tool


@tool
def agg(picked: list, kept: list) -> int:
    values = np.array([len(k) for k in kept])
    log_metric("total", values.sum())           # numpy int64
    log_metric("mean", np.float32(values.mean()))
    log_metric("all_short", np.all(values < 9))  # numpy bool
    log_metric("nan", np.float64("nan"))
    return int(values.sum())
"""


def test_numpy_scalar_metrics_are_recorded_as_numbers(tmp_path, home):
    """Evaluation flows log numpy values (np.mean, a sum): metrics.json and show-metrics hold the
    numbers (promptflow 1.18.5 crashes its run on np.int64 / np.float32; np.float64, a float
    subclass, it writes as a number)."""
    dag = AGGREGATION_FLOW.replace("${pick.output.key}", "${always.output}")
    run = pfkit.run(_flow(tmp_path, dag, **{"agg.py": NUMPY_AGG}), _data(tmp_path))
    metrics = dict(run.metrics())
    assert {k: v for k, v in metrics.items() if k != "nan"} == {"total": 9, "mean": 4.5, "all_short": True}
    assert type(metrics["total"]) is int and type(metrics["all_short"]) is bool
    assert math.isnan(metrics["nan"])
    on_disk = (run.path / "metrics.json").read_text(encoding="utf-8")
    assert "np." not in on_disk and "NaN" in on_disk


def test_run_store_inside_the_flow_folder_is_not_copied_into_the_snapshot(tmp_path, monkeypatch):
    """PFKIT_HOME inside the flow folder (a project keeping its runs beside its flow): the run's
    snapshot holds the flow, not the store (before: endless recursion, run Failed with an
    internal RecursionError; and the store's connections copied into every snapshot)."""
    folder = _flow(tmp_path, AGGREGATION_FLOW.replace("${pick.output.key}", "${always.output}"),
                   **{"agg.py": AGG})
    monkeypatch.setenv("PFKIT_HOME", str(folder / ".runs_home"))
    run = pfkit.run(folder, _data(tmp_path))
    assert run.status == "Completed"
    assert sorted(p.name for p in (run.path / "snapshot").iterdir()) == ["agg.py", "flow.dag.yaml",
                                                                         "tools.py"]
