"""LLM judge evaluators against the test server (well-formed, malformed and refused answers,
logprobs) and once end to end on the embedded local model."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

import pfkit
from pfkit.connections._store import ConnectionStore
from pfkit.errors import UserError
from pfkit.evaluate import judge_score
from pfkit.testing import Fault

EVALUATORS = Path(__file__).resolve().parent.parent / "evaluators"
JUDGES = ["groundedness", "relevance", "coherence", "fluency", "similarity", "rubric"]
ROWS = [
    {"question": "Capital of France?", "answer": "Paris.", "context": "Paris is France's capital.",
     "ground_truth": "Paris", "criteria": "Names the city."},
    {"question": "Boiling point?", "answer": "100 C at sea level.", "context": "Water boils at 100 C.",
     "ground_truth": "100 degrees Celsius", "criteria": "Gives a unit."},
    {"question": "Tallest peak?", "answer": "Everest.", "context": "Everest is 8,849 m high.",
     "ground_truth": "Mount Everest", "criteria": "One word."},
]


@pytest.fixture(autouse=True)
def home(tmp_path, monkeypatch):
    monkeypatch.setenv("PFKIT_HOME", str(tmp_path / "home"))


@pytest.fixture
def data(tmp_path):
    path = tmp_path / "data.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in ROWS), encoding="utf-8")
    return path


def connect(name, server):
    ConnectionStore().create({"name": name, "type": "open_ai", "api_key": f"sk-test-{name}",
                              "base_url": server.base_url})


def judge_run(name, data, server, responder):
    server.reset()
    server.responder = responder
    connect("judge_server", server)
    inputs = {"question", "answer", "context", "ground_truth", "criteria"}
    flow_inputs = set(pfkit.load_flow(EVALUATORS / name).spec.inputs)
    mapping = {k: f"${{data.{k}}}" for k in inputs & flow_inputs}
    return pfkit.run(EVALUATORS / name, data, column_mapping=mapping,
                     connections={"judge.connection": "judge_server"})


def expected_weighted(logprobs):
    first = logprobs[0]
    weights = {int(t["token"]): math.exp(t["logprob"]) for t in first["top_logprobs"]
               if t["token"].strip() in {"1", "2", "3", "4", "5"}}
    return sum(k * w for k, w in weights.items()) / sum(weights.values())


@pytest.mark.parametrize("name", JUDGES)
def test_each_judge_scores_with_logprobs(name, data, server):
    run = judge_run(name, data, server, lambda kind, body: "4\nIt is well done.")
    assert run.status == "Completed"
    request = server.last_request.body
    assert request["logprobs"] is True and request["top_logprobs"] == 5
    assert request["temperature"] == 0
    assert "It is well done" not in request["messages"][0]["content"]
    lines = run.lines()
    assert len(lines) == 3
    node = json.loads((run.path / "node_outputs" / "judge.jsonl").read_text().splitlines()[0])
    expected = expected_weighted(node["output"]["logprobs"])
    assert 3.0 < expected < 5.0
    for line in lines:
        assert line["outputs"][name] == pytest.approx(expected)
        assert line["outputs"]["reason"] == "It is well done."
    assert run.metrics() == {name: pytest.approx(expected)}


def test_malformed_answers_are_missing_scores_not_zero(data, server):
    # by line (the three lines' requests run concurrently, in no set order)
    answers = {"Paris.": "5\nfully grounded", "100 C at sea level.": "I cannot rate this, sorry.",
               "Everest.": "2\nmostly unsupported"}

    def responder(kind, body):
        text = json.dumps(body["messages"])
        return next(reply for answer, reply in answers.items() if json.dumps(answer)[1:-1] in text)

    run = judge_run("groundedness", data, server, responder)
    outputs = [line["outputs"] for line in run.lines()]
    assert outputs[1]["groundedness"] is None
    assert outputs[1]["raw"] == "I cannot rate this, sorry."
    scored = [o["groundedness"] for o in (outputs[0], outputs[2])]
    assert scored[0] > 4.0 and scored[1] < 3.0
    assert run.metrics()["groundedness"] == pytest.approx(sum(scored) / 2)


def test_refused_judge_calls_fail_their_lines(data, server):
    def refuse(kind, body):
        if "Everest" in json.dumps(body):
            return Fault(status=400, message="The response was filtered", code="content_filter")
        return "3\nso-so"

    run = judge_run("relevance", data, server, refuse)
    lines = run.lines()
    statuses = [line["status"] for line in lines]
    assert statuses == ["Completed", "Completed", "Failed"]
    assert "filtered" in lines[2]["error"]["message"]
    assert run.metrics()["relevance"] == pytest.approx(3.0, abs=1.0)


def test_no_metric_when_the_judge_never_scores(data, server):
    run = judge_run("fluency", data, server, lambda kind, body: "no idea")
    assert [line["outputs"]["fluency"] for line in run.lines()] == [None, None, None]
    assert run.metrics() == {}


def test_judge_score_text_and_logprob_rules():
    assert judge_score("Score: 4\nok") == {"score": 4.0, "reason": "ok", "raw": "Score: 4\nok",
                                           "method": "text"}
    assert judge_score("The year 2024 was fine")["score"] is None
    assert judge_score("9")["score"] is None
    items = [{"token": "3", "logprob": math.log(0.5),
              "top_logprobs": [{"token": "3", "logprob": math.log(0.5)},
                               {"token": "4", "logprob": math.log(0.25)},
                               {"token": " 5", "logprob": math.log(0.25)},
                               {"token": "x", "logprob": math.log(0.1)}]}]
    result = judge_score({"content": "3\nfine", "logprobs": items})
    assert result["method"] == "logprobs"
    assert result["score"] == pytest.approx((3 * 0.5 + 4 * 0.25 + 5 * 0.25) / 1.0)
    # logprobs whose first token is not a score: fall back to the text
    assert judge_score({"content": "Score: 2", "logprobs": [{"token": "Score"}]})["method"] == "text"


@pytest.mark.slow
def test_a_judge_end_to_end_on_the_embedded_model(data):
    pytest.importorskip("llama_cpp")
    run = pfkit.run(EVALUATORS / "groundedness", data, column_mapping={
        "question": "${data.question}", "answer": "${data.answer}", "context": "${data.context}"})
    assert run.status == "Completed"
    lines = run.lines()
    assert [line["status"] for line in lines] == ["Completed"] * 3
    for line in lines:
        score = line["outputs"]["groundedness"]
        assert score is None or 1.0 <= score <= 5.0
        assert isinstance(line["outputs"]["raw"], str) and line["outputs"]["raw"]


def test_embedding_similarity_through_an_embeddings_endpoint(data, server):
    from pfkit.evaluate import cosine_similarity

    server.reset()
    connect("emb_server", server)
    run = pfkit.run(EVALUATORS / "embedding_similarity", data,
                    column_mapping={"answer": "${data.answer}", "ground_truth": "${data.ground_truth}",
                                    "model": "text-embedding-3-small"},
                    connections={"embed_answer.connection": "emb_server",
                                 "embed_truth.connection": "emb_server"})
    assert run.status == "Completed", run.info.get("error")
    bodies = [r.body for r in server.requests if r.path.endswith("/embeddings")]
    assert len(bodies) == 6 and {b["model"] for b in bodies} == {"text-embedding-3-small"}
    answers = json.loads((run.path / "node_outputs" / "embed_answer.jsonl").read_text()
                         .splitlines()[0])["output"]
    truths = json.loads((run.path / "node_outputs" / "embed_truth.jsonl").read_text()
                        .splitlines()[0])["output"]
    first = run.lines()[0]["outputs"]["embedding_similarity"]
    assert first == pytest.approx(cosine_similarity(answers, truths))
    assert -1.0 <= first <= 1.0
    assert cosine_similarity([0, 0], [1, 1]) is None and cosine_similarity([1], [1, 2]) is None
    assert cosine_similarity([1, 0], [0, 1]) == 0.0


BUDGET_BASE = """
inputs:
  question: {type: string}
outputs:
  answer: {type: string, reference: "${chat.output}"}
nodes:
- name: chat
  type: llm
  source: {type: code, path: chat.jinja2}
  connection: judge_server
  api: chat
  inputs: {model: gpt-4o-mini, question: "${inputs.question}"}
"""


def test_budgets_read_latency_and_tokens_from_the_base_run(data, server, make_flow):
    server.reset()
    server.responder = lambda kind, body: "a reasonably short answer" * (
        3 if "Everest" in json.dumps(body) else 1)
    connect("judge_server", server)
    folder = make_flow({"flow.dag.yaml": BUDGET_BASE,
                        "chat.jinja2": "user:\n{{question}}\n"}, name="budget_base")
    base = pfkit.run(folder, data)
    assert base.status == "Completed"
    records = {line["line_number"]: line for line in base.lines()}
    tokens = [records[n]["usage"]["total_tokens"] for n in sorted(records)]
    limit = sorted(tokens)[1]  # two of three lines within the token budget
    result = pfkit.evaluate(run=base, evaluators={"budgets": "budgets"}, evaluator_config={
        "default": {"column_mapping": {"max_tokens": limit, "max_latency": 60}}})
    metrics = result["metrics"]
    assert metrics["budgets.within_tokens"] == pytest.approx(2 / 3)
    assert metrics["budgets.within_latency"] == 1.0
    assert metrics["budgets.total_tokens"] == pytest.approx(sum(tokens) / 3)
    durations = [records[n]["duration"] for n in sorted(records)]
    assert metrics["budgets.latency"] == pytest.approx(sum(durations) / 3)
    assert metrics["budgets.latency_p95"] <= max(durations)
    evaluation = pfkit.get_run(result.runs["budgets"])
    assert evaluation.record.column_mapping["latency"] == "${run.line.duration}"
    with pytest.raises(UserError, match="base run"):
        pfkit.run(EVALUATORS / "budgets", data, column_mapping={
            "latency": "${run.line.duration}", "total_tokens": "${run.line.total_tokens}"})
