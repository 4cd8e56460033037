"""pfkit.evaluate and pfkit eval: built-in names, flows and callables over data or a run;
guessed mappings; clear errors for bad input."""

from __future__ import annotations

import json

import pytest

import pfkit
from pfkit.errors import UserError

BASE_FLOW = """
inputs:
  query: {type: string}
outputs:
  response: {type: string, reference: "${reply.output}"}
nodes:
- name: reply
  type: python
  source: {type: code, path: reply.py}
  inputs: {query: "${inputs.query}"}
"""
REPLY = ("from promptflow.core import tool\n\n@tool\ndef reply(query: str) -> str:\n"
         "    if query == 'boom':\n        raise ValueError('no')\n"
         "    return {'a': 'alpha', 'b': 'beta', 'c': 'gamma'}.get(query, 'unknown')\n")
ROWS = [{"query": "a", "ground_truth": "alpha"}, {"query": "b", "ground_truth": "beta"},
        {"query": "c", "ground_truth": "delta"}, {"query": "boom", "ground_truth": "x"}]


@pytest.fixture(autouse=True)
def home(tmp_path, monkeypatch):
    monkeypatch.setenv("PFKIT_HOME", str(tmp_path / "home"))


@pytest.fixture
def data(tmp_path):
    path = tmp_path / "data.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in ROWS), encoding="utf-8")
    return path


@pytest.fixture
def base(make_flow, data):
    folder = make_flow({"flow.dag.yaml": BASE_FLOW, "reply.py": REPLY}, name="bot")
    return pfkit.run(folder, data)


def exact(response: str, ground_truth: str) -> dict:
    return {"exact": float(response == ground_truth), "label": "same" if response == ground_truth
            else "different"}


class LengthRatio:
    def __init__(self, cap: float = 2.0):
        self.cap = cap

    def __call__(self, *, response: str, ground_truth: str) -> dict:
        return {"ratio": min(self.cap, len(response) / len(ground_truth))}


async def async_contains(response: str, ground_truth: str) -> float:
    return float(ground_truth in response)


def test_callables_and_builtins_over_a_run(base, data):
    result = pfkit.evaluate(run=base, evaluators={
        "exact": exact, "ratio": LengthRatio(), "contains": async_contains, "f1": "f1_score"})
    metrics = result["metrics"]
    assert metrics["exact.exact"] == pytest.approx(2 / 3)  # the failed base line is skipped
    assert metrics["ratio.ratio"] == pytest.approx((1 + 1 + 1.0) / 3)  # gamma/delta: 5/5
    assert metrics["contains.score"] == pytest.approx(2 / 3)
    assert metrics["f1.f1_score"] == pytest.approx(2 / 3)
    assert "exact.label" not in metrics  # text is not a score
    stats = result.statistics["exact.exact"]
    assert (stats.n, stats.method) == (3, "wilson") and stats.ci_low < 2 / 3 < stats.ci_high
    rows = result["rows"]
    assert [r["line_number"] for r in rows] == [0, 1, 2]
    assert rows[2]["inputs.query"] == "c" and rows[2]["outputs.response"] == "gamma"
    assert rows[2]["outputs.exact.label"] == "different"
    assert result.runs["f1"] in {r.name for r in pfkit.Session.default().store.list()}
    assert pfkit.get_run(result.runs["f1"]).record.run == base.name  # linked to the base
    assert "f1.f1_score" in str(result)


def test_azure_style_mapping_over_data(data):
    result = pfkit.evaluate(data=str(data), evaluators={"ex": exact}, evaluator_config={
        "default": {"column_mapping": {"response": "${data.ground_truth}",
                                       "ground_truth": "${data.ground_truth}"}}})
    assert result["metrics"] == {"ex.exact": 1.0}
    assert len(result["rows"]) == 4


def test_errors_in_a_callable_are_counted_not_scored(data):
    def flaky(ground_truth: str) -> float:
        if ground_truth == "x":
            raise RuntimeError("cannot score")
        return 1.0

    result = pfkit.evaluate(data=str(data), evaluators={"f": flaky})
    s = result.statistics["f.score"]
    assert (s.value, s.n, s.errors) == (1.0, 3, 1)
    assert "cannot score" in result["rows"][3]["outputs.f.error"]


def test_bad_input_is_a_clear_error(base, data, tmp_path):
    with pytest.raises(UserError, match="needs input 'context'"):
        pfkit.evaluate(run=base, evaluators={"g": "groundedness"})
    with pytest.raises(UserError, match="neither a built-in evaluator nor a flow"):
        pfkit.evaluate(run=base, evaluators={"x": "no_such_evaluator"})
    two = tmp_path / "two.jsonl"
    two.write_text(json.dumps({"label": "a", "truth": "b", "query": "a"}) + "\n")
    with pytest.raises(UserError, match="could come from"):
        pfkit.evaluate(data=str(two), evaluators={"e": exact}, evaluator_config={
            "default": {"column_mapping": {"response": "${data.query}"}}})
    with pytest.raises(UserError, match="no evaluators"):
        pfkit.evaluate(run=base, evaluators={})


def test_a_run_that_is_not_finished_or_empty_is_refused(make_flow, tmp_path):
    folder = make_flow({"flow.dag.yaml": BASE_FLOW, "reply.py": REPLY}, name="bot2")
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({"query": "boom"}) + "\n")
    failed_only = pfkit.run(folder, bad)
    with pytest.raises(UserError, match="no completed line"):
        pfkit.evaluate(run=failed_only, evaluators={"f1": "f1_score"})
    store = pfkit.Session.default().store
    store.update(failed_only.name, status="Running", owner=None)
    with pytest.raises(UserError, match="not Completed"):
        pfkit.evaluate(run=failed_only.name, evaluators={"f1": "f1_score"})


def test_pfkit_eval_command(base, capsys):
    from pfkit.cli import main

    capsys.readouterr()
    assert main(["eval", "--run", base.name, "--evaluator", "exact_match", "--evaluator",
                 "f1_score", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["metrics"] == {"exact_match.exact_match": pytest.approx(2 / 3),
                              "f1_score.f1_score": pytest.approx(2 / 3)}
    assert out["statistics"]["exact_match.exact_match"]["n"] == 3
    assert main(["eval", "--run", base.name, "--evaluator", "groundedness"]) == 1
    assert "needs input 'context'" in capsys.readouterr().err
    assert main(["eval", "--run", base.name, "--evaluator", "exact_match",
                 "--column-mapping", "ground_truth=${data.query}"]) == 0
    assert "exact_match" in capsys.readouterr().out


def test_show_metrics_keeps_promptflow_shape_and_adds_stats_on_request(base, capsys):
    from pfkit.cli import main

    result = pfkit.evaluate(run=base, evaluators={"f1": "f1_score"})
    name = result.runs["f1"]
    capsys.readouterr()
    assert main(["run", "show-metrics", "-n", name]) == 0
    assert json.loads(capsys.readouterr().out) == {"f1_score": pytest.approx(2 / 3)}
    assert main(["run", "show-metrics", "-n", name, "--stats"]) == 0
    stats = json.loads(capsys.readouterr().out)["f1_score"]
    assert stats["n"] == 3 and stats["missing"] == 0
    assert stats["method"] == "wilson"  # the three F1 scores are 1, 1 and 0
    assert stats["ci_low"] <= stats["value"] <= stats["ci_high"]
