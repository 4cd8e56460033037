"""Produce ``tests/flows/pfeval_*/expected.json`` with REAL promptflow 1.18.5 evaluation runs.

Usage (from the repository root)::

    .bench/promptflow-venv/bin/python tests/flows/regenerate_expected.py --pfeval [case ...]

A case folder ``pfeval_<shape>/`` holds ``base/`` (a flow), ``eval/`` (an evaluation flow of the
shape of one of promptflow's published evaluation flows), ``data.jsonl`` and ``pfeval.json``::

    {"description": "...", "base_column_mapping": {...}, "eval_column_mapping": {...},
     "eval_data": true,   # false: the evaluation run gets --run only, no --data
     "rules": [{"pattern": REGEX, "reply": TEXT} | {"pattern": REGEX, "fault": {...}}]}

What it does, exactly as a user would:

1. Starts pfkit's OpenAI-compatible test server (``pfkit testing serve``, from the project's
   ``.venv``) on 127.0.0.1 with the rules of every case (``RULES_DEFAULT`` for anything else),
   so the base flows' and the judges' answers are fixed.
2. Per case, in a temp folder with its own ``PF_HOME_DIRECTORY`` (``PF_DISABLE_TRACING=true``):
   copies the case, ``pf connection create`` an ``open_ai`` connection ``judge`` whose
   ``base_url`` is the server, then ``pf run create --flow base --data data.jsonl
   --column-mapping ...`` and ``pf run create --flow eval --run <base> --data data.jsonl
   --column-mapping ...``.
3. Records per run: the run status and error message (``pf run show``), every line's status
   and error message (``flow_artifacts``), its nodes' statuses (``node_artifacts``), inputs (``inputs.jsonl``) and outputs
   (``flow_outputs/output.jsonl``, completed lines only), and ``metrics.json`` (NaN kept).
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
PF_BIN = Path(sys.executable).parent / "pf"
PFKIT_PYTHON = REPO / ".venv" / "bin" / "python"
GENERATOR = "promptflow 1.18.5 pf run create (tests/flows/pfeval_expected.py)"
CONNECTION = "judge"
API_KEY = "sk-pfeval-test"
RULES_DEFAULT = "no rule matched this request"


def discover_cases() -> list[str]:
    return sorted(p.parent.name for p in HERE.glob("pfeval_*/pfeval.json"))


def load_case(name: str) -> dict:
    return json.loads((HERE / name / "pfeval.json").read_text(encoding="utf-8"))


def all_rules(cases: list[str]) -> dict:
    """One rules file for every case (the test serves the same one)."""
    rules = [rule for name in cases for rule in load_case(name).get("rules", [])]
    return {"rules": rules, "default": RULES_DEFAULT}


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_test_server(rules_file: Path) -> tuple[subprocess.Popen, str]:
    port = _free_port()
    proc = subprocess.Popen([str(PFKIT_PYTHON), "-m", "pfkit", "testing", "serve", "--port", str(port),
                             "--rules", str(rules_file)], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                            text=True)
    line = proc.stdout.readline().strip()
    if not line.startswith("http://127.0.0.1"):
        proc.kill()
        raise SystemExit(f"the pfkit test server did not start: {line!r}")
    return proc, line


def _pf(args: list[str], env: dict, cwd: Path) -> str:
    proc = subprocess.run([str(PF_BIN), *args], env=env, cwd=str(cwd), capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"pf {' '.join(args)} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    return proc.stdout


def _mapping_args(mapping: dict) -> list[str]:
    return ["--column-mapping", *[f"{k}={v}" for k, v in mapping.items()]] if mapping else []


def _jsonl(path: Path) -> list[dict]:
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def read_run(home: Path, name: str, env: dict, cwd: Path) -> dict:
    shown = json.loads(_pf(["run", "show", "-n", name], env, cwd))
    run_dir = Path(shown["properties"]["output_path"])
    outputs = {row.pop("line_number"): row for row in _jsonl(run_dir / "flow_outputs" / "output.jsonl")}
    inputs = {row.pop("line_number"): row for row in _jsonl(run_dir / "inputs.jsonl")}
    statuses, errors = {}, {}
    for artifact in sorted((run_dir / "flow_artifacts").glob("*.jsonl")):
        for row in _jsonl(artifact):
            statuses[row["line_number"]] = row["run_info"]["status"]
            errors[row["line_number"]] = (row["run_info"].get("error") or {}).get("message")
    nodes: dict[int, dict[str, str]] = {}
    for node_dir in sorted(p for p in (run_dir / "node_artifacts").glob("*") if p.is_dir()):
        for artifact in sorted(node_dir.glob("*.jsonl")):
            for row in _jsonl(artifact):
                if row.get("line_number") is not None:  # aggregation nodes have none
                    nodes.setdefault(row["line_number"], {})[node_dir.name] = row["run_info"]["status"]
    metrics_file = run_dir / "metrics.json"
    metrics = json.loads(metrics_file.read_text(encoding="utf-8")) if metrics_file.is_file() else {}
    lines = [{"line_number": n, "status": statuses[n], "inputs": inputs.get(n), "output": outputs.get(n),
              "error": errors.get(n), "nodes": dict(sorted(nodes.get(n, {}).items()))}
             for n in sorted(statuses)]
    run_error = shown.get("error") if isinstance(shown.get("error"), dict) else None
    return {"status": shown["status"], "lines": lines, "metrics": metrics,
            "error": run_error.get("message") if run_error else None}


def run_case(name: str, base_url: str) -> dict:
    meta = load_case(name)
    with tempfile.TemporaryDirectory(prefix="pfeval_") as tmp:
        tmp_dir = Path(tmp)
        work = tmp_dir / name
        shutil.copytree(HERE / name, work, ignore=shutil.ignore_patterns("expected.json", "__pycache__"))
        env = dict(os.environ, PF_HOME_DIRECTORY=str(tmp_dir / "home"), PF_DISABLE_TRACING="true",
                   PYTHONDONTWRITEBYTECODE="1")
        env.pop("PF_USE_ASYNC", None)
        try:
            _pf(["config", "set", "telemetry.enabled=false"], env, work)
            conn = tmp_dir / "judge.yaml"
            conn.write_text(json.dumps({"name": CONNECTION, "type": "open_ai", "api_key": API_KEY,
                                        "base_url": base_url}), encoding="utf-8")
            _pf(["connection", "create", "--file", str(conn)], env, work)
            base, evaluation = f"{name}_base", f"{name}_eval"
            _pf(["run", "create", "--flow", "base", "--data", "data.jsonl", "--name", base,
                 *_mapping_args(meta.get("base_column_mapping") or {})], env, work)
            eval_data = ["--data", "data.jsonl"] if meta.get("eval_data", True) else []
            _pf(["run", "create", "--flow", "eval", *eval_data, "--run", base, "--name", evaluation,
                 *_mapping_args(meta.get("eval_column_mapping") or {})], env, work)
            home = tmp_dir / "home"
            return {"generator": GENERATOR, "base": read_run(home, base, env, work),
                    "eval": read_run(home, evaluation, env, work)}
        finally:
            # pf starts a background service per PF_HOME_DIRECTORY; it would outlive us
            subprocess.run([str(PF_BIN), "service", "stop"], env=env, cwd=str(work),
                           capture_output=True, text=True)


def main(cases: list[str] | None = None) -> int:
    known = discover_cases()
    cases = list(cases or known)
    unknown = [c for c in cases if c not in known]
    if unknown:
        raise SystemExit(f"unknown pfeval case(s): {', '.join(unknown)}")
    with tempfile.TemporaryDirectory(prefix="pfeval_rules_") as tmp:
        rules_file = Path(tmp) / "rules.json"
        rules_file.write_text(json.dumps(all_rules(known)), encoding="utf-8")
        server, base_url = start_test_server(rules_file)
        try:
            for name in cases:
                start = time.time()
                result = run_case(name, base_url)
                text = json.dumps(result, indent=2, ensure_ascii=False, allow_nan=True) + "\n"
                (HERE / name / "expected.json").write_text(text, encoding="utf-8")
                statuses = ",".join(line["status"][0] for line in result["eval"]["lines"])
                print(f"ok    {name:40s} {time.time() - start:5.1f}s  eval {statuses} {result['eval']['metrics']}")
        finally:
            server.terminate()
            server.wait(10)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
