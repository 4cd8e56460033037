"""Flex-flow and prompty fixture cases (tests/flows/flex_* and prompty_*): pfkit gives the line
statuses, outputs, errors and metrics promptflow 1.18.5 gave (expected.json, produced by
tests/flows/regenerate_flex_expected.py). Prompty cases talk to pfkit's TestServer over HTTP."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from pfkit._aio import run_sync
from pfkit.engine import load_executable
from pfkit.errors import FlowValidationError, PfkitError

FLOWS = Path(__file__).parent / "flows"
CASES = sorted(p.parent.name for p in FLOWS.glob("*/fixture.json")
               if p.parent.name.startswith(("flex_", "prompty_")))

# Where pfkit deliberately does better than promptflow 1.18.5's executor (reason given).
KNOWN_DIFFERENCES = {
    # promptflow's executor cannot serialise the ChatCompletion object a `response: all` prompty
    # returns, so the line fails; pfkit returns the response as a JSON dict (choices, usage).
    "prompty_response_all": "whole response as a dict",
    # promptflow's executor does not read `sample: ${file:...}` of a flex flow (AttributeError);
    # pfkit reads the file, as the front matter of a prompty does.
    "flex_sample_file": "sample file read",
    # pfkit's provider asks a stream for its token usage (stream_options.include_usage), so the
    # echo server's reply names it; the rest is the same
    "prompty_stream": "stream_options in the request",
    # without inputs declared in the YAML, promptflow's executor passes data values unconverted
    # ("3" to an int parameter); pfkit converts them by the entry's annotations, as it does for
    # declared inputs and for `flow test --inputs n=3` (whose values are text)
    "flex_annotation_types": "values converted by annotations",
}


def _without_stream_options(text: str) -> str:
    data = json.loads(text)
    data["params"].pop("stream_options", None)
    return json.dumps(data, ensure_ascii=False, sort_keys=True)


@pytest.fixture
def echo_env(server, monkeypatch):
    monkeypatch.setenv("ECHO_BASE_URL", server.base_url)
    monkeypatch.setenv("ECHO_AZURE_ENDPOINT", server.url)
    monkeypatch.setenv("ECHO_API_KEY", "sk-echo-test-key")
    return server


def _meta(case: str) -> dict:
    return json.loads((FLOWS / case / "fixture.json").read_text(encoding="utf-8"))


def _expected(case: str) -> dict:
    return json.loads((FLOWS / case / "expected.json").read_text(encoding="utf-8"))


def _message(text: str | None) -> str | None:
    # pfkit names the line of a missing input ("in line 0 of input data"); promptflow, in the
    # executor alone, does not
    return re.sub(r" in line \d+ of input data", " in input data", text) if text else text


async def _run_lines(flow, lines):
    return [await flow.arun(dict(line), line_number=i) for i, line in enumerate(lines)]


@pytest.mark.parametrize("case", CASES)
def test_fixture_case(case, echo_env):
    meta, expected = _meta(case), _expected(case)
    flow_path = FLOWS / case / meta["flow"]
    if meta.get("invalid"):
        with pytest.raises(PfkitError) as info:
            load_executable(flow_path, init=meta.get("init"))
        err = info.value
        assert isinstance(err, (FlowValidationError, PfkitError))
        assert err.location is not None and err.location.file, err
        assert Path(err.location.file).name == Path(meta["flow"]).name
        assert err.location.line, f"{case}: no line in {err.to_dict()}"
        assert expected["error"] is not None  # promptflow refuses it too
        return
    if "error" in expected and case not in KNOWN_DIFFERENCES:
        pytest.fail(f"promptflow refused {case}: {expected['error']}")
    flow = load_executable(flow_path, init=meta.get("init"))
    results = run_sync(_run_lines(flow, meta.get("lines") or []))
    if case == "prompty_response_all":
        assert results[0].status == "Completed", results[0].error
        reply = results[0].outputs  # a dict: its keys are the output columns
        content = json.loads(reply["choices"][0]["message"]["content"])
        assert content["messages"][-1] == {"role": "user", "content": "everything"}
        assert reply["usage"]["total_tokens"] > 0
        return
    if case == "prompty_stream":
        got = _without_stream_options(results[0].outputs["output"])
        assert got == expected["lines"][0]["output"]["output"]
        from pfkit.prompty import Prompty

        chunks = list(Prompty.load(flow_path)(**meta["lines"][0]))
        assert len(chunks) > 1  # a stream, in chunks
        assert _without_stream_options("".join(chunks)) == "".join(
            expected["calls"][0]["output"]["chunks"])
        return
    if case == "flex_annotation_types":
        assert [r.outputs for r in results] == [
            {"n": 3, "types": ["int", "float", "bool"]},
            {"n": 4, "types": ["int", "float", "bool"]}]
        return
    if case == "flex_sample_file":
        assert results[0].outputs == {"output": "<file sample>"}
        return
    assert len(results) == len(expected["lines"])
    for i, (got, want) in enumerate(zip(results, expected["lines"], strict=True)):
        assert got.status == want["status"], (case, i, got.error)
        if want["status"] == "Completed":
            assert got.outputs == want["output"], (case, i)
        else:
            assert got.outputs == {}
            assert _message(got.error["message"]) == want["error"]["message"], (case, i)
    if expected.get("aggregation"):
        collector = flow.aggregation_collector()
        for line in results:
            collector.add_line(line)
        aggregation = run_sync(flow.aggregate(collector))
        assert aggregation.status == "Completed", aggregation.error
        assert aggregation.metrics == expected["aggregation"]["metrics"]
    else:
        assert not flow.has_aggregation


PROMPTY_CALLS = [c for c in CASES if _meta(c).get("call") and c not in KNOWN_DIFFERENCES]


@pytest.mark.parametrize("case", PROMPTY_CALLS)
def test_prompty_called_from_python(case, echo_env):
    """``Prompty.load(path)(**inputs)`` returns what promptflow's Prompty returned."""
    from pfkit.prompty import Prompty

    meta, expected = _meta(case), _expected(case)
    prompty = Prompty.load(FLOWS / case / meta["flow"])
    for line, want in zip(meta["lines"], expected["calls"], strict=True):
        if want["error"] is not None:
            with pytest.raises(PfkitError) as info:
                prompty(**line)
            assert info.value.message == want["error"]["message"]
            continue
        got = prompty(**line)
        if isinstance(want["output"], dict) and "chunks" in want["output"]:
            assert "".join(got) == "".join(want["output"]["chunks"])
        else:
            assert got == want["output"]


def test_every_case_has_its_expected_file():
    assert len([c for c in CASES if c.startswith("flex_")]) >= 20
    assert len([c for c in CASES if c.startswith("prompty_")]) >= 10
    for case in CASES:
        assert (FLOWS / case / "expected.json").is_file(), case
