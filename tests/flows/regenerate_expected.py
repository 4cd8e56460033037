"""Regenerate ``tests/flows/<case>/expected.json`` by running REAL promptflow 1.18.5.

Usage (from the repository root)::

    .bench/promptflow-venv/bin/python tests/flows/regenerate_expected.py [case ...] [-j N]

Without case names every folder under ``tests/flows/`` that holds a ``case.json`` is processed.

How it works
------------
* The parent process starts a deterministic OpenAI-compatible "echo" HTTP server on 127.0.0.1
  (stdlib ``http.server`` in a thread, free port).  ``POST /v1/chat/completions`` answers with a
  ``chat.completion`` whose ``choices[0].message.content`` is
  ``json.dumps({"messages": body["messages"], "params": <body minus messages/stream>},
  ensure_ascii=False, sort_keys=True)``; ``POST /v1/completions`` answers with
  ``choices[0].text = json.dumps({"prompt": body["prompt"], "params": <body minus prompt/stream>}, ...)``.
* Every case then runs in a FRESH subprocess (``--child``), so module state (sys.modules,
  sys.path, tool caches, metric loggers) cannot leak from one case into another.
* The child mirrors what ``pf run create`` does for a DAG flow, using promptflow's own code:
    - ``case.json`` "variant" -> ``promptflow._utils.flow_utils.parse_variant`` +
      ``promptflow._sdk._orchestrator.utils.overwrite_variant`` on the loaded YAML, dumped with
      ``dump_flow_dag_according_to_content`` into a temp dir (exactly what
      ``flow_overwrite_context`` does; the code/working dir stays the case folder);
    - ``FlowExecutor.create(flow_file, connections, working_dir=case_dir, raise_ex=False)``
      (``raise_ex=False`` is what the batch engine's ``PythonExecutorProxy`` and process-pool
      workers use, so failing lines come back as ``Failed`` line results);
    - per line: defaults applied with ``apply_default_value_for_input`` and ``line_number`` added
      (as ``BatchEngine`` does), then ``exec_line(inputs, index=i, run_id=..., node_concurrency=2)``
      (``DEFAULT_CONCURRENCY_BULK``, as the batch worker does); ``line_number`` is popped from the
      output and a failed line's output is ``{}`` (as ``_exec_line`` in the process pool does);
    - if the flow has aggregation nodes: flow inputs and aggregation inputs are built exactly like
      ``BatchEngine._get_aggregation_inputs`` (lists over the SUCCESSFUL lines only, in line
      order; flow inputs type-coerced with ``FlowValidator.ensure_flow_inputs_type``), then
      ``exec_aggregation(inputs, aggregation_inputs, run_id=...)``.
* Invalid cases (``"invalid": true``): the executor is created with ``raise_ex=True``; the
  exception raised by ``FlowExecutor.create`` (or, if creation passes, by ``exec_line`` on the
  case's lines -- ``{}`` when the case has none) is recorded as
  ``{"type": <class name>, "message": str(exc)}``; if nothing raises,
  ``{"error": null, "promptflow_rejects": false}`` is written.

Environment of the child: ``PF_DISABLE_TRACING=true``, ``PYTHONDONTWRITEBYTECODE=1`` (so no
``__pycache__`` lands in the fixture folders), ``PF_LOGGING_LEVEL`` left alone (logs go to the
child's stderr, which is shown only when the child itself crashes).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

HERE = Path(__file__).resolve().parent
GENERATOR = "promptflow 1.18.5 FlowExecutor (tests/flows/regenerate_expected.py)"
EXPECTED_PF_VERSION = "1.18.5"
RUN_ID = "golden_run"
ECHO_CONNECTION = "echo"
ECHO_API_KEY = "sk-test"
ECHO_AZURE_CONNECTION = "echo_azure"  # the same echo server, as an Azure OpenAI endpoint
ECHO_AZURE_API_VERSION = "2024-02-01"


# --------------------------------------------------------------------------------------------
# Deterministic OpenAI-compatible echo server
# --------------------------------------------------------------------------------------------
def _echo_payload(path: str, body: dict) -> tuple[int, dict]:
    usage = {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2}
    if path.endswith("/chat/completions"):
        params = {k: v for k, v in body.items() if k not in ("messages", "stream")}
        content = json.dumps(
            {"messages": body.get("messages"), "params": params}, ensure_ascii=False, sort_keys=True
        )
        return 200, {
            "id": "chatcmpl-echo",
            "object": "chat.completion",
            "created": 0,
            "model": body.get("model") or "echo-model",
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": content},
                    "finish_reason": "stop",
                    "logprobs": None,
                }
            ],
            "usage": usage,
        }
    if path.endswith("/completions"):
        params = {k: v for k, v in body.items() if k not in ("prompt", "stream")}
        text = json.dumps({"prompt": body.get("prompt"), "params": params}, ensure_ascii=False, sort_keys=True)
        return 200, {
            "id": "cmpl-echo",
            "object": "text_completion",
            "created": 0,
            "model": body.get("model") or "echo-model",
            "choices": [{"index": 0, "text": text, "finish_reason": "stop", "logprobs": None}],
            "usage": usage,
        }
    if path.endswith("/embeddings"):
        inputs = body.get("input")
        inputs = inputs if isinstance(inputs, list) else [inputs]
        as_base64 = body.get("encoding_format") == "base64"
        data = [{"object": "embedding", "index": i,
                 "embedding": _encode_vector(hash_embedding(str(text)), as_base64)}
                for i, text in enumerate(inputs)]
        return 200, {"object": "list", "data": data, "model": body.get("model") or "echo-model",
                     "usage": {"prompt_tokens": 1, "total_tokens": 1}}
    return 404, {"error": {"message": f"unknown path {path}", "type": "invalid_request_error", "code": None}}


def hash_embedding(text: str, dimensions: int = 8) -> list[float]:
    """The vector pfkit.testing's EchoModel and TestServer give for a text (same algorithm)."""
    import hashlib
    import math

    data = b""
    block = 0
    while len(data) < dimensions:
        data += hashlib.sha256(f"{block}:{text}".encode() if block else text.encode()).digest()
        block += 1
    raw = [(data[i] - 127.5) / 127.5 for i in range(dimensions)]
    norm = math.sqrt(sum(v * v for v in raw)) or 1.0
    return [round(v / norm, 6) for v in raw]


def _encode_vector(vector: list[float], as_base64: bool):
    import base64
    import struct

    if not as_base64:
        return vector
    return base64.b64encode(struct.pack(f"<{len(vector)}f", *vector)).decode("ascii")


class _EchoHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_POST(self):  # noqa: N802 (stdlib API)
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b"{}"
        try:
            body = json.loads(raw.decode("utf-8"))
        except ValueError:
            body = {}
        path = self.path.split("?", 1)[0]
        recorded = getattr(self.server, "recorded", None)
        if recorded is not None:
            recorded.append({"path": path, "body": body})
        status, payload = _echo_payload(path, body)
        if status == 200 and body.get("stream"):
            self._send_stream(payload)
            return
        data = json.dumps(payload, ensure_ascii=False).encode("utf-8")
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _send_stream(self, payload: dict):
        # Only used if promptflow ever asks for stream=True (exec_line does not).
        choice = payload["choices"][0]
        if "message" in choice:
            chunk = {
                "id": payload["id"],
                "object": "chat.completion.chunk",
                "created": 0,
                "model": payload["model"],
                "choices": [{"index": 0, "delta": {"role": "assistant", "content": choice["message"]["content"]},
                             "finish_reason": "stop"}],
            }
        else:
            chunk = dict(payload)
        lines = [f"data: {json.dumps(chunk, ensure_ascii=False)}\n\n", "data: [DONE]\n\n"]
        data = "".join(lines).encode("utf-8")
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format, *args):  # noqa: A002 - silence request logging
        pass


def start_echo_server() -> tuple[ThreadingHTTPServer, str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _EchoHandler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, name="echo-llm", daemon=True)
    thread.start()
    host, port = server.server_address[:2]
    return server, f"http://{host}:{port}/v1"


# --------------------------------------------------------------------------------------------
# JSON helpers
# --------------------------------------------------------------------------------------------
def jsonable(value):
    """Return a JSON-serialisable view of value; non-JSON leaves are recorded as repr()."""
    if value is None or isinstance(value, (bool, int, str)):
        return value if type(value) in (bool, int, str, type(None)) else _plain(value)
    if isinstance(value, float):
        return value  # NaN / Infinity are written as bare tokens (allow_nan=True)
    if isinstance(value, dict):
        if all(isinstance(k, str) for k in value):
            return {k: jsonable(v) for k, v in value.items()}
        return repr(value)
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    return repr(value)


def _plain(value):
    # str / int subclasses (e.g. promptflow's PromptResult) are recorded by value.
    if isinstance(value, bool):
        return bool(value)
    if isinstance(value, int):
        return int(value)
    if isinstance(value, str):
        return str(value)
    return repr(value)


def dump_json(obj) -> str:
    return json.dumps(obj, indent=2, ensure_ascii=False, allow_nan=True) + "\n"


_PATH_REPLACEMENTS: list[tuple[str, str]] = []


def set_path_placeholders(case_dir: Path, tmp_dir: Path) -> None:
    """Absolute paths in error messages are replaced so expected.json is machine-independent."""
    _PATH_REPLACEMENTS.clear()
    for real, placeholder in ((case_dir, "<flow_dir>"), (tmp_dir, "<tmp_dir>")):
        for variant in {str(real), os.path.realpath(real)}:
            _PATH_REPLACEMENTS.append((variant, placeholder))
    _PATH_REPLACEMENTS.sort(key=lambda kv: -len(kv[0]))


def scrub(text):
    if not isinstance(text, str):
        return text
    for real, placeholder in _PATH_REPLACEMENTS:
        text = text.replace(real, placeholder)
    return text


def summarize_error(err):
    """Keep top-level message/code of a promptflow error dict plus the innermost exception type."""
    if not err:
        return None
    inner = None
    debug = err.get("debugInfo") if isinstance(err, dict) else None
    while isinstance(debug, dict):
        inner = debug.get("type") or inner
        debug = debug.get("innerException")
    return {"message": scrub(err.get("message")), "code": err.get("code"), "inner": inner}


# --------------------------------------------------------------------------------------------
# Child: run one case in this (fresh) process
# --------------------------------------------------------------------------------------------
def _resolve_flow_file(case_dir: Path, variant: str | None, tmp: Path) -> Path:
    flow_file = case_dir / "flow.dag.yaml"
    if not variant:
        return flow_file
    from promptflow._sdk._orchestrator.utils import overwrite_variant
    from promptflow._utils.flow_utils import (
        dump_flow_dag_according_to_content,
        load_flow_dag,
        parse_variant,
    )

    tuning_node, variant_id = parse_variant(variant)
    _, flow_dag = load_flow_dag(flow_file)
    overwrite_variant(flow_dag, tuning_node, variant_id)
    return dump_flow_dag_according_to_content(flow_dag=flow_dag, flow_path=tmp)


def _devkit_variant_error(case_dir: Path):
    """For flows using variants: what pf run's overwrite_variant (no --variant) says."""
    from promptflow._sdk._orchestrator.utils import overwrite_variant
    from promptflow._utils.flow_utils import load_flow_dag

    try:
        _, flow_dag = load_flow_dag(case_dir / "flow.dag.yaml")
    except Exception:
        return None
    if not isinstance(flow_dag, dict) or not flow_dag.get("node_variants") and not any(
        isinstance(n, dict) and n.get("use_variants") for n in flow_dag.get("nodes") or []
    ):
        return None
    try:
        overwrite_variant(flow_dag, None, None)
    except Exception as e:  # noqa: BLE001
        return {"type": type(e).__name__, "message": scrub(str(e))}
    return None


def run_case_in_this_process(case_dir: Path, base_url: str) -> dict:
    import promptflow
    from promptflow._constants import LINE_NUMBER_KEY
    from promptflow._utils.execution_utils import (
        apply_default_value_for_input,
        collect_lines,
        get_aggregation_inputs_properties,
    )
    from promptflow._utils.utils import transpose
    from promptflow.contracts.run_info import Status
    from promptflow.executor import FlowExecutor
    from promptflow.executor._flow_nodes_scheduler import DEFAULT_CONCURRENCY_BULK
    from promptflow.executor.flow_validator import FlowValidator

    version = getattr(promptflow, "__version__", None)
    if version != EXPECTED_PF_VERSION:
        raise SystemExit(f"expected promptflow {EXPECTED_PF_VERSION}, found {version}")

    case = json.loads((case_dir / "case.json").read_text(encoding="utf-8"))
    connections = {
        ECHO_CONNECTION: {"type": "OpenAIConnection", "value": {"api_key": ECHO_API_KEY, "base_url": base_url}},
        ECHO_AZURE_CONNECTION: {"type": "AzureOpenAIConnection", "value": {
            "api_key": ECHO_API_KEY, "api_base": base_url.removesuffix("/v1"), "api_type": "azure",
            "api_version": ECHO_AZURE_API_VERSION}},
    }
    lines = case.get("lines")
    variant = case.get("variant")

    with tempfile.TemporaryDirectory(prefix="pfkit_golden_") as tmp:
        set_path_placeholders(case_dir, Path(tmp))
        if case.get("invalid"):
            result = {"generator": GENERATOR}
            stage = "variant"
            try:
                flow_file = _resolve_flow_file(case_dir, variant, Path(tmp))
                stage = "create"
                executor = FlowExecutor.create(flow_file, connections, working_dir=case_dir, raise_ex=True)
                stage = "exec_line"
                for i, line in enumerate(lines or [{}]):
                    executor.exec_line(dict(line), index=i, run_id=RUN_ID)
            except Exception as e:  # noqa: BLE001
                result["error"] = {"type": type(e).__name__, "message": scrub(str(e))}
                result["stage"] = stage
            else:
                result["error"] = None
                result["promptflow_rejects"] = False
            devkit_error = _devkit_variant_error(case_dir)
            if devkit_error and not variant:
                result["devkit_variant_error"] = devkit_error
            return result

        flow_file = _resolve_flow_file(case_dir, variant, Path(tmp))
        executor = FlowExecutor.create(flow_file, connections, working_dir=case_dir, raise_ex=False)
        flow = executor._flow

        batch_inputs = []
        line_results = []
        out_lines = []
        for i, line in enumerate(lines or []):
            batch_input = apply_default_value_for_input(flow.inputs, dict(line))
            batch_input[LINE_NUMBER_KEY] = i
            batch_inputs.append(batch_input)
            lr = executor.exec_line(dict(batch_input), index=i, run_id=RUN_ID, node_concurrency=DEFAULT_CONCURRENCY_BULK)
            if isinstance(lr.output, dict):
                lr.output.pop(LINE_NUMBER_KEY, None)
            if lr.run_info.status == Status.Failed:
                lr.output = {}
            line_results.append(lr)
            out_lines.append(
                {
                    "status": lr.run_info.status.value,
                    "output": jsonable(lr.output),
                    "error": summarize_error(lr.run_info.error),
                    "nodes": {name: nr.status.value for name, nr in sorted(lr.node_run_infos.items())},
                }
            )

        aggregation = None
        if any(node.aggregation for node in flow.nodes):
            # == BatchEngine._get_aggregation_inputs
            succeeded = [i for i, r in enumerate(line_results) if r.run_info.status == Status.Completed]
            succeeded_inputs = [
                FlowValidator.ensure_flow_inputs_type(flow=flow, inputs=batch_inputs[i]) for i in succeeded
            ]
            inputs = transpose(succeeded_inputs, keys=list(flow.inputs.keys()))
            aggregation_inputs = transpose(
                [r.aggregation_inputs for r in line_results], keys=get_aggregation_inputs_properties(flow)
            )
            aggregation_inputs = collect_lines(succeeded, aggregation_inputs)
            try:
                aggr = executor.exec_aggregation(inputs, aggregation_inputs, run_id=RUN_ID)
            except Exception as e:  # noqa: BLE001 - the batch engine would record this as the run error
                aggregation = {
                    "metrics": {},
                    "nodes": {},
                    "outputs": {},
                    "error": {"message": scrub(str(e)), "code": None, "inner": type(e).__name__},
                }
            else:
                node_errors = {
                    name: summarize_error(nr.error) for name, nr in sorted(aggr.node_run_infos.items()) if nr.error
                }
                aggregation = {
                    "metrics": jsonable(aggr.metrics),
                    "nodes": {name: nr.status.value for name, nr in sorted(aggr.node_run_infos.items())},
                    "outputs": {name: jsonable(nr.output) for name, nr in sorted(aggr.node_run_infos.items())},
                    "error": next(iter(node_errors.values())) if node_errors else None,
                }
        return {"generator": GENERATOR, "lines": out_lines, "aggregation": aggregation}


def child_main(case: str, base_url: str) -> int:
    case_dir = (HERE / case).resolve()
    meta = json.loads((case_dir / "case.json").read_text(encoding="utf-8"))
    if meta.get("record_requests"):
        # This case's own echo server, so the requests it records are this case's alone.
        server, base_url = start_echo_server()
        server.recorded = []
        result = run_case_in_this_process(case_dir, base_url)
        result["requests"] = server.recorded
        server.shutdown()
    else:
        result = run_case_in_this_process(case_dir, base_url)
    (case_dir / "expected.json").write_text(dump_json(result), encoding="utf-8")
    return 0


# --------------------------------------------------------------------------------------------
# Parent
# --------------------------------------------------------------------------------------------
def discover_cases() -> list[str]:
    return sorted(p.parent.name for p in HERE.glob("*/case.json"))


def run_child(case: str, base_url: str) -> tuple[str, int, str, float]:
    env = dict(os.environ)
    env["PF_DISABLE_TRACING"] = "true"
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    env.pop("PF_USE_ASYNC", None)
    start = time.time()
    proc = subprocess.run(
        [sys.executable, str(Path(__file__).resolve()), "--child", case, "--base-url", base_url],
        cwd=str(HERE / case),
        env=env,
        capture_output=True,
        text=True,
        encoding="utf-8",
        errors="replace",
    )
    return case, proc.returncode, proc.stdout + proc.stderr, time.time() - start


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("cases", nargs="*", help="case folder names (default: all)")
    parser.add_argument("-j", "--jobs", type=int, default=max(1, min(4, os.cpu_count() or 1)))
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--base-url", help=argparse.SUPPRESS)
    parser.add_argument("--pfeval", action="store_true",
                        help="the pfeval_* evaluation-run cases instead (see pfeval_expected.py)")
    args = parser.parse_args(argv)

    if args.pfeval:
        import pfeval_expected

        return pfeval_expected.main(args.cases)
    if args.child:
        return child_main(args.child, args.base_url)

    all_cases = discover_cases()
    cases = args.cases or all_cases
    unknown = [c for c in cases if c not in all_cases]
    if unknown:
        parser.error(f"unknown case(s): {', '.join(unknown)}")

    server, base_url = start_echo_server()
    failures = []
    try:
        with ThreadPoolExecutor(max_workers=args.jobs) as pool:
            for case, rc, log, secs in pool.map(lambda c: run_child(c, base_url), cases):
                if rc == 0:
                    expected = json.loads((HERE / case / "expected.json").read_text(encoding="utf-8"))
                    summary = _summary(expected)
                    print(f"ok    {case:45s} {secs:5.1f}s  {summary}")
                else:
                    failures.append(case)
                    print(f"FAIL  {case:45s} {secs:5.1f}s\n{log[-4000:]}")
    finally:
        server.shutdown()
    print(f"{len(cases) - len(failures)}/{len(cases)} cases written")
    return 1 if failures else 0


def _summary(expected: dict) -> str:
    if "lines" not in expected:
        err = expected.get("error")
        return f"invalid -> {err['type']}" if err else "invalid -> NOT rejected"
    statuses = [line["status"] for line in expected["lines"]]
    text = ",".join(statuses)
    if expected.get("aggregation"):
        text += f" | agg {expected['aggregation']['nodes']}"
    return text


if __name__ == "__main__":
    sys.exit(main())
