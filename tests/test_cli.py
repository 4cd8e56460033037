"""The pfkit command as users run it: a real process, exit statuses, one clear line on errors."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def pfkit(*args: str, cwd: Path | None = None, env: dict | None = None) -> subprocess.CompletedProcess:
    full_env = {**os.environ, **(env or {})}
    return subprocess.run([sys.executable, "-m", "pfkit", *args], capture_output=True,
                          text=True, cwd=cwd or ROOT, env=full_env, timeout=120)


@pytest.fixture
def home(tmp_path):
    return {"PFKIT_HOME": str(tmp_path / "home")}


def test_version():
    result = pfkit("--version")
    assert result.returncode == 0 and result.stdout.startswith("pfkit ")


def test_flow_test_prints_outputs_as_json():
    result = pfkit("flow", "test", "--flow", "flows/text_stats", "--inputs",
                   "text=One two three. Four five!")
    assert result.returncode == 0, result.stderr
    out = json.loads(result.stdout)
    assert out["words"] == 5 and out["sentences"] == 2
    assert "metrics:" in result.stderr  # the aggregation ran over the one line


def test_flow_test_reads_an_input_file(tmp_path):
    data = tmp_path / "in.jsonl"
    data.write_text('\n{"message": "my invoice is wrong, refund please", "customer_tier": "gold"}\n'
                    '{"message": "x"}\n')
    result = pfkit("flow", "test", "--flow", "flows/support_router", "--input", str(data))
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["intent"] == "refund"


def test_failing_line_is_one_clear_line_without_traceback(make_flow):
    folder = make_flow({"flow.dag.yaml": """
inputs:
  x: {type: int}
outputs:
  y: {type: int, reference: "${f.output}"}
nodes:
- name: f
  type: python
  source: {type: code, path: f.py}
  inputs: {x: "${inputs.x}"}
""", "f.py": "from promptflow.core import tool\n\n@tool\ndef f(x: int):\n    return 10 // x\n"})
    result = pfkit("flow", "test", "--flow", str(folder), "--inputs", "x=0")
    assert result.returncode == 1
    assert "Execution failure in 'f': (ZeroDivisionError) integer division or modulo by zero" in result.stderr
    assert "Traceback" not in result.stderr and result.stdout == ""
    debug = pfkit("--debug", "flow", "test", "--flow", str(folder), "--inputs", "x=0")
    assert "Traceback" in debug.stderr and "ZeroDivisionError" in debug.stderr


def test_invalid_flow_error_names_file_line_node_and_hint(make_flow):
    folder = make_flow({"flow.dag.yaml": """
nodes:
- name: a
  type: python
  source: {type: code, path: a.py}
  inputs:
    x: ${missing.output}
""", "a.py": "from promptflow.core import tool\n\n@tool\ndef a(x):\n    return x\n"})
    result = pfkit("flow", "validate", "--flow", str(folder))
    assert result.returncode == 1
    line = result.stderr.strip()
    assert line.count("\n") == 0
    assert "flow.dag.yaml:3" in line and "node 'a'" in line and "inputs.x" in line
    assert "Hint:" in line and "Traceback" not in line


def test_validate_accepts_a_valid_flow():
    result = pfkit("flow", "validate", "--flow", "flows/support_router")
    assert result.returncode == 0 and "valid flow" in result.stdout


def test_graph_prints_mermaid():
    result = pfkit("flow", "graph", "--flow", "flows/support_router")
    assert result.returncode == 0
    assert result.stdout.startswith("flowchart TD")
    assert "n_classify -. \"activate is 'refund'\" .-> n_refund_reply" in result.stdout


def test_single_node_and_variant_options(tmp_path):
    result = pfkit("flow", "test", "--flow", "flows/support_router", "--node", "classify",
                   "--inputs", "message=the login page crashes")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["classify"]["intent"] == "technical"
    bad = pfkit("flow", "test", "--flow", "flows/support_router", "--variant", "${nope.v1}")
    assert bad.returncode == 1 and "nope" in bad.stderr


@pytest.mark.parametrize("args,needle", [
    (["flow", "test", "--flow", "does/not/exist"], "no such flow folder"),
    (["flow", "test", "--flow", "flows/text_stats", "--inputs", "novalue"], "key=value"),
    (["flow", "test", "--flow", "flows/text_stats"], "flow input 'text' is not provided"),
    (["flow", "test", "--flow", "flows/text_stats", "--inputs", "text=hi", "min_word_length=abc"],
     "does not match the expected type 'int'"),
])
def test_user_errors_exit_non_zero_with_a_message(args, needle):
    result = pfkit(*args)
    assert result.returncode != 0
    assert needle in result.stderr and "Traceback" not in result.stderr


def test_unknown_command_shows_usage():
    result = pfkit("frobnicate")
    assert result.returncode == 2 and "usage:" in result.stderr


def test_connection_lifecycle_masks_secrets(tmp_path, home):
    conn = tmp_path / "conn.yaml"
    conn.write_text("name: my_openai\ntype: open_ai\napi_key: sk-very-secret-123\n"
                    "base_url: http://127.0.0.1:9/v1\n")
    created = pfkit("connection", "create", "--file", str(conn), env=home)
    assert created.returncode == 0, created.stderr
    assert "sk-very-secret-123" not in created.stdout + created.stderr
    stored = Path(home["PFKIT_HOME"]) / "connections" / "my_openai.yaml"
    assert stored.stat().st_mode & 0o077 == 0  # a literal secret: owner-only file
    shown = json.loads(pfkit("connection", "show", "-n", "my_openai", env=home).stdout)
    assert shown["api_key"] == "******" and shown["base_url"] == "http://127.0.0.1:9/v1"
    listed = json.loads(pfkit("connection", "list", env=home).stdout)
    assert [c["name"] for c in listed] == ["local", "my_openai"]
    env_ref = pfkit("connection", "create", "--file", str(conn), "--name", "by_env", "--set",
                    "api_key=${env:MY_TEST_KEY}", env=home)
    assert env_ref.returncode == 0
    assert json.loads(pfkit("connection", "show", "-n", "by_env", env=home).stdout)[
        "api_key"] == "${env:MY_TEST_KEY}"
    assert pfkit("connection", "delete", "-n", "my_openai", env=home).returncode == 0
    missing = pfkit("connection", "show", "-n", "my_openai", env=home)
    assert missing.returncode == 1 and "pfkit connection create" in missing.stderr


def test_missing_connection_fails_before_any_line_runs(make_flow, home):
    folder = make_flow({"flow.dag.yaml": """
inputs:
  q: {type: string}
outputs:
  a: {type: string, reference: "${chat.output}"}
nodes:
- name: chat
  type: llm
  source: {type: code, path: chat.jinja2}
  connection: nowhere
  api: chat
  inputs: {model: m, q: "${inputs.q}"}
""", "chat.jinja2": "# user:\n{{q}}\n"})
    result = pfkit("flow", "test", "--flow", str(folder), "--inputs", "q=hi", env=home)
    assert result.returncode == 1
    assert "node 'chat'" in result.stderr and "'nowhere'" in result.stderr
    assert "pfkit connection create" in result.stderr
