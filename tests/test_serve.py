"""pfkit.serve: the flow behind a real uvicorn on a free loopback port (promptflow's serving API,
plus limits, auth and metrics). Every test checks that the server is still healthy afterwards."""

from __future__ import annotations

import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import uvicorn

from pfkit import _secrets
from pfkit.serve import app

ROOT = Path(__file__).resolve().parent.parent

PY_FLOW = """
inputs:
  text: {type: string, description: what to shout}
  n: {type: int, default: 2}
  extra: {type: object, default: {}}
outputs:
  echo: {type: string, reference: "${shout.output}"}
  times: {type: int, reference: "${inputs.n}"}
  gold: {type: string, reference: "${inputs.text}", evaluation_only: true}
nodes:
- name: shout
  type: python
  source: {type: code, path: shout.py}
  inputs: {text: "${inputs.text}", n: "${inputs.n}"}
"""
SHOUT = """
from promptflow.core import tool

@tool
def shout(text: str, n: int) -> str:
    if text == "fail":
        raise ValueError("cannot shout with key sk-serve-test-secret-0123456789")
    return (text.upper() + "!") * n
"""

STREAM_FLOW = """
inputs:
  text: {type: string}
outputs:
  answer: {type: string, reference: "${words.output}"}
  question: {type: string, reference: "${inputs.text}"}
  count: {type: int, reference: "${count.output}"}
nodes:
- name: count
  type: python
  source: {type: code, path: count.py}
  inputs: {text: "${inputs.text}"}
- name: words
  type: python
  source: {type: code, path: words.py}
  inputs: {text: "${inputs.text}", count: "${count.output}"}
"""
COUNT_TOOL = """
from promptflow.core import tool

@tool
def count(text: str) -> int:
    return len(text.split())
"""
WORDS_TOOL = """
from promptflow.core import tool

@tool
def words(text: str, count: int):
    for word in text.split():
        if word == "boom":
            raise RuntimeError("exploded mid-stream")
        yield word + " "
"""

SLOW_FLOW = """
inputs:
  i: {type: int}
  wait: {type: double, default: 10.0}
  expect: {type: int, default: 1}
outputs:
  seen: {type: int, reference: "${slow.output}"}
nodes:
- name: slow
  type: python
  source: {type: code, path: slow.py}
  inputs: {i: "${inputs.i}", wait: "${inputs.wait}", expect: "${inputs.expect}"}
"""
# Counts the requests inside the tool at once: each waits until `expect` are inside together
# (or `wait` seconds pass) and answers how many it saw. Served one at a time, the first would
# see 1 and give up after `wait`.
SLOW_TOOL = """
import asyncio
from promptflow.core import tool

STATE = {"inside": 0, "peak": 0}

@tool
async def slow(i: int, wait: float, expect: int) -> int:
    STATE["inside"] += 1
    STATE["peak"] = max(STATE["peak"], STATE["inside"])
    try:
        loop = asyncio.get_running_loop()
        end = loop.time() + wait
        while STATE["peak"] < expect and loop.time() < end:
            await asyncio.sleep(0.01)
        return STATE["peak"]
    finally:
        STATE["inside"] -= 1
"""


# --------------------------------------------------------------------------- a real server

class Running:
    """A uvicorn server for an ASGI app on a free 127.0.0.1 port, in a thread."""

    def __init__(self, asgi, **config) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.bind(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.server = uvicorn.Server(uvicorn.Config(asgi, log_level="warning", **config))
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self.sock]},
                                       daemon=True)

    def __enter__(self) -> Running:
        self.thread.start()
        deadline = time.monotonic() + 20
        while not self.server.started:
            assert self.thread.is_alive() and time.monotonic() < deadline, "server did not start"
            time.sleep(0.02)
        return self

    def __exit__(self, *exc) -> None:
        self.server.should_exit = True
        self.thread.join(30)
        self.sock.close()

    def request(self, method: str, path: str, body=None, headers=None, raw: bytes | None = None,
                timeout: float = 30):
        return request(self.port, method, path, body, headers, raw, timeout)

    def healthy(self) -> bool:
        status, _, data = self.request("GET", "/health")
        return status == 200 and json.loads(data)["status"] == "Healthy"


def request(port, method, path, body=None, headers=None, raw=None, timeout=30):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        payload = raw if raw is not None else (None if body is None else json.dumps(body).encode())
        conn.request(method, path, body=payload, headers=headers or {})
        response = conn.getresponse()
        return response.status, dict(response.getheaders()), response.read()
    finally:
        conn.close()


def error_of(data: bytes) -> dict:
    body = json.loads(data)
    assert set(body) == {"error"} and set(body["error"]) == {"code", "message"}, body
    return body["error"]


@pytest.fixture(autouse=True)
def home(tmp_path, monkeypatch):
    monkeypatch.setenv("PFKIT_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("PFKIT_API_KEYS", raising=False)
    monkeypatch.delenv("PFKIT_API_KEYS_FILE", raising=False)
    monkeypatch.delenv("PFKIT_CACHE", raising=False)


@pytest.fixture
def py_flow(make_flow):
    return make_flow({"flow.dag.yaml": PY_FLOW, "shout.py": SHOUT}, name="shouter")


# --------------------------------------------------------------------------- /score

def test_score_answers_outputs_without_evaluation_only_fields(py_flow):
    with Running(app(py_flow)) as server:
        status, headers, data = server.request("POST", "/score", {"text": "hi"})
        assert status == 200 and headers["content-type"].startswith("application/json")
        assert json.loads(data) == {"echo": "HI!HI!", "times": 2}
        status, _, data = server.request("POST", "/score", {"text": "yo", "n": "3"},
                                         headers={"Accept": "application/json"})
        assert status == 200 and json.loads(data) == {"echo": "YO!YO!YO!", "times": 3}
        assert server.healthy()


def test_bad_requests_name_the_field_and_leave_the_server_healthy(py_flow):
    with Running(app(py_flow, max_body_bytes=4096)) as server:
        status, _, data = server.request("POST", "/score", {"n": 1})
        assert status == 400 and "['text']" in error_of(data)["message"]
        assert server.healthy()
        status, _, data = server.request("POST", "/score", {"text": "a", "n": "many"})
        error = error_of(data)
        assert status == 400 and "'n'" in error["message"] and "int" in error["message"]
        assert "line" not in error["message"]  # no batch wording for a request
        assert server.healthy()
        status, _, data = server.request("POST", "/score", {"text": "a", "n": [1]})
        assert status == 400 and "'n'" in error_of(data)["message"]
        status, _, data = server.request("POST", "/score", raw=b'{"text": "a",')
        assert status == 400 and error_of(data)["code"] == "InvalidJson"
        assert server.healthy()
        status, _, data = server.request("POST", "/score", raw=b'["text"]')
        assert status == 400 and "JSON object" in error_of(data)["message"]
        status, _, data = server.request("POST", "/score", raw=b"[" * 100_00 + b"]" * 100_00)
        assert status in (400, 413)
        assert server.healthy()
        status, _, data = server.request("POST", "/score", {"text": "x" * 10_000})
        assert status == 413 and error_of(data)["code"] == "RequestTooLarge"
        assert server.healthy()


def test_a_huge_body_without_content_length_is_cut_off(py_flow):
    with Running(app(py_flow, max_body_bytes=64 * 1024)) as server:
        conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
        conn.putrequest("POST", "/score")
        conn.putheader("Transfer-Encoding", "chunked")
        conn.endheaders()
        chunk = b"x" * 16384
        try:
            for _ in range(64):  # 1 MiB, far past the limit
                conn.send(b"%x\r\n%s\r\n" % (len(chunk), chunk))
            conn.send(b"0\r\n\r\n")
        except (BrokenPipeError, ConnectionResetError):
            pass  # the server may answer and close before the rest is sent
        response = conn.getresponse()
        assert response.status == 413
        assert error_of(response.read())["code"] == "RequestTooLarge"
        conn.close()
        assert server.healthy()


def test_unknown_paths_and_methods_get_json_errors(py_flow):
    with Running(app(py_flow)) as server:
        status, _, data = server.request("GET", "/nowhere")
        assert status == 404 and error_of(data)["code"] == "NotFound"
        status, _, data = server.request("GET", "/score")
        assert status == 405 and error_of(data)["code"] == "MethodNotAllowed"
        assert server.healthy()


def test_a_node_failure_is_500_without_stack_trace_or_secret(py_flow):
    _secrets.register("sk-serve-test-secret-0123456789")
    with Running(app(py_flow)) as server:
        status, headers, data = server.request("POST", "/score", {"text": "fail"},
                                               headers={"x-request-id": "req-42"})
        assert status == 500 and headers["x-request-id"] == "req-42"
        error = error_of(data)
        assert "cannot shout" in error["message"] and "shout" in error["message"]
        assert "sk-serve-test-secret" not in data.decode()
        assert "Traceback" not in data.decode() and 'File "' not in data.decode()
        assert server.healthy()
        status, _, data = server.request("POST", "/score", {"text": "ok"})
        assert status == 200


def test_the_request_timeout_answers_504(make_flow):
    folder = make_flow({"flow.dag.yaml": SLOW_FLOW, "slow.py": SLOW_TOOL}, name="slowpoke")
    with Running(app(folder, timeout=0.3)) as server:
        status, _, data = server.request("POST", "/score", {"i": 1, "wait": 20, "expect": 2})
        assert status == 504 and error_of(data)["code"] == "RequestTimeout"
        assert server.healthy()


def test_unacceptable_accept_is_406(py_flow):
    with Running(app(py_flow)) as server:
        status, _, data = server.request("POST", "/score", {"text": "a"},
                                         headers={"Accept": "text/html"})
        error = error_of(data)
        assert status == 406 and "text/html" in error["message"]
        status, _, data = server.request("POST", "/score", {"text": "a"},
                                         headers={"Accept": "text/html, */*;q=0.1"})
        assert status == 200
        assert server.healthy()


# --------------------------------------------------------------------------- streaming

def sse_events(data: bytes) -> list[dict]:
    text = data.decode()
    assert text.endswith("\n\n")
    events = [block for block in text.split("\n\n") if block]
    assert all(block.startswith("data: ") for block in events), text
    return [json.loads(block[len("data: "):]) for block in events]


def test_a_streamed_output_is_sent_as_server_sent_events(make_flow):
    folder = make_flow({"flow.dag.yaml": STREAM_FLOW, "count.py": COUNT_TOOL,
                         "words.py": WORDS_TOOL}, name="streamer")
    with Running(app(folder)) as server:
        status, headers, data = server.request("POST", "/score", {"text": "one two three"},
                                               headers={"Accept": "text/event-stream"})
        assert status == 200 and headers["content-type"].startswith("text/event-stream")
        events = sse_events(data)
        # promptflow's order: the other fields first, then one event per chunk
        assert events == [{"question": "one two three", "count": 3}, {"answer": "one "},
                          {"answer": "two "}, {"answer": "three "}]
        status, headers, data = server.request("POST", "/score", {"text": "one two"})
        assert status == 200 and json.loads(data) == {"answer": "one two ", "question": "one two",
                                                      "count": 2}
        # a stream that fails after its first chunk ends with an error event
        status, _, data = server.request("POST", "/score", {"text": "a boom"},
                                         headers={"Accept": "text/event-stream"})
        events = sse_events(data)
        assert events[1] == {"answer": "a "}
        assert "exploded mid-stream" in events[-1]["error"]["message"]
        assert server.healthy()


def test_event_stream_without_a_streamed_output_is_one_event(py_flow):
    with Running(app(py_flow)) as server:
        status, headers, data = server.request("POST", "/score", {"text": "a"},
                                               headers={"Accept": "text/event-stream"})
        assert status == 200 and sse_events(data) == [{"echo": "A!A!", "times": 2}]
        status, headers, data = server.request(
            "POST", "/score", {"text": "a"},
            headers={"Accept": "text/event-stream, application/json"})
        assert headers["content-type"].startswith("application/json")
        status, _, data = server.request("POST", "/score", {"n": 1},
                                         headers={"Accept": "text/event-stream"})
        assert status == 400 and "['text']" in error_of(data)["message"]


# --------------------------------------------------------------------------- concurrency

def test_many_slow_requests_run_at_once(make_flow):
    folder = make_flow({"flow.dag.yaml": SLOW_FLOW, "slow.py": SLOW_TOOL}, name="slowpoke")
    n = 24
    with Running(app(folder)) as server:
        with ThreadPoolExecutor(n) as pool:
            answers = list(pool.map(
                lambda i: server.request("POST", "/score", {"i": i, "wait": 20, "expect": n}),
                range(n)))
        assert [status for status, _, _ in answers] == [200] * n
        # every request saw all n inside the tool together: none waited for another
        assert [json.loads(data)["seen"] for _, _, data in answers] == [n] * n
        assert server.healthy()


# --------------------------------------------------------------------------- auth

def test_api_keys_are_required_and_never_echoed(py_flow, tmp_path, monkeypatch):
    key, other = "k-serve-0123456789abcdef", "k-serve-fedcba9876543210"
    keys = tmp_path / "keys.txt"
    keys.write_text(f"# production\n{key}\n")
    monkeypatch.setenv("PFKIT_API_KEYS", other)
    with Running(app(py_flow, api_keys_file=keys)) as server:
        for headers in ({}, {"Authorization": "Bearer wrong-key-0123456789"},
                        {"Authorization": key}, {"Authorization": f"Basic {key}"}):
            status, answer_headers, data = server.request("POST", "/score", {"text": "a"},
                                                          headers=headers)
            assert status == 401 and error_of(data)["code"] == "Unauthorized"
            assert answer_headers.get("www-authenticate") == "Bearer"
            assert key not in data.decode()
        for good in (key, other):
            status, _, data = server.request("POST", "/score", {"text": "a"},
                                             headers={"Authorization": f"Bearer {good}"})
            assert status == 200
        for path in ("/metrics", "/swagger.json", "/docs"):
            assert server.request("GET", path)[0] == 401
        status, _, data = server.request("POST", "/feedback", {"good": True})
        assert status == 401
        assert server.healthy()  # /health and /version stay open for health checks
        assert server.request("GET", "/version")[0] == 200
        swagger = json.loads(server.request("GET", "/swagger.json", headers={
            "Authorization": f"Bearer {key}"})[2])
        assert swagger["components"]["securitySchemes"]["bearerAuth"]["scheme"] == "bearer"


def test_short_api_keys_are_refused(py_flow):
    from pfkit.errors import UserError

    with pytest.raises(UserError, match="shorter than"):
        app(py_flow, api_keys=["abc"])


# --------------------------------------------------------------------------- the other endpoints

def test_health_version_swagger_docs_feedback_metrics(py_flow, tmp_path, monkeypatch):
    monkeypatch.setenv("BUILD_INFO", '{"commit": "abc123"}')
    feedback = tmp_path / "feedback.jsonl"
    with Running(app(py_flow, feedback_file=feedback)) as server:
        status, _, data = server.request("GET", "/health")
        assert status == 200 and json.loads(data)["status"] == "Healthy"
        version = json.loads(server.request("GET", "/version")[2])
        assert version["build_info"] == {"commit": "abc123"} and version["version"]

        swagger = json.loads(server.request("GET", "/swagger.json")[2])
        assert swagger["info"]["x-flow-name"] == "shouter"
        score = swagger["paths"]["/score"]["post"]
        schema = score["requestBody"]["content"]["application/json"]["schema"]
        assert schema["required"] == ["text"]  # inputs with defaults are optional
        assert schema["properties"]["n"] == {"type": "integer", "default": 2}
        assert schema["properties"]["text"]["description"] == "what to shout"
        outputs = score["responses"]["200"]["content"]["application/json"]["schema"]
        assert set(outputs["properties"]) == {"echo", "times"}  # no evaluation_only output
        assert "/feedback" in swagger["paths"]

        status, headers, page = server.request("GET", "/docs")
        html = page.decode()
        assert status == 200 and headers["content-type"].startswith("text/html")
        assert "what to shout" in html and "<code>text</code>" in html
        assert "<script src" not in html and "http://" not in html and "https://" not in html
        assert "default-src 'none'" in headers["content-security-policy"]

        status, _, data = server.request("POST", "/feedback", {"thumbs": "up"},
                                         headers={"x-request-id": "req-7"})
        assert status == 200 and json.loads(data) == {"status": "Feedback received."}
        record = json.loads(feedback.read_text().splitlines()[0])
        assert record["feedback"] == {"thumbs": "up"} and record["x-request-id"] == "req-7"
        status, _, data = server.request("POST", "/feedback", raw=b"{nope")
        assert status == 400

        server.request("POST", "/score", {"text": "a"})
        server.request("POST", "/score", {"n": 1})
        status, headers, data = server.request("GET", "/metrics")
        text = data.decode()
        assert status == 200 and headers["content-type"].startswith("text/plain")
        assert 'pfkit_requests_total{endpoint="score",flow="shouter",status="200"' in text
        assert 'status="400"' in text
        assert "pfkit_request_duration_seconds_bucket" in text
        assert 'pfkit_errors_total{code="UserError"' in text
        assert "pfkit_feedback_total" in text
        assert server.healthy()


def test_docs_page_escapes_the_flow_description(make_flow):
    flow = PY_FLOW.replace("what to shout", "<script>alert(1)</script>")
    folder = make_flow({"flow.dag.yaml": flow, "shout.py": SHOUT}, name="escaper")
    with Running(app(folder)) as server:
        page = server.request("GET", "/docs")[2].decode()
        assert "<script>alert(1)</script>" not in page
        assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page


def test_an_executable_flow_can_be_served(py_flow):
    import pfkit

    with pfkit.Session() as session:
        flow = session.load_executable(py_flow)
        with Running(app(flow, session=session)) as server:
            status, _, data = server.request("POST", "/score", {"text": "x", "n": 1})
            assert status == 200 and json.loads(data)["echo"] == "X!"


def test_flows_reading_outside_their_folder_are_refused(make_flow, tmp_path):
    from pfkit.errors import FlowValidationError

    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "elsewhere" / "shout.py").write_text(SHOUT)
    flow = PY_FLOW.replace("path: shout.py", "path: ../elsewhere/shout.py")
    folder = make_flow({"flow.dag.yaml": flow}, name="leaky")
    with pytest.raises(FlowValidationError, match="outside the flow folder"):
        app(folder)
    with Running(app(folder, allow_outside_paths=True)) as server:
        assert server.request("POST", "/score", {"text": "a"})[0] == 200


# --------------------------------------------------------------------------- an llm flow

LLM_FLOW = """
inputs:
  question: {type: string}
outputs:
  answer: {type: string, reference: "${chat.output}"}
nodes:
- name: chat
  type: llm
  source: {type: code, path: chat.jinja2}
  connection: served_llm
  api: chat
  inputs:
    model: gpt-4o-mini
    question: ${inputs.question}
"""


def test_an_llm_flow_on_the_test_server_counts_tokens_by_node(make_flow):
    from pfkit.connections._store import ConnectionStore
    from pfkit.testing import TestServer

    folder = make_flow({"flow.dag.yaml": LLM_FLOW, "chat.jinja2": "# user:\n{{question}}\n"},
                       name="asker")
    with TestServer() as llm:
        ConnectionStore().create({"name": "served_llm", "type": "open_ai",
                                  "api_key": "sk-served-llm-key-0123456789",
                                  "base_url": llm.base_url})
        with Running(app(folder)) as server:
            status, _, data = server.request("POST", "/score", {"question": "what is up"})
            assert status == 200 and "what is up" in json.loads(data)["answer"]
            text = server.request("GET", "/metrics")[2].decode()
            assert 'pfkit_tokens_total{flow="asker",kind="prompt",node="chat"' in text
            assert 'kind="completion",node="chat"' in text
            llm.set_faults(expected_api_key="sk-another-key-000000")  # the model refuses ours
            status, _, data = server.request("POST", "/score", {"question": "again"})
            assert status == 500 and error_of(data)["message"]
            assert "sk-served-llm-key" not in data.decode()
            assert server.healthy()


# --------------------------------------------------------------------------- the command

def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_healthy(port: int, process: subprocess.Popen, seconds: float = 60) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        assert process.poll() is None, process.stderr.read().decode() if process.stderr else ""
        try:
            if request(port, "GET", "/health", timeout=2)[0] == 200:
                return
        except OSError:
            pass
        time.sleep(0.1)
    raise AssertionError("the server did not become healthy")


def test_pfkit_flow_serve_finishes_requests_in_flight_on_sigterm(make_flow, tmp_path):
    folder = make_flow({"flow.dag.yaml": SLOW_FLOW, "slow.py": SLOW_TOOL}, name="slowpoke")
    port = free_port()
    env = {**os.environ, "PFKIT_HOME": str(tmp_path / "home")}
    process = subprocess.Popen(
        [sys.executable, "-m", "pfkit", "flow", "serve", "--source", str(folder), "--port",
         str(port)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, cwd=tmp_path)
    try:
        wait_healthy(port, process)
        with ThreadPoolExecutor(1) as pool:
            # waits its full 1.5 s in the tool (it expects a second request that never comes)
            pending = pool.submit(request, port, "POST", "/score",
                                  {"i": 1, "wait": 1.5, "expect": 2})
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline:
                metrics = request(port, "GET", "/metrics")[2].decode()
                if any(line.startswith("pfkit_requests_in_flight") and line.endswith(" 2.0")
                       for line in metrics.splitlines()):
                    break  # the /score call and this scrape are both in flight
                time.sleep(0.02)
            process.send_signal(signal.SIGTERM)
            status, _, data = pending.result(30)
        assert status == 200 and json.loads(data) == {"seen": 1}
        assert process.wait(30) in (0, -signal.SIGTERM)  # uvicorn re-raises the signal after
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


def test_pfkit_flow_serve_reports_a_broken_flow_without_a_traceback(make_flow, tmp_path):
    folder = make_flow({"flow.dag.yaml": PY_FLOW.replace("shout.py", "missing.py")},
                       name="broken")
    result = subprocess.run(
        [sys.executable, "-m", "pfkit", "flow", "serve", "--source", str(folder), "--port",
         str(free_port())], capture_output=True, text=True, timeout=60,
        env={**os.environ, "PFKIT_HOME": str(tmp_path / "home")})
    assert result.returncode == 1
    assert "missing.py" in result.stderr and "Traceback" not in result.stderr


def test_an_llm_stream_is_relayed_chunk_by_chunk(make_flow):
    from pfkit.connections._store import ConnectionStore
    from pfkit.testing import TestServer

    flow = LLM_FLOW.replace("    model: gpt-4o-mini\n", "    model: gpt-4o-mini\n    stream: true\n")
    folder = make_flow({"flow.dag.yaml": flow, "chat.jinja2": "# user:\n{{question}}\n"},
                       name="streamer_llm")
    with TestServer(stream_chunk_chars=4) as llm:
        ConnectionStore().create({"name": "served_llm", "type": "open_ai",
                                  "api_key": "sk-served-llm-key-0123456789",
                                  "base_url": llm.base_url})
        with Running(app(folder)) as server:
            status, _, data = server.request("POST", "/score",
                                             {"question": "tell me a long story"})
            joined = json.loads(data)["answer"]
            assert status == 200 and "tell me a long story" in joined
            status, headers, data = server.request("POST", "/score",
                                                   {"question": "tell me a long story"},
                                                   headers={"Accept": "text/event-stream"})
            assert status == 200 and headers["content-type"].startswith("text/event-stream")
            events = sse_events(data)
            assert len(events) > 3 and all(set(e) == {"answer"} for e in events)
            assert all(len(e["answer"]) <= 4 for e in events)  # the model's own chunks
            assert "".join(e["answer"] for e in events) == joined
            assert server.healthy()


SYNC_SLOW_TOOL = """
import threading, time
from promptflow.core import tool

LOCK = threading.Lock()
STATE = {"inside": 0, "peak": 0}

@tool
def slow(i: int, wait: float, expect: int) -> int:
    with LOCK:
        STATE["inside"] += 1
        STATE["peak"] = max(STATE["peak"], STATE["inside"])
    try:
        end = time.monotonic() + wait
        while STATE["peak"] < expect and time.monotonic() < end:
            time.sleep(0.01)
        return STATE["peak"]
    finally:
        with LOCK:
            STATE["inside"] -= 1
"""


def test_many_slow_sync_tool_requests_run_at_once(make_flow):
    """A blocking (sync) tool runs in threads: requests still overlap."""
    folder = make_flow({"flow.dag.yaml": SLOW_FLOW, "slow.py": SYNC_SLOW_TOOL}, name="sleeper")
    n = 12
    with Running(app(folder)) as server:
        with ThreadPoolExecutor(n) as pool:
            answers = list(pool.map(
                lambda i: server.request("POST", "/score", {"i": i, "wait": 20, "expect": n}),
                range(n)))
        assert [status for status, _, _ in answers] == [200] * n
        assert [json.loads(data)["seen"] for _, _, data in answers] == [n] * n
        assert server.healthy()


FIXTURES = ROOT / "tests" / "flows"


def test_flex_flows_and_prompty_files_are_served_too():
    from pfkit.testing import TestServer

    folder = FIXTURES / "flex_function_basic"
    expected = json.loads((folder / "expected.json").read_text())["lines"]
    lines = json.loads((folder / "fixture.json").read_text())["lines"]
    with Running(app(folder)) as server:
        for inputs, want in zip(lines, expected, strict=True):
            status, _, data = server.request("POST", "/score", inputs)
            assert status == 200 and json.loads(data) == want["output"]  # promptflow's answer
        swagger = json.loads(server.request("GET", "/swagger.json")[2])
        schema = swagger["paths"]["/score"]["post"]["requestBody"]["content"]
        assert "name" in schema["application/json"]["schema"]["properties"]
        assert server.healthy()
    with Running(app(FIXTURES / "flex_generator_output")) as server:  # a flex generator
        status, headers, data = server.request("POST", "/score", {"n": 3},
                                               headers={"Accept": "text/event-stream"})
        assert status == 200 and sse_events(data) == [{"output": "0,"}, {"output": "1,"},
                                                      {"output": "2,"}]
        assert json.loads(server.request("POST", "/score", {"n": 2})[2]) == {"output": "0,1,"}
    prompty = FIXTURES / "prompty_basic_chat" / "chat.prompty"
    with TestServer() as llm, pytest.MonkeyPatch.context() as patch:
        patch.setenv("ECHO_BASE_URL", llm.base_url)
        patch.setenv("ECHO_API_KEY", "sk-prompty-serve-0123456789")
        with Running(app(prompty)) as server:
            status, _, data = server.request("POST", "/score", {"question": "Hi from HTTP?"})
            assert status == 200 and "Hi from HTTP?" in json.dumps(json.loads(data))
            status, _, data = server.request("POST", "/score", {})
            assert status == 400 and "question" in error_of(data)["message"]
            assert server.healthy()
