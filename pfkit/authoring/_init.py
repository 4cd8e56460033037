"""``pfkit flow init``: a starter flow that runs as written, with a sample dataset.

Every type has a python node, a prompt node and an llm node (on the embedded model, connection
``local``, unless another connection is named); ``evaluation`` adds an aggregation node that
logs the metrics. The files are written for pfkit and promptflow alike.
"""

from __future__ import annotations

import json
from pathlib import Path

from .._names import unsafe_name_reason
from ..errors import Location, UserError
from ._builder import SCHEMA

FLOW_TYPES = ("standard", "chat", "evaluation")

_TIDY = '''from promptflow.core import tool


@tool
def tidy(text: str) -> str:
    """The question with its whitespace collapsed (a place for your own pre-processing)."""
    return " ".join(str(text).split())
'''

_PROMPT = """Answer the question below in one short sentence.

Question: {{question}}
"""

_LLM = """system:
You are a helpful assistant. Keep answers short and plain.

user:
{{request}}
"""

_CHAT_PROMPT = """{{question}}
"""

_CHAT_LLM = """system:
You are a helpful assistant. Keep answers short and plain.

{% for item in chat_history %}
user:
{{item.inputs.question}}

assistant:
{{item.outputs.answer}}

{% endfor %}
user:
{{message}}
"""

_SCORE = '''from promptflow.core import tool


def _words(text: str) -> list[str]:
    return "".join(c.lower() if c.isalnum() else " " for c in str(text)).split()


@tool
def score(answer: str, ground_truth: str) -> dict:
    """Exact match (after normalising case and punctuation) and word-overlap F1."""
    got, want = _words(answer), _words(ground_truth)
    common = sum(min(got.count(w), want.count(w)) for w in set(got))
    if not got or not want or not common:
        f1 = 0.0
    else:
        precision, recall = common / len(got), common / len(want)
        f1 = 2 * precision * recall / (precision + recall)
    return {"exact_match": float(got == want), "f1": round(f1, 4)}
'''

_JUDGE_PROMPT = """Does the answer say the same thing as the reference? Reply yes or no.

Answer: {{answer}}
Reference: {{ground_truth}}
"""

_JUDGE_LLM = """user:
{{request}}
"""

_VERDICT = '''from promptflow.core import tool


@tool
def verdict(reply: str) -> float:
    """1.0 when the judge's reply starts with yes, else 0.0."""
    words = str(reply).strip().lower().split()
    return 1.0 if words and words[0].strip(".,!") == "yes" else 0.0
'''

_AGGREGATE = '''from promptflow.core import log_metric, tool


@tool
def aggregate(scores: list, verdicts: list) -> dict:
    """The mean of each score over the lines (runs once, over every line)."""
    scores = [s for s in scores if s is not None]
    verdicts = [v for v in verdicts if v is not None]
    metrics = {
        "exact_match": sum(s["exact_match"] for s in scores) / len(scores) if scores else 0.0,
        "f1": sum(s["f1"] for s in scores) / len(scores) if scores else 0.0,
        "judge_agrees": sum(verdicts) / len(verdicts) if verdicts else 0.0,
    }
    for name, value in metrics.items():
        log_metric(name, round(value, 4))
    return metrics
'''

_QUESTIONS = ["What is the capital of France?", "How many legs does a spider have?",
              "What colour is the sky on a clear day?"]
_EVAL_ROWS = [{"answer": "Paris", "ground_truth": "Paris"},
              {"answer": "Six legs.", "ground_truth": "Eight legs"},
              {"answer": "The sky is blue.", "ground_truth": "blue"}]


def _llm_node(name: str, template: str, connection: str, model_input: dict,
              inputs: dict) -> str:
    lines = [f"- name: {name}", "  type: llm", "  source:", "    type: code",
             f"    path: {template}", f"  connection: {connection}", "  api: chat",
             "  inputs:"]
    for key, value in {**model_input, **inputs}.items():
        lines.append(f"    {key}: {value}")
    return "\n".join(lines)


def _model_input(connection: str) -> dict:
    """The model parameter the connection's type needs (the embedded model needs none)."""
    if connection == "local":
        return {"temperature": 0, "max_tokens": 48}
    kind = None
    try:
        from ..connections._store import ConnectionStore

        kind = getattr(ConnectionStore().get(connection), "TYPE", None)
    except Exception:  # noqa: BLE001 - not created yet: an OpenAI-style connection is assumed
        kind = None
    key = "deployment_name" if kind == "azure_open_ai" else "model"
    return {key: "gpt-4o-mini", "temperature": 0, "max_tokens": 48}


def _files(kind: str, connection: str) -> dict[str, str]:
    model = _model_input(connection)
    head = f"$schema: {SCHEMA}\n"
    if kind == "standard":
        flow = head + f"""description: "A starter flow (pfkit flow init): tidy the question, build a prompt, ask the model."
inputs:
  question:
    type: string
outputs:
  answer:
    type: string
    reference: ${{answer.output}}
nodes:
- name: tidy
  type: python
  source:
    type: code
    path: tidy.py
  inputs:
    text: ${{inputs.question}}
- name: make_prompt
  type: prompt
  source:
    type: code
    path: make_prompt.jinja2
  inputs:
    question: ${{tidy.output}}
{_llm_node("answer", "answer.jinja2", connection, model, {"request": "${make_prompt.output}"})}
"""
        data = [{"question": q} for q in _QUESTIONS]
        return {"flow.dag.yaml": flow, "tidy.py": _TIDY, "make_prompt.jinja2": _PROMPT,
                "answer.jinja2": _LLM, "data.jsonl": _jsonl(data)}
    if kind == "chat":
        flow = head + f"""description: "A starter chat flow (pfkit flow init): chat_history holds the earlier turns."
inputs:
  question:
    type: string
    is_chat_input: true
  chat_history:
    type: list
    default: []
    is_chat_history: true
outputs:
  answer:
    type: string
    reference: ${{answer.output}}
    is_chat_output: true
nodes:
- name: tidy
  type: python
  source:
    type: code
    path: tidy.py
  inputs:
    text: ${{inputs.question}}
- name: message
  type: prompt
  source:
    type: code
    path: message.jinja2
  inputs:
    question: ${{tidy.output}}
{_llm_node("answer", "answer.jinja2", connection, model,
           {"message": "${message.output}", "chat_history": "${inputs.chat_history}"})}
"""
        data = [{"question": _QUESTIONS[0], "chat_history": []},
                {"question": "And of Italy?", "chat_history": [
                    {"inputs": {"question": _QUESTIONS[0]},
                     "outputs": {"answer": "The capital of France is Paris."}}]}]
        return {"flow.dag.yaml": flow, "tidy.py": _TIDY, "message.jinja2": _CHAT_PROMPT,
                "answer.jinja2": _CHAT_LLM, "data.jsonl": _jsonl(data)}
    judge_model = {**model, "max_tokens": 3}
    flow = head + f"""description: "A starter evaluation flow (pfkit flow init): score each answer against the ground truth, ask the model to judge it, log the means as metrics."
type: evaluation
inputs:
  answer:
    type: string
  ground_truth:
    type: string
outputs:
  exact_match:
    type: double
    reference: ${{score.output.exact_match}}
  f1:
    type: double
    reference: ${{score.output.f1}}
  judge_agrees:
    type: double
    reference: ${{verdict.output}}
nodes:
- name: score
  type: python
  source:
    type: code
    path: score.py
  inputs:
    answer: ${{inputs.answer}}
    ground_truth: ${{inputs.ground_truth}}
- name: judge_prompt
  type: prompt
  source:
    type: code
    path: judge_prompt.jinja2
  inputs:
    answer: ${{inputs.answer}}
    ground_truth: ${{inputs.ground_truth}}
{_llm_node("judge", "judge.jinja2", connection, judge_model, {"request": "${judge_prompt.output}"})}
- name: verdict
  type: python
  source:
    type: code
    path: verdict.py
  inputs:
    reply: ${{judge.output}}
- name: aggregate
  type: python
  source:
    type: code
    path: aggregate.py
  inputs:
    scores: ${{score.output}}
    verdicts: ${{verdict.output}}
  aggregation: true
"""
    return {"flow.dag.yaml": flow, "score.py": _SCORE, "judge_prompt.jinja2": _JUDGE_PROMPT,
            "judge.jinja2": _JUDGE_LLM, "verdict.py": _VERDICT, "aggregate.py": _AGGREGATE,
            "data.jsonl": _jsonl(_EVAL_ROWS)}


def _jsonl(rows: list[dict]) -> str:
    return "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows)


def init_flow(folder: str | Path, *, type: str = "standard",  # noqa: A002
              connection: str = "local") -> list[Path]:
    """Write a starter flow of ``type`` into ``folder`` (new or empty); returns the files."""
    if type not in FLOW_TYPES:
        raise UserError(f"unknown flow type {type!r}", code="UsageError",
                        hint=f"Use one of: {', '.join(FLOW_TYPES)}.")
    reason = unsafe_name_reason(connection)
    if reason is not None:
        raise UserError(f"connection name {connection!r} cannot be used: {reason}",
                        code="InvalidName", hint="Give the name of a connection, e.g. local.")
    target = Path(folder).expanduser()
    if target.exists() and not target.is_dir():
        raise UserError(f"{target} is a file, not a folder", code="InvalidPath",
                        location=Location(file=str(target)), hint="Give a folder for the flow.")
    if target.is_dir() and any(target.iterdir()):
        raise UserError("the folder is not empty: pfkit flow init writes only into a new or "
                        "empty folder", code="FolderNotEmpty", location=Location(file=str(target)),
                        hint="Give a new folder name (nothing in this one was changed).")
    files = _files(type, connection)
    target.mkdir(parents=True, exist_ok=True)
    written = []
    for name, text in files.items():
        path = target / name
        path.write_text(text, encoding="utf-8")
        written.append(path)
    return written


def next_steps(folder: Path, kind: str) -> str:
    flow = str(folder)
    if kind == "evaluation":
        example = f"pfkit flow test --flow {flow} --inputs answer=Paris ground_truth=Paris"
    elif kind == "chat":
        example = f"pfkit flow test --flow {flow} --inputs question=\"What is the capital of France?\""
    else:
        example = f"pfkit flow test --flow {flow} --inputs question=\"What is the capital of France?\""
    return (f"{example}\npfkit run create --flow {flow} --data {Path(flow) / 'data.jsonl'}")


def init_command(args: object) -> int:
    """``pfkit flow init --flow DIR [--type T] [--connection NAME]``."""
    import sys

    folder = Path(args.flow)  # type: ignore[attr-defined]
    kind = args.type  # type: ignore[attr-defined]
    files = init_flow(folder, type=kind, connection=args.connection)  # type: ignore[attr-defined]
    print(f"wrote {'an' if kind[0] in 'aeiou' else 'a'} {kind} flow to {folder}: {', '.join(p.name for p in files)}",
          file=sys.stderr)
    print("try:\n" + next_steps(folder, kind), file=sys.stderr)
    return 0
