"""The evaluation gate: thresholds on an evaluation run's metric and paired regression against a
baseline, through real runs in a real store (pfkit gate, and --gate on flow build / serve)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import pfkit
from pfkit.cli import main
from pfkit.errors import UserError
from pfkit.serve import GateRefused, check_gate, parse_threshold

ROOT = Path(__file__).resolve().parent.parent
EXACT_MATCH = ROOT / "evaluators" / "exact_match"

GUESS_FLOW = """
inputs:
  x: {type: int}
outputs:
  answer: {type: string, reference: "${guess.output}"}
nodes:
- name: guess
  type: python
  source: {type: code, path: guess.py}
  inputs: {x: "${inputs.x}"}
"""
GUESS = """
from promptflow.core import tool

@tool
def guess(x: int) -> str:
    return str(2 * x + 1) if x % EVERY == 0 else str(2 * x)
"""
LINES = 28


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """good: wrong on every 7th line (24/28 right); bad: wrong on every 2nd (14/28)."""
    home = tmp_path_factory.mktemp("gate")
    patch = pytest.MonkeyPatch()
    patch.setenv("PFKIT_HOME", str(home / "home"))
    patch.delenv("PFKIT_CACHE", raising=False)
    data = home / "data.jsonl"
    data.write_text("".join(json.dumps({"x": i, "truth": str(2 * i)}) + "\n"
                            for i in range(LINES)))
    for name, every in (("good", 7), ("bad", 2)):
        folder = home / name
        folder.mkdir()
        (folder / "flow.dag.yaml").write_text(GUESS_FLOW)
        (folder / "guess.py").write_text(GUESS.replace("EVERY", str(every)))
        pfkit.run(folder, data, name=name)
        pfkit.run(EXACT_MATCH, data, run=name, name=f"ev_{name}", column_mapping={
            "answer": "${run.outputs.answer}", "ground_truth": "${data.truth}"})
    pfkit.Session.default().close()  # the store of this home is not the next test's
    yield home
    pfkit.Session.default().close()
    patch.undo()


@pytest.fixture
def home(runs, monkeypatch):
    monkeypatch.setenv("PFKIT_HOME", str(runs / "home"))
    pfkit.Session.default().close()
    yield runs
    pfkit.Session.default().close()


def test_thresholds_parse_and_reject_nonsense():
    assert parse_threshold("accuracy >= 0.9").passes(0.9)
    assert not parse_threshold("accuracy>0.9").passes(0.9)
    assert parse_threshold("latency<=2.5").lower_is_better
    for bad in ("accuracy", "accuracy=>0.9", ">=0.9", "accuracy>=high", ""):
        with pytest.raises(UserError, match="not a threshold"):
            parse_threshold(bad)


def test_a_threshold_met_passes_and_one_missed_is_refused_with_the_numbers(home):
    report = check_gate(["exact_match>=0.8"], gate_run="ev_good")
    assert report.passed and "exact_match = 0.8571" in report.passes[0]
    report = check_gate(["exact_match>=0.9"], gate_run="ev_good")
    assert not report.passed
    (failure,) = report.failures
    assert "exact_match = 0.8571" in failure and "n=28" in failure
    assert "95% CI" in failure and "misses exact_match>=0.9" in failure
    check = report.checks[0]
    assert check["ci_low"] < 0.8571 < check["ci_high"] and check["n"] == LINES


def test_an_unknown_metric_names_the_metrics_there_are(home):
    with pytest.raises(UserError, match="no metric 'accuracy'.*") as caught:
        check_gate(["accuracy>=0.9"], gate_run="ev_good")
    assert "exact_match" in caught.value.hint


def test_a_significant_regression_against_the_baseline_is_refused(home):
    report = check_gate([], gate_run="ev_bad", baseline_run="ev_good")
    assert not report.passed
    (failure,) = report.failures
    assert "difference -0.3571" in failure and "significantly worse" in failure
    assert "p=" in failure and "95% CI" in failure and "n=28 paired lines" in failure
    # the better candidate against the worse baseline passes
    assert check_gate([], gate_run="ev_good", baseline_run="ev_bad").passed
    # a regression within the allowed one passes
    assert check_gate([], gate_run="ev_bad", baseline_run="ev_good", max_regression=0.4).passed


def test_pfkit_gate_exits_non_zero_with_an_explanation(home, capsys):
    assert main(["gate", "--gate", "exact_match>=0.8", "--gate-run", "ev_good"]) == 0
    assert "gate passed" in capsys.readouterr().err
    assert main(["gate", "--gate", "exact_match>=0.9", "--gate-run", "ev_good"]) == 1
    err = capsys.readouterr().err
    assert "refused" in err and "0.8571" in err and "n=28" in err and "Traceback" not in err
    assert main(["gate", "--gate-run", "ev_bad", "--baseline-run", "ev_good", "--json"]) == 1
    report = json.loads(capsys.readouterr().out)
    assert report["passed"] is False and report["checks"][0]["significant"] is True
    assert main(["gate", "--gate", "exact_match>=0.9"]) == 2  # --gate-run is required
    assert main(["gate", "--gate", "x>=1", "--gate-run", "no_such_run"]) == 1
    assert "no_such_run" in capsys.readouterr().err


def test_flow_build_and_serve_refuse_a_candidate_that_fails_the_gate(home, tmp_path, capsys):
    out = tmp_path / "out"
    code = main(["flow", "build", "--source", str(home / "bad"), "--output", str(out),
                 "--gate-run", "ev_bad", "--baseline-run", "ev_good"])
    assert code == 1 and not out.exists()
    assert "significantly worse" in capsys.readouterr().err
    code = main(["flow", "serve", "--source", str(home / "good"), "--port", "70000",
                 "--gate", "exact_match>=0.95", "--gate-run", "ev_good"])
    assert code == 1  # refused before the port is even checked
    assert "misses exact_match>=0.95" in capsys.readouterr().err


def test_gate_refused_is_a_user_error_with_every_failure():
    from pfkit.serve._gate import GateReport

    error = GateRefused(GateReport(False, ["a is low", "b is worse"]))
    assert isinstance(error, UserError) and "a is low" in str(error) and "b is worse" in str(error)
