"""The worker-process line runner: same records as the in-process runner, and exact under
``kill -9`` of a worker or of the parent. Real processes throughout."""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from fixture_cases import fixture_connection, load_cases

from pfkit.errors import ExecutionError, PfkitError, UserError
from pfkit.runs._runner import FinishedLine, InProcessRunner
from pfkit.runs._workers import WorkerFlowSpec, WorkerRunner, default_workers

ROOT = Path(__file__).resolve().parent.parent
TIMES = ("start_time", "end_time", "duration")
ADDRESS = re.compile(r"at 0x[0-9a-f]+|(?<= in )\d+\.\d+ s\b")  # addresses; "after 3 attempts in 1.1 s"


def fixture_models():
    """The fixtures' models (as tests/fixture_cases.py gives them), for llm nodes and for the
    promptflow-tools functions a tool calls with a connection. Called in each worker process
    (picklable by name) and, for the in-process side, in the task that runs the lines."""
    from pfkit.testing import EchoModel

    models = {"echo": EchoModel("openai"), "echo_azure": EchoModel("azure_openai")}
    try:
        from pfkit._compat._llm_tools import connection_models
    except ImportError:  # pragma: no cover - an older compat layer
        pass
    else:
        connection_models.set(lambda name, conn: models.get(name))
    return models, fixture_connection


def comparable(line: FinishedLine) -> dict:
    """Everything a runner hands the store for a line, without the clock (and without the
    memory addresses in the reprs of values that are not JSON)."""
    record = json.loads(ADDRESS.sub("at 0x?", line.record_json))
    for key in TIMES:
        record.pop(key, None)
    nodes = {}
    for name, text in line.node_json.items():
        node = json.loads(ADDRESS.sub("at 0x?", text))
        node.pop("duration", None)
        nodes[name] = node
    return {"record": record, "nodes": nodes, "status": line.status, "error": line.error,
            "outputs": plain(line.outputs), "aggregation_values": plain(line.aggregation_values),
            "usage": line.usage}


def plain(value):
    return json.loads(ADDRESS.sub("at 0x?", json.dumps(value, default=repr, allow_nan=True)))


def alive(pid: int) -> bool:
    """True while the process exists and is not a zombie."""
    try:
        with open(f"/proc/{pid}/status", encoding="utf-8") as fh:
            for row in fh:
                if row.startswith("State:"):
                    return "Z" not in row.split()[1]
    except FileNotFoundError:
        return False
    return True


def wait_gone(pids, timeout: float = 10.0) -> list[int]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        left = [pid for pid in pids if alive(pid)]
        if not left:
            return []
        time.sleep(0.02)
    return [pid for pid in pids if alive(pid)]


async def collect(runner, items) -> dict[int, FinishedLine]:
    got: dict[int, FinishedLine] = {}

    def sink(line: FinishedLine) -> None:
        assert line.line_number not in got, f"line {line.line_number} sunk twice"
        got[line.line_number] = line

    await runner.run(iter(items), sink)
    return got


def load(folder, **kwargs):
    """The flow as the parent of a run loads it."""
    from pfkit.engine import load_executable

    return load_executable(folder, **kwargs)


async def aggregate(flow, lines: dict[int, FinishedLine]):
    """What the parent does with the lines' aggregation values after the run."""
    collected = flow.aggregation_collector()
    for number in sorted(lines):
        if lines[number].aggregation_values is not None:
            collected.add(number, lines[number].aggregation_values)
    result = await flow.aggregate(collected)
    return result.status, plain(result.metrics), plain(result.outputs)


# --------------------------------------------------------------------------- same records

def test_every_fixture_flow_gives_the_same_records_in_workers_and_in_process():
    cases = []
    for case in load_cases():
        if case.invalid or not case.lines:
            continue
        models, connections = fixture_models()
        try:
            flow = load(case.folder, variant=case.variant, models=models, connections=connections)
        except PfkitError:
            continue
        cases.append((case, flow))
    assert len(cases) >= 30, "the fixture flows that load must all be compared"

    async def compare(case, flow, gate, one_flow_here):
        items = [(i, dict(inputs)) for i, inputs in enumerate(case.lines)]
        fixture_models()  # direct tool calls of this task's lines get the echo models
        async with one_flow_here:  # one flow at a time in this process: plain comparisons
            expected = await collect(InProcessRunner(flow, concurrency=4), items)
            expected_agg = await aggregate(flow, expected) if flow.has_aggregation else None
        spec = WorkerFlowSpec(str(case.folder), variant=case.variant, models=fixture_models)
        async with gate:
            got = await collect(WorkerRunner(spec, workers=1, concurrency=4), items)
        async with one_flow_here:
            got_agg = await aggregate(flow, got) if flow.has_aggregation else None
        problems = []
        if sorted(got) != sorted(expected):
            problems.append(f"lines {sorted(got)} != {sorted(expected)}")
        for number in expected:
            if number in got and comparable(got[number]) != comparable(expected[number]):
                problems.append(f"line {number}: {comparable(got[number])} != "
                                f"{comparable(expected[number])}")
        if got_agg != expected_agg:
            problems.append(f"aggregation {got_agg} != {expected_agg}")
        return case.name, problems

    async def main():
        gate, one_flow_here = asyncio.Semaphore(4), asyncio.Lock()
        return await asyncio.gather(*(compare(case, flow, gate, one_flow_here)
                                      for case, flow in cases))

    results = asyncio.run(main())
    failures = {name: problems for name, problems in results if problems}
    print(sorted(failures))
    assert not failures, json.dumps(failures, indent=1, default=str)[:6000]


def test_in_process_lines_driven_as_the_cli_drives_them_match_the_workers():
    """``pfkit run create`` runs in-process lines on pfkit's background loop (run_sync); a tool
    there that calls promptflow.tools functions (which run their own loop in a helper thread)
    must still have its model usage recorded, as in a worker process."""
    from pfkit._aio import run_sync

    folder = ROOT / "tests" / "flows" / "tools_direct_openai_calls"
    case = next(c for c in load_cases() if c.folder == folder)
    items = [(i, dict(inputs)) for i, inputs in enumerate(case.lines)]
    models, connections = fixture_models()
    flow = load(folder, models=models, connections=connections)

    async def in_process():
        fixture_models()
        return await collect(InProcessRunner(flow, concurrency=4), items)

    expected = run_sync(in_process())
    spec = WorkerFlowSpec(str(folder), models=fixture_models)
    got = asyncio.run(collect(WorkerRunner(spec, workers=1, concurrency=4), items))
    assert expected[0].usage and expected[0].usage["total_tokens"] > 0
    assert {n: comparable(line) for n, line in got.items()} == \
        {n: comparable(line) for n, line in expected.items()}


COUNT_FLOW = """inputs:
  x: {type: int}
outputs:
  y: {type: int, reference: "${square.output}"}
nodes:
- name: square
  type: python
  source: {type: code, path: square.py}
  inputs: {x: "${inputs.x}"}
- name: total
  type: python
  source: {type: code, path: total.py}
  inputs: {ys: "${square.output}"}
  aggregation: true
"""
SQUARE = """import os
from promptflow.core import tool

@tool
def square(x: int) -> int:
    if x % 7 == 3:
        raise ValueError(f"no {x}")
    print("printed by a tool")  # must not disturb the workers' pipes
    return x * x
"""
TOTAL = """from promptflow.core import tool, log_metric

@tool
def total(ys: list):
    log_metric("n", len(ys))
    log_metric("sum", sum(ys))
    return sum(ys)
"""


def test_two_workers_split_the_lines_and_every_line_is_sunk_once(make_flow):
    folder = make_flow({"flow.dag.yaml": COUNT_FLOW, "square.py": SQUARE, "total.py": TOTAL})
    items = [(i, {"x": i}) for i in range(300)]
    runner = WorkerRunner(WorkerFlowSpec(str(folder)), workers=2, concurrency=8)
    got = asyncio.run(collect(runner, items))
    assert sorted(got) == list(range(300))
    assert len(runner.pids) == 2 and runner.restarts == 0
    assert not wait_gone(runner.pids), "workers exit when the run is done"
    failed = sorted(n for n, line in got.items() if line.status == "Failed")
    assert failed == [n for n in range(300) if n % 7 == 3]
    assert "no 3" in got[3].error["message"]
    assert got[4].outputs == {"y": 16} and got[4].aggregation_values is not None
    flow = load(folder)
    expected = asyncio.run(collect(InProcessRunner(flow, concurrency=8), items))
    assert {n: comparable(line) for n, line in got.items()} == \
        {n: comparable(line) for n, line in expected.items()}
    ok = [n for n in range(300) if n % 7 != 3]
    assert asyncio.run(aggregate(flow, got))[1] == {"n": len(ok), "sum": sum(n * n for n in ok)}


def test_a_sink_that_reads_only_records_gets_no_copy_of_the_outputs(make_flow):
    """``outputs=False`` (a run with no --stream and no observer of its own): the lines'
    records are whole and the same as in-process; FinishedLine.outputs stays empty (workers
    send no copy), while the aggregation values still arrive."""
    folder = make_flow({"flow.dag.yaml": COUNT_FLOW, "square.py": SQUARE, "total.py": TOTAL})
    items = [(i, {"x": i}) for i in range(40)]
    runner = WorkerRunner(WorkerFlowSpec(str(folder)), workers=2, concurrency=4, outputs=False)
    got = asyncio.run(collect(runner, items))
    assert sorted(got) == list(range(40))
    assert got[4].outputs == {} and json.loads(got[4].record_json)["outputs"] == {"y": 16}
    flow = load(folder)
    expected = asyncio.run(collect(InProcessRunner(flow, concurrency=4, outputs=False), items))
    assert expected[4].outputs == {}
    assert {n: comparable(line) for n, line in got.items()} == \
        {n: comparable(line) for n, line in expected.items()}
    ok = [n for n in range(40) if n % 7 != 3]
    assert asyncio.run(aggregate(flow, got))[1] == {"n": len(ok), "sum": sum(n * n for n in ok)}


def test_a_run_with_workers_gives_outputs_to_stream_and_to_its_observers(make_flow, tmp_path,
                                                                         capsys):
    import pfkit
    from pfkit.runs import InMemoryRunStore, RunRequest, create_run

    folder = make_flow({"flow.dag.yaml": COUNT_FLOW, "square.py": SQUARE, "total.py": TOTAL})
    data = tmp_path / "data.jsonl"
    data.write_text("".join(json.dumps({"x": i}) + "\n" for i in range(12)), encoding="utf-8")
    seen = {}

    class Watcher:
        def on_line_end(self, line):
            seen[line.line_number] = line.outputs

    store = InMemoryRunStore()
    run = create_run(RunRequest(flow=str(folder), data=str(data), workers=2, stream=True),
                     observers=[Watcher()], store=store, progress=False)
    assert run.status == "Completed"
    assert seen[5] == {"y": 25} and seen[3] == {}
    assert "line 5 completed {\"y\": 25}" in capsys.readouterr().out
    quiet = pfkit.run(folder, data, workers=2, store=store, progress=False)
    assert [line["y"] for line in quiet.outputs()][:3] == [0, 1, 4]


def test_prestarted_workers_are_used_by_the_run_or_stopped_by_close(make_flow):
    folder = make_flow({"flow.dag.yaml": COUNT_FLOW, "square.py": SQUARE, "total.py": TOTAL})
    runner = WorkerRunner(WorkerFlowSpec(str(folder)), workers=2, concurrency=4)
    runner.prestart()
    started = list(runner.pids)
    assert len(started) == 2 and all(alive(pid) for pid in started)
    got = asyncio.run(collect(runner, [(i, {"x": i}) for i in range(20)]))
    assert sorted(got) == list(range(20)) and runner.pids == started
    unused = WorkerRunner(WorkerFlowSpec(str(folder)), workers=2, concurrency=4)
    unused.prestart()
    unused.close()
    assert not wait_gone(unused.pids, timeout=5)


def test_a_run_asked_for_workers_starts_them_before_it_loads_the_flow(make_flow, tmp_path,
                                                                      monkeypatch):
    """``workers=N`` (N > 1): the processes start first (they bind the flow while the run
    loads it) and the run uses those; a run that fails before its lines stops them."""
    import pfkit
    from pfkit.runs import _workers
    from pfkit.session import Session

    monkeypatch.setenv("PFKIT_HOME", str(tmp_path / "home"))
    folder = make_flow({"flow.dag.yaml": COUNT_FLOW, "square.py": SQUARE, "total.py": TOTAL})
    data = tmp_path / "d.jsonl"
    data.write_text("".join(json.dumps({"x": i}) + "\n" for i in range(30)))
    events, runners = [], []
    real_prestart, real_load = _workers.WorkerRunner.prestart, Session.load_executable

    def prestart(self):
        events.append("prestart")
        runners.append(self)
        real_prestart(self)

    def load_executable(self, *args, **kwargs):
        events.append("load")
        return real_load(self, *args, **kwargs)

    monkeypatch.setattr(_workers.WorkerRunner, "prestart", prestart)
    monkeypatch.setattr(Session, "load_executable", load_executable)
    run = pfkit.run(folder, data, name="early", workers=2, concurrency=4)
    assert run.status == "Completed" and events == ["prestart", "load"]
    assert len(runners[0].pids) == 2  # no other process was started
    assert sorted(r["line_number"] for r in run.lines()) == list(range(30))
    assert run.metrics() == {"n": 30 - 4, "sum": sum(i * i for i in range(30) if i % 7 != 3)}
    with pytest.raises(PfkitError):
        pfkit.run(folder, tmp_path / "missing.jsonl", name="nodata", workers=2)
    assert not wait_gone(runners[-1].pids, timeout=5)


def test_bad_rows_are_failed_lines_and_never_reach_a_worker(make_flow):
    from pfkit.errors import InputError

    folder = make_flow({"flow.dag.yaml": COUNT_FLOW, "square.py": SQUARE, "total.py": TOTAL})
    items = [(0, {"x": 1}), (1, InputError("row 1 has no column 'x'", code="BadRow")),
             (2, {"x": "not a number"}), (3, {"x": 2})]
    got = asyncio.run(collect(WorkerRunner(WorkerFlowSpec(str(folder)), workers=2,
                                           concurrency=2), items))
    assert got[1].status == "Failed" and got[1].error["code"] == "BadRow"
    assert got[2].status == "Failed" and "x" in got[2].error["message"]  # coerced in the worker
    assert got[0].outputs == {"y": 1} and got[3].outputs == {"y": 4}


ODD_FLOW = """inputs:
  x: {type: int}
outputs:
  x: {type: int, reference: "${odd.output.x}"}
nodes:
- name: odd
  type: python
  source: {type: code, path: odd.py}
  inputs: {x: "${inputs.x}"}
- name: count
  type: python
  source: {type: code, path: count.py}
  inputs: {items: "${odd.output}"}
  aggregation: true
"""
ODD = """import threading
from promptflow.core import tool


class Local:  # defined in the flow's script: the parent may not import it by this name
    def __init__(self, x):
        self.x = x

    def __repr__(self):
        return f"Local({self.x})"


@tool
def odd(x: int) -> dict:
    return {"lock": threading.Lock(), "local": Local(x), "x": x}
"""
COUNT = """from promptflow.core import tool, log_metric


@tool
def count(items: list) -> int:
    log_metric("n", len(items))
    log_metric("xs", sum(item["x"] for item in items))
    return len(items)
"""


def test_values_that_cannot_cross_processes_arrive_as_their_records_say(make_flow):
    """A node output that cannot be pickled (a lock) reaches the parent as the line record
    holds it (JSON), as a resumed run's lines do; the records are the same as in-process."""
    folder = make_flow({"flow.dag.yaml": ODD_FLOW, "odd.py": ODD, "count.py": COUNT})
    items = [(i, {"x": i}) for i in range(5)]
    got = asyncio.run(collect(WorkerRunner(WorkerFlowSpec(str(folder)), workers=1,
                                           concurrency=2), items))
    flow = load(folder)
    expected = asyncio.run(collect(InProcessRunner(flow, concurrency=2), items))
    assert {line.status for line in got.values()} == {"Completed"}
    assert {n: comparable(line) for n, line in got.items()} == \
        {n: comparable(line) for n, line in expected.items()}
    assert got[2].outputs == {"x": 2}
    assert got[2].aggregation_values["${odd.output}"]["local"] == "Local(2)"
    assert asyncio.run(aggregate(flow, got))[1] == {"n": 5, "xs": 10}


CONTEXT_FLOW = """inputs:
  x: {type: int}
outputs:
  seen: {type: object, reference: "${look.output}"}
nodes:
- name: look
  type: python
  source: {type: code, path: look.py}
  inputs: {x: "${inputs.x}"}
environment_variables:
  FROM_FLOW: flow-value
"""
LOOK = """import os, sys
from promptflow.core import tool

@tool
def look(x: int) -> dict:
    with open("data.txt", encoding="utf-8") as fh:
        text = fh.read().strip()
    stdin = sys.stdin.read()  # a tool reading stdin gets nothing (not the workers' pipe)
    return {"cwd": os.path.basename(os.getcwd()), "file": text, "stdin": stdin,
            "flow": os.environ.get("FROM_FLOW"), "run": os.environ.get("FROM_RUN")}
"""


def test_workers_see_the_flow_folder_and_environment_as_in_process(make_flow):
    folder = make_flow({"flow.dag.yaml": CONTEXT_FLOW, "look.py": LOOK, "data.txt": "hello\n"},
                       name="ctx_flow")
    spec = WorkerFlowSpec(str(folder), environment={"FROM_RUN": "run-value"})
    got = asyncio.run(collect(WorkerRunner(spec, workers=2, concurrency=2),
                              [(i, {"x": i}) for i in range(4)]))
    assert {line.status for line in got.values()} == {"Completed"}
    assert got[0].outputs["seen"] == {"cwd": "ctx_flow", "file": "hello", "stdin": "",
                                      "flow": "flow-value", "run": "run-value"}


def test_a_flow_that_does_not_load_in_the_worker_fails_the_run_with_its_error():
    folder = ROOT / "tests" / "flows" / "invalid_script_import_error"
    runner = WorkerRunner(WorkerFlowSpec(str(folder)), workers=2, concurrency=2)
    with pytest.raises(PfkitError) as info:
        asyncio.run(collect(runner, [(0, {}), (1, {})]))
    assert "a worker process could not load the flow" in info.value.message
    assert not wait_gone(runner.pids)


def test_invalid_worker_count_is_a_user_error(make_flow):
    with pytest.raises(UserError, match="at least 1"):
        WorkerRunner(WorkerFlowSpec("x"), workers=0)


def test_never_more_workers_than_lines_in_flight_and_concurrency_is_split():
    runner = WorkerRunner(WorkerFlowSpec("x"), workers=4, concurrency=2)
    assert runner.workers == 2
    runner = WorkerRunner(WorkerFlowSpec("x"), workers=3, concurrency=16)
    assert [runner._share(i) for i in range(3)] == [6, 5, 5]


LLM_FLOW = """inputs:
  question: {type: string}
outputs:
  answer: {type: string, reference: "${answer.output}"}
  review: {type: string, reference: "${review.output}"}
nodes:
- name: answer
  type: llm
  source: {type: code, path: answer.jinja2}
  connection: tsrv
  api: chat
  inputs: {model: gpt-4o-mini, temperature: 0, question: "${inputs.question}"}
- name: review
  type: llm
  source: {type: code, path: review.jinja2}
  connection: tsrv
  api: chat
  inputs: {model: gpt-4o-mini, temperature: 0, draft: "${answer.output}"}
"""


def test_llm_lines_over_http_in_workers_share_the_connection_limit(make_flow, tmp_path,
                                                                   monkeypatch):
    from pfkit.testing import TestServer

    folder = make_flow({"flow.dag.yaml": LLM_FLOW,
                        "answer.jinja2": "# user:\n{{question}}\n",
                        "review.jinja2": "# user:\nReview: {{draft}}\n"})
    home = tmp_path / "home"
    monkeypatch.setenv("PFKIT_HOME", str(home))
    items = [(i, {"question": f"What is {i} + {i}?"}) for i in range(24)]
    with TestServer(latency=0.05) as server:
        conn = tmp_path / "tsrv.yaml"
        conn.write_text(f"name: tsrv\ntype: open_ai\napi_key: sk-test-worker-secret\n"
                        f"base_url: {server.base_url}\nmax_concurrency: 2\n", encoding="utf-8")
        made = cli("connection", "create", "--file", str(conn), home=home)
        assert made.returncode == 0, made.stderr
        spec = WorkerFlowSpec(str(folder), pfkit_home=str(home))
        got = asyncio.run(collect(WorkerRunner(spec, workers=2, concurrency=8), items))
        assert server.counters.max_in_flight <= 2, "the workers share the connection's limit"
        assert server.counters.total == 48
        async def in_process():
            try:
                return await collect(InProcessRunner(load(folder), concurrency=8), items)
            finally:
                from pfkit.providers._openai import close_loop_clients

                await close_loop_clients()

        expected = asyncio.run(in_process())
    assert {line.status for line in got.values()} == {"Completed"}
    assert {n: comparable(line) for n, line in got.items()} == \
        {n: comparable(line) for n, line in expected.items()}
    assert got[3].usage and got[3].usage["total_tokens"] > 0
    assert all("sk-test-worker-secret" not in line.record_json for line in got.values())


def test_record_then_replay_with_workers_keeps_every_call_of_the_run(make_flow, tmp_path):
    from pfkit.testing import TestServer

    folder = make_flow({"flow.dag.yaml": LLM_FLOW,
                        "answer.jinja2": "# user:\n{{question}}\n",
                        "review.jinja2": "# user:\nReview: {{draft}}\n"})
    home, data = tmp_path / "home", tmp_path / "data.jsonl"
    data.write_text("".join(json.dumps({"question": f"q{i}?"}) + "\n" for i in range(12)))
    with TestServer(latency=0.01) as server:
        conn = tmp_path / "tsrv.yaml"
        conn.write_text(f"name: tsrv\ntype: open_ai\napi_key: sk-test\n"
                        f"base_url: {server.base_url}\n", encoding="utf-8")
        assert cli("connection", "create", "--file", str(conn), home=home).returncode == 0
        recorded = cli("run", "create", "--flow", str(folder), "--data", str(data), "-n", "rec",
                       "--workers", "2", "--cache", "record", home=home)
        assert recorded.returncode == 0, recorded.stderr
        assert server.counters.total == 24
    cassette = folder / "pfkit.cassette.jsonl"
    assert len(cassette.read_text(encoding="utf-8").splitlines()) == 24, \
        "the cassette holds the calls of every worker"
    replayed = cli("run", "create", "--flow", str(folder), "--data", str(data), "-n", "rep",
                   "--workers", "2", "--cache", "replay", home=home)  # the server is gone
    assert replayed.returncode == 0, replayed.stderr
    assert {r["status"] for r in run_lines(home, "rep")} == {"Completed"}
    shown = json.loads(cli("run", "show", "-n", "rep", home=home).stdout)
    assert shown["properties"]["system_metrics"]["cache"]["hits"] == 24


# --------------------------------------------------------------------------- kill -9

SLOW_FLOW = """inputs:
  x: {type: int}
outputs:
  y: {type: int, reference: "${slow.output}"}
nodes:
- name: slow
  type: python
  source: {type: code, path: slow.py}
  inputs: {x: "${inputs.x}"}
"""
SLOW = """import asyncio, os, signal
from pathlib import Path
from promptflow.core import tool

@tool
async def slow(x: int) -> int:
    await asyncio.sleep(0.02)
    marker = Path(os.environ["KILL_MARKER"]) if os.environ.get("KILL_MARKER") else None
    if marker is not None and x == int(os.environ.get("KILL_AT", -1)) and not marker.exists():
        marker.write_text(str(os.getpid()))
        os.kill(os.getpid(), getattr(signal, os.environ.get("KILL_SIGNAL", "SIGKILL")))
    if os.environ.get("RUN_LOG"):  # one short O_APPEND write per call: atomic across processes
        fd = os.open(os.environ["RUN_LOG"], os.O_WRONLY | os.O_APPEND | os.O_CREAT)
        os.write(fd, f"{x}\\n".encode())
        os.close(fd)
    if os.environ.get("ALWAYS_DIE"):
        os.kill(os.getpid(), signal.SIGKILL)
    if os.environ.get("FREEZE_AT") and x == int(os.environ["FREEZE_AT"]) and not marker.exists():
        marker.write_text(str(os.getpid()))
        os.kill(os.getpid(), signal.SIGSTOP)  # stuck where no timeout of its own can reach
    return x + 1000
"""


def test_a_killed_worker_fails_its_lines_a_replacement_runs_the_rest(make_flow, tmp_path):
    folder = make_flow({"flow.dag.yaml": SLOW_FLOW, "slow.py": SLOW})
    marker = tmp_path / "killed"
    spec = WorkerFlowSpec(str(folder), environment={"KILL_MARKER": str(marker), "KILL_AT": "15"})
    runner = WorkerRunner(spec, workers=2, concurrency=4)
    got = asyncio.run(collect(runner, [(i, {"x": i}) for i in range(60)]))
    assert sorted(got) == list(range(60)), "every line is sunk exactly once"
    killed = int(marker.read_text())
    failed = {n for n, line in got.items() if line.status == "Failed"}
    assert 15 in failed
    for n in failed:
        assert got[n].error["code"] == "WorkerProcessDied"
        assert got[n].error["message"] == (f"worker process {killed} died (SIGKILL) while "
                                           "running this line")
    completed = {n for n, line in got.items() if line.status == "Completed"}
    assert completed == set(range(60)) - failed and len(completed) > 30
    assert all(got[n].outputs == {"y": n + 1000} for n in completed)
    assert runner.restarts == 1 and len(runner.pids) == 3 and killed in runner.pids
    assert not wait_gone(runner.pids)
    # the failed lines, run again (what --resume-from does), complete once each
    again = asyncio.run(collect(WorkerRunner(spec, workers=2, concurrency=4),
                                [(n, {"x": n}) for n in sorted(failed)]))
    assert sorted(again) == sorted(failed)
    assert all(line.status == "Completed" for line in again.values())


def test_a_native_crash_is_named_by_its_signal(make_flow, tmp_path):
    folder = make_flow({"flow.dag.yaml": SLOW_FLOW, "slow.py": SLOW})
    spec = WorkerFlowSpec(str(folder), environment={"KILL_MARKER": str(tmp_path / "m"),
                                                    "KILL_AT": "2", "KILL_SIGNAL": "SIGSEGV"})
    got = asyncio.run(collect(WorkerRunner(spec, workers=1, concurrency=2),
                              [(i, {"x": i}) for i in range(40)]))
    assert "died (SIGSEGV) while running this line" in got[2].error["message"]
    assert sorted(got) == list(range(40)) and got[39].status == "Completed"


def test_a_frozen_worker_is_killed_after_the_line_timeout_and_replaced(make_flow, tmp_path):
    folder = make_flow({"flow.dag.yaml": SLOW_FLOW, "slow.py": SLOW})
    marker = tmp_path / "frozen"
    spec = WorkerFlowSpec(str(folder), environment={"KILL_MARKER": str(marker), "FREEZE_AT": "3"})
    runner = WorkerRunner(spec, workers=1, concurrency=2, timeout=0.5, hung_grace=0.5)
    got = asyncio.run(collect(runner, [(i, {"x": i}) for i in range(30)]))
    frozen = int(marker.read_text())
    assert got[3].error["message"] == (f"worker process {frozen} died (SIGKILL) (it sent nothing "
                                       "for 1 s and was stopped) while running this line")
    assert sorted(got) == list(range(30)) and got[29].status == "Completed"
    assert not wait_gone(runner.pids)


def test_workers_dying_again_and_again_stop_the_run_with_a_clear_error(make_flow):
    folder = make_flow({"flow.dag.yaml": SLOW_FLOW, "slow.py": SLOW})
    spec = WorkerFlowSpec(str(folder), environment={"ALWAYS_DIE": "1"})
    runner = WorkerRunner(spec, workers=2, concurrency=2, max_restarts=3)
    sunk: list[FinishedLine] = []
    with pytest.raises(ExecutionError) as info:
        asyncio.run(runner.run(iter([(i, {"x": i}) for i in range(50)]), sunk.append))
    assert info.value.code == "WorkerRestartsExhausted"
    assert "died 4 times" in info.value.message and "--resume-from" in info.value.hint
    assert sunk and all(line.error["code"] == "WorkerProcessDied" for line in sunk)
    assert len({line.line_number for line in sunk}) == len(sunk) < 50
    assert not wait_gone(runner.pids)


def test_cancelling_the_run_stops_the_workers_at_once(make_flow):
    folder = make_flow({"flow.dag.yaml": SLOW_FLOW, "slow.py": SLOW})
    runner = WorkerRunner(WorkerFlowSpec(str(folder)), workers=2, concurrency=4)
    sunk: list[FinishedLine] = []

    async def main():
        task = asyncio.ensure_future(runner.run(iter([(i, {"x": i}) for i in range(10_000)]),
                                                sunk.append))
        while len(sunk) < 10:
            await asyncio.sleep(0.01)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(main())
    assert 10 <= len(sunk) < 10_000
    assert not wait_gone(runner.pids, timeout=5)


DRIVER = """
import asyncio, json, os, sys
from pfkit.runs._workers import WorkerFlowSpec, WorkerRunner

folder, out, pids = sys.argv[1:4]
runner = WorkerRunner(WorkerFlowSpec(folder), workers=2, concurrency=4)

async def main():
    fh = open(out, "a", encoding="utf-8")
    def sink(line):
        if not os.path.exists(pids):
            with open(pids + ".tmp", "w") as p:
                p.write(json.dumps(runner.pids))
            os.replace(pids + ".tmp", pids)
        fh.write(line.record_json + "\\n")
        fh.flush()
    await runner.run(iter([(i, {"x": i}) for i in range(100_000)]), sink)

asyncio.run(main())
"""


def test_a_killed_parent_leaves_no_worker_behind(make_flow, tmp_path):
    folder = make_flow({"flow.dag.yaml": SLOW_FLOW, "slow.py": SLOW})
    driver = tmp_path / "driver.py"
    driver.write_text(DRIVER, encoding="utf-8")
    out, pids_file = tmp_path / "lines.jsonl", tmp_path / "pids.json"
    proc = subprocess.Popen([sys.executable, str(driver), str(folder), str(out), str(pids_file)],
                            cwd=ROOT)
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not (
                pids_file.is_file() and out.read_text().count("\n") >= 20):
            time.sleep(0.02)
        pids = json.loads(pids_file.read_text())
        assert len(pids) == 2 and all(alive(pid) for pid in pids)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(10)
        assert not wait_gone(pids, timeout=5), "workers must exit when their parent is gone"
    finally:
        if proc.poll() is None:
            proc.kill()
    lines = [json.loads(row) for row in out.read_text().splitlines() if row.endswith("}")]
    numbers = [line["line_number"] for line in lines]
    assert len(numbers) == len(set(numbers)) >= 20


# --------------------------------------------------------------------------- through the CLI

def cli(*args: str, home: Path, env: dict | None = None, timeout: float = 120):
    return subprocess.run([sys.executable, "-m", "pfkit", *args], capture_output=True, text=True,
                          cwd=ROOT, env={**os.environ, "PFKIT_HOME": str(home), **(env or {})},
                          timeout=timeout)


def run_lines(home: Path, name: str) -> list[dict]:
    path = home / "runs" / name / "lines.jsonl"
    return [json.loads(row) for row in path.read_text(encoding="utf-8").splitlines()
            if row.endswith("}")]


def executions(log: Path) -> list[int]:
    return [int(x) for x in log.read_text().split()] if log.is_file() else []


def children_of(pid: int) -> list[int]:
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat", encoding="utf-8") as fh:
                    fields = fh.read().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == pid:
                found.append(int(entry))
    return found


def test_run_create_survives_a_killed_worker_and_resume_runs_its_lines_once(make_flow, tmp_path):
    folder = make_flow({"flow.dag.yaml": SLOW_FLOW, "slow.py": SLOW})
    home, log, marker = tmp_path / "home", tmp_path / "calls.log", tmp_path / "killed"
    data = tmp_path / "data.jsonl"
    data.write_text("".join(json.dumps({"x": i}) + "\n" for i in range(80)))
    env = {"KILL_MARKER": str(marker), "KILL_AT": "20", "RUN_LOG": str(log)}
    first = cli("run", "create", "--flow", str(folder), "--data", str(data), "-n", "first",
                "--workers", "2", "--concurrency", "4", home=home, env=env)
    assert first.returncode == 0, first.stderr
    lines = run_lines(home, "first")
    assert sorted(r["line_number"] for r in lines) == list(range(80))
    failed = sorted(r["line_number"] for r in lines if r["status"] == "Failed")
    assert 20 in failed and len(failed) < 40
    assert all("died (SIGKILL) while running this line" in r["error"]["message"]
               for r in lines if r["status"] == "Failed")
    shown = json.loads(cli("run", "show", "-n", "first", home=home).stdout)
    assert shown["status"] == "Completed"
    before = executions(log)
    second = cli("run", "create", "--flow", str(folder), "--data", str(data), "-n", "second",
                 "--resume-from", "first", "--workers", "2", "--concurrency", "4", home=home,
                 env=env)
    assert second.returncode == 0, second.stderr
    resumed = run_lines(home, "second")
    assert sorted(r["line_number"] for r in resumed) == list(range(80))
    assert {r["status"] for r in resumed} == {"Completed"}
    assert sorted(executions(log)[len(before):]) == failed, "exactly the failed lines ran again"


def test_run_create_parent_killed_leaves_no_worker_and_resume_is_exact(make_flow, tmp_path):
    folder = make_flow({"flow.dag.yaml": SLOW_FLOW, "slow.py": SLOW})
    home, log = tmp_path / "home", tmp_path / "calls.log"
    data = tmp_path / "data.jsonl"
    data.write_text("".join(json.dumps({"x": i}) + "\n" for i in range(400)))
    proc = subprocess.Popen([sys.executable, "-m", "pfkit", "run", "create", "--flow",
                             str(folder), "--data", str(data), "-n", "killed", "--workers", "2",
                             "--concurrency", "4"], cwd=ROOT,
                            env={**os.environ, "PFKIT_HOME": str(home), "RUN_LOG": str(log)},
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    lines_file = home / "runs" / "killed" / "lines.jsonl"
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and proc.poll() is None and not (
                lines_file.is_file() and lines_file.read_text().count("\n") >= 30):
            time.sleep(0.02)
        workers = children_of(proc.pid)
        assert len(workers) == 2, "the run has its two worker processes"
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(10)
        assert not wait_gone(workers, timeout=5), "workers exit when their parent is killed"
    finally:
        if proc.poll() is None:
            proc.kill()
    saved = {r["line_number"] for r in run_lines(home, "killed") if r["status"] == "Completed"}
    assert 30 <= len(saved) < 400
    before = executions(log)
    result = cli("run", "create", "--flow", str(folder), "--data", str(data), "-n", "resumed",
                 "--resume-from", "killed", "--workers", "2", "--concurrency", "8", home=home,
                 env={"RUN_LOG": str(log)})
    assert result.returncode == 0, result.stderr
    resumed = run_lines(home, "resumed")
    numbers = [r["line_number"] for r in resumed]
    assert sorted(numbers) == list(range(400)), "every line once, none twice"
    assert {r["status"] for r in resumed} == {"Completed"}
    ran_again = executions(log)[len(before):]
    assert sorted(ran_again) == sorted(set(range(400)) - saved), "saved lines are not re-run"


def test_ctrl_c_with_workers_cancels_the_run_stops_the_workers_and_resume_is_exact(make_flow,
                                                                                    tmp_path):
    folder = make_flow({"flow.dag.yaml": SLOW_FLOW, "slow.py": SLOW})
    home, log = tmp_path / "home", tmp_path / "calls.log"
    data = tmp_path / "data.jsonl"
    data.write_text("".join(json.dumps({"x": i}) + "\n" for i in range(400)))
    # its own process group, so that SIGINT reaches the parent and its workers, as from a
    # terminal's Ctrl-C
    proc = subprocess.Popen([sys.executable, "-m", "pfkit", "run", "create", "--flow",
                             str(folder), "--data", str(data), "-n", "interrupted", "--workers",
                             "2", "--concurrency", "4"], cwd=ROOT, start_new_session=True,
                            env={**os.environ, "PFKIT_HOME": str(home), "RUN_LOG": str(log)},
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    lines_file = home / "runs" / "interrupted" / "lines.jsonl"
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and proc.poll() is None and not (
                lines_file.is_file() and lines_file.read_text().count("\n") >= 30):
            time.sleep(0.02)
        workers = children_of(proc.pid)
        assert len(workers) == 2
        os.killpg(proc.pid, signal.SIGINT)
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, err
    assert "--resume-from interrupted" in err and "Traceback" not in err
    assert not wait_gone(workers, timeout=5)
    shown = json.loads(cli("run", "show", "-n", "interrupted", home=home).stdout)
    assert shown["status"] == "Canceled"
    saved = {r["line_number"] for r in run_lines(home, "interrupted")}
    assert 30 <= len(saved) < 400
    before = executions(log)
    result = cli("run", "create", "--flow", str(folder), "--data", str(data), "-n", "again",
                 "--resume-from", "interrupted", "--workers", "2", home=home,
                 env={"RUN_LOG": str(log)})
    assert result.returncode == 0, result.stderr
    assert sorted(r["line_number"] for r in run_lines(home, "again")) == list(range(400))
    assert sorted(executions(log)[len(before):]) == sorted(set(range(400)) - saved)


# --------------------------------------------------------------------------- the wire

def test_frames_split_anywhere_arrive_whole_and_in_order():
    from pfkit.runs import _worker_protocol as wire

    messages = [("lines", [(i, {"x": "é" * i})]) for i in range(50)]
    data = b"".join(wire.frame(m) for m in messages)
    buffer, got = wire.FrameBuffer(), []
    for i in range(0, len(data), 7):  # 7-byte pieces cut headers and payloads
        got.extend(buffer.feed(data[i:i + 7]))
    assert got == messages
    assert wire.FrameBuffer().feed(data) == messages


def test_a_value_the_parent_cannot_unpickle_is_read_back_from_the_record():
    import pickle

    from pfkit.runs import _worker_protocol as wire

    record = json.dumps({"line_number": 4, "status": "Completed", "outputs": {"y": "Gone()"},
                         "aggregation_inputs": {"${a.output}": "Gone()"}})
    import types

    module = types.ModuleType("pfkit_vanished_module")  # a tool's module the parent lacks
    exec("class Gone:\n    pass\n", module.__dict__)
    module.Gone.__module__ = module.__name__
    sys.modules[module.__name__] = module
    try:
        broken = pickle.dumps(({"y": module.Gone()}, None))
    finally:
        del sys.modules[module.__name__]
    line = wire.decode_line((4, "Completed", record, {}, None, None, broken), FinishedLine)
    assert line.outputs == {"y": "Gone()"}
    assert line.aggregation_values == {"${a.output}": "Gone()"}
    empty = wire.decode_line((5, "Failed", "{}", {}, {"code": "X"}, None, b""), FinishedLine)
    assert empty.outputs == {} and empty.aggregation_values is None and empty.error == {"code": "X"}


# --------------------------------------------------------------------------- the default

class _Node:
    def __init__(self, connection=None, type="python"):
        self.connection = connection
        self.type = type


class _Flow:
    def __init__(self, *nodes):
        self.nodes = nodes


@pytest.mark.parametrize(("nodes", "lines", "cores", "concurrency", "expected"), [
    ((_Node(),), 100_000, 2, 16, 2),            # a large python batch: one per core
    ((_Node(),), 100_000, 8, 16, 4),            # at most 4
    ((_Node(),), 2_000, 2, 16, 1),              # small: start-up would cost more than it saves
    ((_Node(),), None, 2, 16, 1),               # size unknown (streamed dataset)
    ((_Node(),), 100_000, 1, 16, 1),            # one core
    ((_Node(),), 100_000, 2, 1, 1),             # one line at a time
    ((_Node("openai", "llm"),), 1_000, 2, 32, 2),   # model calls: the client's CPU cost splits
    ((_Node("openai", "llm"),), 100, 2, 32, 1),
    ((_Node("local", "llm"),), 100_000, 2, 32, 1),  # each worker would load the local model
])
def test_default_workers_suit_the_flow(nodes, lines, cores, concurrency, expected):
    assert default_workers(_Flow(*nodes), lines, concurrency=concurrency,
                           cpu_count=cores) == expected
