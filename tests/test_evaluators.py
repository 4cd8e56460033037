"""The built-in evaluator flows in evaluators/, run as promptflow evaluation runs over a base
run, with metrics checked against values computed by hand."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import pfkit
from pfkit.evaluate import bleu, f1_score, rouge

EVALUATORS = Path(__file__).resolve().parent.parent / "evaluators"

ANSWER_FLOW = """
inputs:
  question: {type: string}
outputs:
  answer: {type: string, reference: "${answer.output}"}
nodes:
- name: answer
  type: python
  source: {type: code, path: answer.py}
  inputs: {question: "${inputs.question}"}
"""
ANSWER = '''
from promptflow.core import tool

ANSWERS = {"capital of France?": "Paris", "2+2?": "The answer is 4.", "colour of sky?": "blue",
           "json please": '{"n": 1}', "largest planet?": "Saturn"}


@tool
def answer(question: str) -> str:
    if question == "explode":
        raise ValueError("no answer")
    return ANSWERS[question]
'''
ROWS = [
    {"question": "capital of France?", "truth": "Paris", "number": "-", "keywords": ["paris"]},
    {"question": "2+2?", "truth": "4", "number": "4", "keywords": ["answer", "five"]},
    {"question": "colour of sky?", "truth": "the Blue", "number": "-", "keywords": []},
    {"question": "json please", "truth": '{"n": 1}', "number": "1", "keywords": ["n"]},
    {"question": "largest planet?", "truth": "Jupiter", "number": "-", "keywords": ["jupiter"]},
    {"question": "explode", "truth": "x", "number": "0", "keywords": ["x"]},
]


@pytest.fixture(autouse=True)
def pfkit_home(tmp_path, monkeypatch):
    monkeypatch.setenv("PFKIT_HOME", str(tmp_path / "home"))


@pytest.fixture
def base_run(make_flow, tmp_path):
    folder = make_flow({"flow.dag.yaml": ANSWER_FLOW, "answer.py": ANSWER}, name="qa")
    data = tmp_path / "qa.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in ROWS), encoding="utf-8")
    run = pfkit.run(folder, data, column_mapping={"question": "${data.question}"})
    assert run.status == "Completed"
    return run, data


def evaluate(name, base, data, mapping):
    run = pfkit.run(EVALUATORS / name, data, run=base, column_mapping=mapping)
    assert run.status == "Completed", run.info.get("error")
    return run


def answers_and_truths():
    pairs = [(r["question"], r["truth"]) for r in ROWS[:5]]
    from importlib import util  # the answers the base flow gives, without running it again

    spec = util.spec_from_loader("answers", loader=None)
    module = util.module_from_spec(spec)
    exec(ANSWER.replace("from promptflow.core import tool", "tool = lambda f: f"),
         module.__dict__)
    return [(module.answer(q), t) for q, t in pairs]


def test_text_match_evaluators_over_a_base_run(base_run):
    base, data = base_run
    mapping = {"answer": "${run.outputs.answer}", "ground_truth": "${data.truth}"}
    pairs = answers_and_truths()

    exact = evaluate("exact_match", base, data, mapping)
    assert exact.metrics() == {"exact_match": pytest.approx(3 / 5)}  # Paris, the Blue, json
    lines = exact.lines()
    assert len(lines) == 5  # the failed base line is not evaluated, as in promptflow

    f1 = evaluate("f1_score", base, data, mapping)
    assert f1.metrics()["f1_score"] == pytest.approx(sum(f1_score(a, t) for a, t in pairs) / 5)

    b = evaluate("bleu", base, data, mapping)
    assert b.metrics()["bleu"] == pytest.approx(sum(bleu(a, t) for a, t in pairs) / 5)

    r = evaluate("rouge", base, data, mapping)
    expected = sum(rouge(a, t)["rougeL_f1"] for a, t in pairs) / 5
    assert r.metrics()["rougeL_f1"] == pytest.approx(expected)
    assert set(r.metrics()) == {f"rouge{k}_{m}" for k in ("1", "2", "L")
                                for m in ("precision", "recall", "f1")}


def test_numeric_keyword_json_and_classification_evaluators(base_run):
    base, data = base_run
    numeric = evaluate("numeric_match", base, data,
                       {"answer": "${run.outputs.answer}", "ground_truth": "${data.number}"})
    # lines 1 ("4" vs "The answer is 4.") and 3 ('{"n": 1}' vs "1") have numbers on both sides
    assert numeric.metrics() == {"numeric_match": 1.0}
    scores = [line["outputs"]["numeric_match"] for line in numeric.lines()]
    assert scores == [None, 1.0, None, 1.0, None]

    keywords = evaluate("contains", base, data,
                        {"answer": "${run.outputs.answer}", "keywords": "${data.keywords}"})
    # paris 1/1, answer+five 1/2, no keywords (missing), n 1/1, jupiter 0/1
    assert keywords.metrics()["keyword_coverage"] == pytest.approx((1 + 0.5 + 1 + 0) / 4)

    valid = evaluate("json_valid", base, data, {"answer": "${run.outputs.answer}"})
    assert valid.metrics() == {"json_valid": pytest.approx(1 / 5)}

    labels = evaluate("classification", base, data,
                      {"prediction": "${run.outputs.answer}", "ground_truth": "${data.truth}"})
    metrics = labels.metrics()
    assert metrics["accuracy"] == pytest.approx(2 / 5)  # "Paris" and the JSON text agree
    assert metrics["precision.paris"] == 1.0 and metrics["recall.jupiter"] == 0.0


def test_entity_and_schema_evaluators_alone():
    flow = pfkit.load_flow(EVALUATORS / "entity_match")
    result = flow.test(entities=["Paris", "Rome"], ground_truth="paris, rome, oslo")
    assert result.outputs == {"exact_match": 0.0, "partial_match": 1.0}
    assert result.metrics == {"exact_match": 0.0, "partial_match": 1.0}
    schema = {"type": "object", "required": ["n"], "properties": {"n": {"type": "integer"}}}
    checker = pfkit.load_flow(EVALUATORS / "json_schema")
    assert checker(answer='{"n": 2}', schema=schema) == {"json_schema": 1.0, "errors": []}
    bad = checker(answer='{"n": "2"}', schema=schema)
    assert bad["json_schema"] == 0.0 and bad["errors"] == ["$.n: expected integer, got string"]


def test_a_metric_with_no_scores_is_not_computed(make_flow, tmp_path):
    data = tmp_path / "d.jsonl"
    data.write_text(json.dumps({"answer": "none here", "truth": "also none"}) + "\n")
    run = pfkit.run(EVALUATORS / "numeric_match", data,
                    column_mapping={"answer": "${data.answer}", "ground_truth": "${data.truth}"})
    assert run.status == "Completed"
    assert run.metrics() == {}  # never 0 or NaN over nothing


@pytest.mark.parametrize("folder", sorted(p for p in EVALUATORS.iterdir() if p.is_dir()),
                         ids=lambda p: p.name)
def test_every_evaluator_validates(folder):
    from pfkit.cli import main

    assert main(["flow", "validate", "--flow", str(folder)]) == 0
