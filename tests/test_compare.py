"""Comparing runs: alignment, per-run summaries, paired comparisons, reports."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from pfkit.compare import collect, compare_scores, metric_columns, render_html, render_text
from pfkit.stats import compare_paired, holm, summarize


@dataclass
class FakeRun:
    name: str
    records: list[dict[str, Any]]
    info: dict[str, Any] = field(default_factory=dict)
    run_metrics: dict[str, Any] = field(default_factory=dict)

    def lines(self):
        return self.records

    def metrics(self):
        return self.run_metrics


def line(n, inputs, outputs, status="Completed"):
    return {"line_number": n, "status": status, "inputs": inputs, "outputs": outputs}


QUESTIONS = [f"q{i}" for i in range(12)]
A_CORRECT = [0, 0, 1, 1, 0, 0, 0, 1, 0, 0, 0, 0]
B_CORRECT = [1] * 12


def base_runs():
    a = FakeRun("zero_shot", [line(i, {"q": q}, {"answer": f"a{i}"}) for i, q in
                              enumerate(QUESTIONS)])
    b = FakeRun("few_shot_with_a_rather_long_name_for_the_variant_1",
                [line(i, {"q": q}, {"answer": f"b{i}"}) for i, q in enumerate(QUESTIONS)])
    return a, b


def eval_run(name, correct, f1):
    return FakeRun(name, [line(i, {"answer": "x"}, {"correct": c, "f1": f, "grade": "ok"})
                          for i, (c, f) in enumerate(zip(correct, f1, strict=True))],
                   info={"flow_name": "classification"})


F1_A = [0.1, 0.2, 0.9, 0.8, 0.0, 0.3, 0.2, 1.0, 0.1, 0.0, 0.4, 0.2]
F1_B = [0.9, 0.8, 1.0, 0.9, 0.7, 0.6, 0.9, 1.0, 0.8, 0.7, 0.9, 0.8]


def test_metric_columns_are_numeric_outputs_only():
    records = [line(0, {}, {"score": 1, "grade": "ok", "flag": True, "n": None, "obj": {"a": 1}}),
               line(1, {}, {"score": 0.5, "grade": "bad", "flag": False, "n": 3, "text": "42"}),
               line(2, {}, {"score": "x"}, status="Failed")]
    assert metric_columns(records) == ["flag", "n", "score"]


def test_compare_two_variants_against_hand_statistics():
    a, b = base_runs()
    runs = [collect(a, [eval_run("ev_a", A_CORRECT, F1_A)]),
            collect(b, [eval_run("ev_b", B_CORRECT, F1_B)])]
    result = compare_scores(runs)
    assert result.baseline == "zero_shot"
    assert result.metrics == ["correct", "f1"]
    assert result.alignment.line_numbers == tuple(range(12))
    s = result.summaries["correct"]["zero_shot"]
    assert (s.value, s.n, s.method) == (pytest.approx(3 / 12), 12, "wilson")
    expected = compare_paired("correct", A_CORRECT, B_CORRECT)
    got = result.comparisons["correct"][b.name]
    assert got.test == "McNemar (exact)" and got.p_value == pytest.approx(expected.p_value)
    assert (got.wins, got.ties, got.losses) == (9, 3, 0)
    f1 = result.comparisons["f1"][b.name]
    assert f1.p_value == pytest.approx(compare_paired("f1", F1_A, F1_B).p_value)
    adjusted = holm([got.p_value, f1.p_value])
    assert (got.p_adjusted, f1.p_adjusted) == (pytest.approx(adjusted[0]),
                                               pytest.approx(adjusted[1]))
    assert got.significant and f1.significant
    assert result.changed[0].change == pytest.approx(1.0)  # a 0 -> 1 flip is the biggest
    assert result.changed[0].outputs == {"answer": f"b{result.changed[0].line_number}"}
    data = result.to_dict()
    assert data["lines"]["compared"] == 12 and data["comparisons"]["f1"][b.name]["significant"]


def test_mismatched_inputs_and_missing_lines_are_reported_and_left_out():
    a, b = base_runs()
    b.records[3]["inputs"] = {"q": "something else"}
    del b.records[5]
    runs = [collect(a, [eval_run("ev_a", A_CORRECT, F1_A)]),
            collect(b, [eval_run("ev_b", B_CORRECT, F1_B)])]
    result = compare_scores(runs, metrics=["f1"])
    assert result.alignment.mismatched == (3,)
    assert result.alignment.missing == {b.name: (5,)}
    assert result.summaries["f1"]["zero_shot"].n == 10
    kept = [i for i in range(12) if i not in (3, 5)]
    expected = summarize("f1", [F1_A[i] for i in kept])
    assert result.summaries["f1"]["zero_shot"].value == pytest.approx(expected.value)
    text = render_text(result)
    assert "inputs differ" in text and "lacks 1 line(s)" in text


def test_failed_lines_count_as_errors_not_zero():
    a, b = base_runs()
    ev_b = eval_run("ev_b", B_CORRECT, F1_B)
    ev_b.records[0] = line(0, {}, {}, status="Failed")
    result = compare_scores([collect(a, [eval_run("ev_a", A_CORRECT, F1_A)]), collect(b, [ev_b])])
    s = result.summaries["f1"][b.name]
    assert s.n == 11 and s.missing == 1
    assert result.comparisons["f1"][b.name].n == 11


def test_ties_everywhere_are_not_significant_and_say_so():
    a, b = base_runs()
    same = [0.5] * 12
    result = compare_scores([collect(a, [eval_run("e1", A_CORRECT, same)]),
                             collect(b, [eval_run("e2", A_CORRECT, same)])])
    c = result.comparisons["f1"][b.name]
    assert c.p_value == 1.0 and not c.significant and c.ties == 12
    assert "not significant" in render_text(result)
    assert result.changed == []


def test_text_report_reads_with_long_names_and_many_runs():
    runs = []
    for k in range(10):
        r = FakeRun(f"variant_{k}_" + "x" * 40, [line(i, {"q": q}, {"score": (i * k) % 3 / 2})
                                                  for i, q in enumerate(QUESTIONS)])
        runs.append(collect(r))
    result = compare_scores(runs, baseline=runs[2].name)
    text = render_text(result)
    assert text.count("(baseline)") == 1
    assert max(len(row) for row in text.splitlines() if not row.startswith("Runs:")) < 170
    assert "Runs: variant_0_" in text  # full names listed once


def test_html_report_is_self_contained_and_escapes_user_text():
    a, b = base_runs()
    a.records[0]["inputs"] = {"q": "<script>alert(1)</script>"}
    b.records[0]["inputs"] = {"q": "<script>alert(1)</script>"}
    b.name = "<b>variant</b>"
    result = compare_scores([collect(a, [eval_run("ev_a", A_CORRECT, F1_A)]),
                             collect(b, [eval_run("ev_b", B_CORRECT, F1_B)])])
    page = render_html(result)
    assert "<script>alert" not in page and "&lt;script&gt;alert(1)" in page
    assert "<b>variant</b>" not in page
    assert not re.search(r"""(src|href)\s*=\s*['"]?(https?:)?//""", page)
    assert page.count("<svg") == 4  # a distribution and a difference plot per metric
    assert "<script" not in page
    assert result._repr_html_() in page


VARIANT_FLOW = """
inputs:
  x: {type: int}
outputs:
  answer: {type: string, reference: "${guess.output}"}
nodes:
- name: guess
  use_variants: true
node_variants:
  guess:
    default_variant_id: variant_0
    variants:
      variant_0:
        node: {type: python, source: {type: code, path: guess.py}, inputs: {x: "${inputs.x}", wrong_every: 2}}
      variant_1:
        node: {type: python, source: {type: code, path: guess.py}, inputs: {x: "${inputs.x}", wrong_every: 7}}
"""
GUESS = ("from promptflow.core import tool\n\n@tool\ndef guess(x: int, wrong_every: int) -> str:\n"
         "    return str(x * 2 + (1 if x % wrong_every == 0 else 0))\n")


def test_compare_an_all_variants_group_end_to_end(make_flow, tmp_path, monkeypatch, capsys):
    import json

    import pfkit
    from pfkit.cli import main

    monkeypatch.setenv("PFKIT_HOME", str(tmp_path / "home"))
    folder = make_flow({"flow.dag.yaml": VARIANT_FLOW, "guess.py": GUESS}, name="guesser")
    data = tmp_path / "data.jsonl"
    data.write_text("".join(json.dumps({"x": i, "truth": str(2 * i)}) + "\n" for i in range(28)))
    assert main(["run", "create", "--flow", str(folder), "--data", str(data), "--all-variants",
                 "-n", "grp"]) == 0
    evaluator = Path(__file__).resolve().parent.parent / "evaluators" / "exact_match"
    members = sorted(r.name for r in pfkit.Session.default().store.list(group="grp"))
    assert len(members) == 2
    for name in members:
        pfkit.run(evaluator, data, run=name, column_mapping={
            "answer": "${run.outputs.answer}", "ground_truth": "${data.truth}"})
    capsys.readouterr()
    report = tmp_path / "report.html"
    assert main(["compare", "grp", "--json", "--html", str(report)]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["metrics"] == ["exact_match"]  # the answers themselves are not scores
    assert result["lines"]["compared"] == 28
    base, other = result["runs"]
    summary = result["summaries"]["exact_match"]
    assert summary[base]["value"] == pytest.approx(14 / 28)  # every 2nd answer is wrong
    assert summary[other]["value"] == pytest.approx(24 / 28)  # every 7th
    comparison = result["comparisons"]["exact_match"][other]
    assert comparison["test"] == "McNemar (exact)" and comparison["significant"]
    # wins: even x that are not multiples of 7 (12); losses: odd multiples of 7 (7, 21)
    assert (comparison["wins"], comparison["losses"]) == (12, 2)
    assert "<svg" in report.read_text(encoding="utf-8")
    assert main(["compare", "grp", "--metric", "nope"]) == 1
    assert "not a score of every run" in capsys.readouterr().err
    python_result = pfkit.compare(["grp"])
    assert python_result.summary_table().shape[0] == 2
