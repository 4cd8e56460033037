"""pfkit.evaluate runs its evaluation runs together: concurrently in this process, and the
CPU-bound ones (python tools only) shared with one helper process over a large base run. Every
evaluator still makes its own complete evaluation run, linked to the base run; results and
errors are the same whichever process ran it."""

from __future__ import annotations

import json
import os

import pytest
from test_evaluate_api import BASE_FLOW  # the same one-node base flow

import pfkit
from pfkit.errors import PfkitError

REPLY = ("from promptflow.core import tool\n\n@tool\ndef reply(query: str) -> str:\n"
         "    if query == 'boom':\n        raise ValueError('no')\n"
         "    return {'a': 'alpha', 'b': 'beta', 'c': 'gamma'}.get(query, 'the ' + query)\n")
ROWS = [{"query": "a", "ground_truth": "alpha"}, {"query": "b", "ground_truth": "beta"},
        {"query": "c", "ground_truth": "delta"}, {"query": "boom", "ground_truth": "x"},
        {"query": "cat", "ground_truth": "the cat sat"}, {"query": "d", "ground_truth": "d."}]

# a python-only evaluator whose tool script cannot be imported (more outputs than f1_score:
# the larger run, which the helper takes first)
BROKEN_FLOW = """
inputs:
  response: {type: string}
outputs:
  score: {type: double, reference: "${score.output}"}
  again: {type: double, reference: "${score.output}"}
  more: {type: double, reference: "${score.output}"}
nodes:
- name: score
  type: python
  source: {type: code, path: score.py}
  inputs: {response: "${inputs.response}"}
"""

EVALUATORS = {"em": "exact_match", "f1": "f1_score", "rouge": "rouge", "bleu": "bleu",
              "json": "json_valid"}


@pytest.fixture(autouse=True)
def home(tmp_path, monkeypatch):
    monkeypatch.setenv("PFKIT_HOME", str(tmp_path / "home"))


@pytest.fixture
def base(make_flow, tmp_path):
    data = tmp_path / "data.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in ROWS), encoding="utf-8")
    folder = make_flow({"flow.dag.yaml": BASE_FLOW, "reply.py": REPLY}, name="bot")
    return pfkit.run(folder, data)


@pytest.fixture
def helper(monkeypatch):
    """The helper process for any dataset size."""
    from pfkit.evaluate import _parallel

    monkeypatch.setattr(_parallel, "HELPER_MIN_LINES", 1)
    monkeypatch.delenv("PFKIT_EVAL_HELPER", raising=False)


def _owners(result) -> set[int]:
    store = pfkit.Session.default().store
    return {store.get(name).owner["pid"] for name in result.runs.values()}


def test_the_helper_gives_the_same_runs_and_results(base, helper, monkeypatch):
    shared = pfkit.evaluate(run=base, evaluators=EVALUATORS)
    assert len(_owners(shared) - {os.getpid()}) == 1  # some runs were made by the helper
    monkeypatch.setenv("PFKIT_EVAL_HELPER", "0")
    alone = pfkit.evaluate(run=base, evaluators=EVALUATORS)
    assert _owners(alone) == {os.getpid()}
    assert shared.metrics == alone.metrics
    assert {k: s.to_dict() for k, s in shared.statistics.items()} == \
        {k: s.to_dict() for k, s in alone.statistics.items()}
    assert shared.rows == alone.rows
    assert list(shared.runs) == list(EVALUATORS)  # in the evaluators' order
    for alias, name in shared.runs.items():
        run = pfkit.get_run(name)
        assert run.status == "Completed"
        assert run.record.run == base.name  # an evaluation run linked to the base run
        assert run.record.tags["pfkit.evaluator"] == alias
        assert len(run.lines()) == 5  # the failed base line is not evaluated
        assert run.metrics()  # its aggregation node logged its metrics
        assert (run.path / "flow_outputs" / "output.jsonl").is_file()


def test_an_error_in_the_helper_is_the_error_this_process_raises(base, helper, monkeypatch,
                                                                 make_flow):
    broken = make_flow({"flow.dag.yaml": BROKEN_FLOW, "score.py": "def score(:\n"},
                       name="broken")
    evaluators = {"f1": "f1_score", "broken": str(broken)}
    with pytest.raises(PfkitError) as shared:
        pfkit.evaluate(run=base, evaluators=evaluators)
    monkeypatch.setenv("PFKIT_EVAL_HELPER", "0")
    with pytest.raises(PfkitError) as alone:
        pfkit.evaluate(run=base, evaluators=evaluators)
    assert type(shared.value) is type(alone.value)
    assert str(shared.value) == str(alone.value)
    assert shared.value.code == alone.value.code
    failed = [r for r in pfkit.Session.default().store.list()
              if r.flow_name == "broken"]
    assert len(failed) == 2 and {r.status for r in failed} == {"Failed"}
    assert any(r.owner["pid"] != os.getpid() for r in failed)  # one failed in the helper


def test_small_runs_stay_in_this_process_one_after_another(base, monkeypatch):
    monkeypatch.delenv("PFKIT_EVAL_HELPER", raising=False)
    result = pfkit.evaluate(run=base, evaluators=EVALUATORS)
    assert _owners(result) == {os.getpid()}
    store = pfkit.Session.default().store
    records = [store.get(name) for name in result.runs.values()]
    assert {r.status for r in records} == {"Completed"}
    assert {r.run for r in records} == {base.name}
    ordered = sorted(records, key=lambda r: r.start_time)
    assert all(a.end_time <= b.start_time for a, b in zip(ordered, ordered[1:], strict=False))


def test_eval_progress_is_one_line_for_all_runs(base, capsys):
    from pfkit.cli import main

    capsys.readouterr()
    assert main(["eval", "--run", base.name, "--evaluator", "exact_match", "--evaluator",
                 "f1_score"]) == 0
    captured = capsys.readouterr()
    assert "evaluation (2 runs): lines 10/10" in captured.err
    assert "exact_match" in captured.out and "f1_score" in captured.out


def test_a_helper_that_dies_fails_its_evaluator_clearly(base, helper, make_flow):
    # the tool ends the process it runs in when that is the helper (which the parent is not)
    dies = make_flow({"flow.dag.yaml": BROKEN_FLOW, "score.py": (
        "import os\nfrom promptflow.core import tool\n\n@tool\n"
        "def score(response: str) -> float:\n"
        "    if os.environ.get('PFKIT_EVAL_HELPER') == '0':\n        os._exit(3)\n"
        "    return 1.0\n")}, name="dies")
    with pytest.raises(PfkitError, match="helper process exited .* evaluator 'dies'") as caught:
        pfkit.evaluate(run=base, evaluators={"f1": "f1_score", "dies": str(dies)})
    assert caught.value.code == "EvaluationHelperFailed"
    runs = pfkit.Session.default().store.list()
    assert [r.status for r in runs if r.flow_name == "f1_score"] == ["Completed"]  # went on
