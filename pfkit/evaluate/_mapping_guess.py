"""Which column feeds each evaluator input, when the user did not say.

An input takes a column of the same name, else one of its usual synonyms (``response`` for
``answer``, ``label`` for ``ground_truth`` ...). What is being judged (answers) comes from the
base run's outputs first; what it is judged against (truths, questions, contexts) from the data
first. One candidate: taken. None: the input keeps its default, or it is an error naming the
columns there are. Several: an error listing them, asking for ``--column-mapping``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from ..errors import UserError

ANSWER_LIKE = ("answer", "response", "prediction", "output", "completion", "generated",
               "result", "entities", "summary")
SYNONYMS: dict[str, tuple[str, ...]] = {
    "answer": ("answer", "response", "prediction", "output", "completion", "generated", "result"),
    "ground_truth": ("ground_truth", "groundtruth", "truth", "label", "expected", "reference",
                     "gold", "target", "answer"),
    "question": ("question", "query", "input", "prompt"),
    "context": ("context", "contexts", "documents", "passage", "passages"),
}
for _group in (("response", "answer"), ("prediction", "answer"), ("query", "question")):
    SYNONYMS[_group[0]] = SYNONYMS[_group[1]]
SYNONYMS["groundtruth"] = SYNONYMS["ground_truth"]
SYNONYMS["label"] = SYNONYMS["ground_truth"]


# inputs a base run's line records answer (pfkit's ${run.line.FIELD} mapping source)
LINE_INPUTS = {"latency": "duration", "duration": "duration", "total_tokens": "total_tokens",
               "prompt_tokens": "prompt_tokens", "completion_tokens": "completion_tokens"}


def _candidates(name: str, outputs: Sequence[str], columns: Sequence[str]) -> list[str]:
    judged = name in ANSWER_LIKE  # read from the run being evaluated first
    if name in LINE_INPUTS and outputs and name not in outputs and name not in columns:
        return [f"${{run.line.{LINE_INPUTS[name]}}}"]
    names = SYNONYMS.get(name, (name,))
    exact_out = [f"${{run.outputs.{name}}}"] if name in outputs else []
    exact_data = [f"${{data.{name}}}"] if name in columns else []
    if judged and exact_out:
        return exact_out
    if not judged and exact_data:
        return exact_data
    if exact_out or exact_data:
        return exact_out + exact_data
    found: list[str] = []
    for synonym in names:
        if judged and synonym in outputs:
            found.append(f"${{run.outputs.{synonym}}}")
        elif synonym in columns and not (judged and outputs):
            found.append(f"${{data.{synonym}}}")
        elif synonym in outputs and not judged and not columns:
            found.append(f"${{run.outputs.{synonym}}}")
    return found


def guess_mapping(evaluator: str, inputs: Mapping[str, bool], given: Mapping[str, Any],
                  outputs: Iterable[str], columns: Iterable[str]) -> dict[str, Any]:
    """``inputs``: name -> has a default. Returns the full mapping (``given`` wins)."""
    outputs, columns = sorted(set(outputs)), sorted(set(columns))
    mapping = dict(given)
    for name, has_default in inputs.items():
        if name in mapping:
            continue
        found = _candidates(name, outputs, columns)
        if len(found) == 1:
            mapping[name] = found[0]
        elif len(found) > 1:
            raise UserError(
                f"evaluator '{evaluator}': input '{name}' could come from "
                + " or ".join(found), code="AmbiguousColumnMapping",
                hint=f"Choose one with --column-mapping {name}='{found[0]}'.")
        elif not has_default:
            where = []
            if outputs:
                where.append("base run outputs: " + ", ".join(outputs))
            if columns:
                where.append("data columns: " + ", ".join(columns))
            raise UserError(
                f"evaluator '{evaluator}' needs input '{name}', and no column is named like it",
                code="UnmappedEvaluatorInput",
                hint=f"Map it with --column-mapping {name}='${{data.COLUMN}}' (or "
                     f"'${{run.outputs.COLUMN}}'). " + "; ".join(where) + ".")
    return mapping
