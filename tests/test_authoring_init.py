"""``pfkit flow init``: a starter flow of each type that `flow test` and `run create` run as
written; a folder with anything in it is never touched."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import pfkit
from pfkit.authoring import FLOW_TYPES, init_flow
from pfkit.errors import UserError
from pfkit.runs import LocalRunStore
from pfkit.spec import load_flow_spec
from pfkit.testing import EchoModel


def cli(*args: str, home: Path, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PFKIT_HOME": str(home)}
    return subprocess.run([sys.executable, "-m", "pfkit", *args], capture_output=True,
                          text=True, timeout=300, cwd=cwd, env=env)


@pytest.mark.parametrize("kind", FLOW_TYPES)
def test_each_type_has_python_prompt_and_llm_nodes_and_data(tmp_path, kind):
    files = init_flow(tmp_path / kind, type=kind)
    assert {p.name for p in files} >= {"flow.dag.yaml", "data.jsonl"}
    spec = load_flow_spec(tmp_path / kind)
    types = {n.type for n in spec.nodes}
    assert {"python", "prompt", "llm"} <= types
    assert all(n.connection == "local" for n in spec.nodes if n.type == "llm")
    assert any(n.aggregation for n in spec.nodes) == (kind == "evaluation")
    assert spec.is_chat == (kind == "chat")
    rows = [json.loads(line) for line in (tmp_path / kind / "data.jsonl").read_text().splitlines()]
    assert rows and all(set(spec.inputs) - {"chat_history"} <= set(row) for row in rows)


@pytest.mark.parametrize("kind", FLOW_TYPES)
def test_the_starter_runs_over_its_data(tmp_path, kind):
    folder = tmp_path / kind
    init_flow(folder, type=kind)
    session = pfkit.Session(store=LocalRunStore(tmp_path / "home"), models={"*": EchoModel()})
    flow = pfkit.load_flow(folder, session=session)
    run = flow.run(folder / "data.jsonl", progress=False)
    lines = run.lines()
    assert run.status == "Completed" and lines and all(
        line["status"] == "Completed" for line in lines)
    if kind == "evaluation":
        assert set(run.metrics()) == {"exact_match", "f1", "judge_agrees"}
        assert run.metrics()["exact_match"] == pytest.approx(1 / 3, abs=1e-4)
    session.close()


def test_another_connection_is_named_in_the_llm_node(tmp_path):
    init_flow(tmp_path / "f", connection="my_openai")
    node = next(n for n in load_flow_spec(tmp_path / "f").nodes if n.type == "llm")
    assert node.connection == "my_openai"
    assert node.inputs["model"].value == "gpt-4o-mini"


def test_a_non_empty_folder_is_refused_and_left_alone(tmp_path):
    folder = tmp_path / "mine"
    folder.mkdir()
    (folder / "keep.txt").write_text("notes")
    with pytest.raises(UserError) as caught:
        init_flow(folder)
    assert caught.value.code == "FolderNotEmpty"
    assert [p.name for p in folder.iterdir()] == ["keep.txt"]
    with pytest.raises(UserError):
        init_flow(tmp_path / "x", type="fancy")
    with pytest.raises(UserError):
        init_flow(tmp_path / "y", connection="../up")
    assert not (tmp_path / "x").exists() and not (tmp_path / "y").exists()


def test_cli_refuses_a_non_empty_folder_with_one_clear_line(tmp_path):
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "a").write_text("")
    done = cli("flow", "init", "--flow", "full", home=tmp_path / "home", cwd=tmp_path)
    assert done.returncode != 0
    assert "not empty" in done.stderr and "Traceback" not in done.stderr
    assert sorted(p.name for p in (tmp_path / "full").iterdir()) == ["a"]


@pytest.mark.slow
@pytest.mark.parametrize("kind", FLOW_TYPES)
def test_cli_init_then_flow_test_and_run_create_on_the_embedded_model(tmp_path, kind):
    pytest.importorskip("llama_cpp")
    home = tmp_path / "home"
    done = cli("flow", "init", "--flow", "starter", "--type", kind, home=home, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "pfkit flow test --flow starter" in done.stderr
    inputs = (["answer=Paris", "ground_truth=Paris"] if kind == "evaluation"
              else ["question=What is the capital of France?"])
    tested = cli("flow", "test", "--flow", "starter", "--inputs", *inputs, home=home,
                 cwd=tmp_path)
    assert tested.returncode == 0, tested.stderr
    outputs = json.loads(tested.stdout)
    if kind == "evaluation":
        assert outputs["exact_match"] == 1.0 and outputs["f1"] == 1.0
        assert "metrics:" in tested.stderr
    else:
        assert isinstance(outputs["answer"], str) and outputs["answer"].strip()
    created = cli("run", "create", "--flow", "starter", "--data", "starter/data.jsonl",
                  home=home, cwd=tmp_path)
    assert created.returncode == 0, created.stderr
    assert "Completed" in created.stderr and "failed" not in created.stderr.split("Completed")[1]
