"""The pfkit command as users run it: a real process, exit statuses, one clear line on errors."""

from __future__ import annotations

import json
import os
import shutil
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


ECHO_FLOW = """
inputs:
  text: {type: string}
  n: {type: int, default: 2}
outputs:
  echoed: {type: string, reference: "${echo.output}"}
nodes:
- name: echo
  type: python
  source: {type: code, path: echo.py}
  inputs: {text: "${inputs.text}", n: "${inputs.n}"}
"""
ECHO_PY = "from promptflow.core import tool\n\n@tool\ndef echo(text: str, n: int) -> str:\n    return text * n\n"


def test_flow_test_without_inputs_takes_the_first_row_of_the_flows_data(make_flow):
    folder = make_flow({"flow.dag.yaml": ECHO_FLOW, "echo.py": ECHO_PY,
                        "data.jsonl": '{"text": "ab", "n": 5}\n{"text": "zz"}\n'})
    result = pfkit("flow", "test", "--flow", str(folder))
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == {"echoed": "abab"}  # n keeps its default
    assert f"no --inputs: text from {folder.name}/data.jsonl:1" in result.stderr


def test_flow_test_without_inputs_or_data_names_the_missing_input(make_flow):
    folder = make_flow({"flow.dag.yaml": ECHO_FLOW, "echo.py": ECHO_PY})
    result = pfkit("flow", "test", "--flow", str(folder))
    assert result.returncode != 0
    assert "'inputs.text'" in result.stderr and "Traceback" not in result.stderr


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
    # text_stats without its data.jsonl (with one, flow test takes its first row)
    (["flow", "test", "--flow", "NO_DATA"], "flow input 'text' is not provided"),
    (["flow", "test", "--flow", "flows/text_stats", "--inputs", "text=hi", "min_word_length=abc"],
     "does not match the expected type 'int'"),
])
def test_user_errors_exit_non_zero_with_a_message(args, needle, tmp_path):
    if "NO_DATA" in args:
        copy = tmp_path / "text_stats"
        shutil.copytree(ROOT / "flows" / "text_stats", copy,
                        ignore=shutil.ignore_patterns("data.jsonl", ".promptflow"))
        args = [str(copy) if a == "NO_DATA" else a for a in args]
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


LEAKY_FLOW = """
inputs:
  q: {type: string}
outputs:
  a: {type: string, reference: "${leak.output}"}
nodes:
- name: leak
  type: python
  source: {type: code, path: tool.py}
  inputs: {conn: my_openai, q: "${inputs.q}"}
"""
LEAKY_TOOL = '''from promptflow.connections import OpenAIConnection
from promptflow.core import tool


def check(key: str) -> None:
    raise ValueError(f"the server refused key {key}")


@tool
def leak(conn: OpenAIConnection, q: str) -> str:
    if q == "echo":
        return f"using {conn.api_key}"
    check(conn.api_key)
    return "never"
'''
KEY = "sk-leaky-0123456789abcdef"


@pytest.fixture
def leaky_flow(make_flow, tmp_path, home):
    conn = tmp_path / "conn.yaml"
    conn.write_text(f"name: my_openai\ntype: open_ai\napi_key: {KEY}\n"
                    "base_url: http://127.0.0.1:9/v1\n")
    assert pfkit("connection", "create", "--file", str(conn), env=home).returncode == 0
    return make_flow({"flow.dag.yaml": LEAKY_FLOW, "tool.py": LEAKY_TOOL})


def promptflow_files(folder: Path) -> str:
    return "".join(p.read_text(encoding="utf-8") for p in (folder / ".promptflow").glob("*.json"))


@pytest.mark.parametrize("debug", [False, True], ids=["plain", "debug"])
def test_a_key_in_a_tool_exception_is_never_printed_or_stored(leaky_flow, home, debug):
    extra = ["--debug"] if debug else []
    result = pfkit("flow", "test", "--flow", str(leaky_flow), "--inputs", "q=hi", *extra, env=home)
    assert result.returncode == 1
    assert KEY not in result.stdout + result.stderr
    assert "the server refused key ******" in result.stderr
    files = promptflow_files(leaky_flow)
    assert "the server refused key ******" in files and KEY not in files
    # the user's file and line, not pfkit's
    assert "tool.py:6, node 'leak'" in result.stderr
    if debug:
        assert 'File "' in result.stderr and "tool.py\", line 6, in check" in result.stderr
        assert "pfkit/engine" not in result.stderr  # the user's traceback, not pfkit's
    else:
        assert "Traceback" not in result.stderr


def test_a_key_in_outputs_is_masked_in_what_flow_test_prints(leaky_flow, home):
    result = pfkit("flow", "test", "--flow", str(leaky_flow), "--inputs", "q=echo", env=home)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == {"a": "using ******"}
    assert KEY not in promptflow_files(leaky_flow)


def test_single_node_inputs_take_json_and_declared_types(make_flow):
    folder = make_flow({"flow.dag.yaml": """
inputs:
  n: {type: int}
  data: {type: object}
outputs:
  o: {type: object, reference: "${use.output}"}
nodes:
- name: make
  type: python
  source: {type: code, path: make.py}
  inputs: {n: "${inputs.n}"}
- name: use
  type: python
  source: {type: code, path: use.py}
  inputs: {total: "${make.output.total}", n: "${inputs.n}"}
""", "make.py": "from promptflow.core import tool\n\n@tool\ndef make(n: int):\n"
                "    return {'total': n}\n",
        "use.py": "from promptflow.core import tool\n\n@tool\ndef use(total, n):\n"
                  "    return [total + n, type(n).__name__]\n"})
    result = pfkit("flow", "test", "--flow", str(folder), "--node", "use", "--inputs",
                   'make.output={"total": 5}', "n=2", "extra=1")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == {"use": [7, "int"]}
    assert "does not use extra" in result.stderr and "make.output" in result.stderr
    bad = pfkit("flow", "test", "--flow", str(folder), "--node", "use", "--inputs",
                'make.output="text"', "n=2")
    assert bad.returncode == 1 and "internal error" not in bad.stderr
    assert "make.output" in bad.stderr and "as JSON" in bad.stderr


def test_unknown_flow_inputs_are_named_in_a_warning():
    result = pfkit("flow", "test", "--flow", "flows/text_stats", "--inputs", "text=hi",
                   "txet=typo")
    assert result.returncode == 0, result.stderr
    assert "txet" in result.stderr and "its inputs: text, min_word_length" in result.stderr


def test_a_native_crash_is_reported(make_flow):
    folder = make_flow({"flow.dag.yaml": "inputs: {}\noutputs:\n  o: {type: string, reference: "
                        "'${c.output}'}\nnodes:\n- name: c\n  type: python\n  source: {type: code,"
                        " path: c.py}\n",
                        "c.py": "import ctypes\nfrom promptflow.core import tool\n\n@tool\n"
                                "def c():\n    ctypes.string_at(0)\n"})
    result = pfkit("flow", "test", "--flow", str(folder))
    assert result.returncode != 0
    assert "Fatal Python error" in result.stderr and "Segmentation fault" in result.stderr
