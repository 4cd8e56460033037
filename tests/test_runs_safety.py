"""Runs under hostile input and faults, with real processes: unsafe run names, internal errors
inside lines, two processes racing for one name, resuming on changed data or flows, killed
processes, a full disk, secrets in tools' errors, groups where several runs are accepted."""

from __future__ import annotations

import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

import pfkit

ROOT = Path(__file__).resolve().parent.parent

ECHO_FLOW = """
inputs:
  x: {type: int}
outputs:
  y: {type: object, reference: "${work.output}"}
nodes:
- name: work
  type: python
  source: {type: code, path: work.py}
  inputs: {x: "${inputs.x}"}
"""
SLOW = ("import asyncio\nfrom promptflow.core import tool\n\n@tool\nasync def work(x: int):\n"
        "    await asyncio.sleep(0.05)\n    return x + 1000\n")


@pytest.fixture(autouse=True)
def home(tmp_path, monkeypatch):
    home = tmp_path / "pfkit_home"
    monkeypatch.setenv("PFKIT_HOME", str(home))
    return home


def cli(*args: str, home: Path, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "pfkit", *args], capture_output=True, text=True,
                          cwd=ROOT, env={**os.environ, "PFKIT_HOME": str(home)}, timeout=timeout)


def rows(path: Path, count: int) -> Path:
    path.write_text("".join(json.dumps({"x": i}) + "\n" for i in range(count)))
    return path


@pytest.fixture
def slow_flow(make_flow):
    return make_flow({"flow.dag.yaml": ECHO_FLOW, "work.py": SLOW}, name="slow")


def start_run(flow: Path, data: Path, name: str, home: Path, *, lines: int, extra=()):
    proc = subprocess.Popen([sys.executable, "-m", "pfkit", "run", "create", "--flow", str(flow),
                             "--data", str(data), "-n", name, "--concurrency", "4", *extra],
                            cwd=ROOT, env={**os.environ, "PFKIT_HOME": str(home)},
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    lines_file = home / "runs" / name / "lines.jsonl"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and proc.poll() is None and not (
            lines_file.is_file() and lines_file.read_text().count("\n") >= lines):
        time.sleep(0.02)
    return proc


# -- 1. run names --------------------------------------------------------------------------------

def test_unsafe_run_names_are_refused_everywhere(slow_flow, tmp_path, home):
    data = rows(tmp_path / "d.jsonl", 2)
    ok = cli("run", "create", "--flow", str(slow_flow), "--data", str(data), "-n", "keep",
             home=home)
    assert ok.returncode == 0, ok.stderr
    for bad in (".", "..", "../../x", "a/b", "-rf"):
        made = cli("run", "create", "--flow", str(slow_flow), "--data", str(data), "-n", bad,
                   home=home)
        assert made.returncode != 0
        assert "cannot be used" in made.stderr or bad == "-rf", made.stderr
        assert "internal error" not in made.stderr and "Traceback" not in made.stderr
    assert not (tmp_path / "x").exists() and not (home.parent / "x").exists()
    for command in ("show", "delete", "archive", "restore", "show-details", "show-metrics"):
        result = cli("run", command, "-n", ".", home=home)
        assert result.returncode == 1 and "cannot be used" in result.stderr, (command, result.stderr)
    assert cli("run", "visualize", "-n", "keep,../x", home=home).returncode == 1
    resumed = cli("run", "create", "--flow", str(slow_flow), "--data", str(data),
                  "--resume-from", "../keep", home=home)
    assert resumed.returncode == 1 and "--resume-from run name" in resumed.stderr
    evaluated = cli("run", "create", "--flow", str(slow_flow), "--run", "..", home=home)
    assert evaluated.returncode == 1 and "cannot be used" in evaluated.stderr
    # nothing was deleted: the real run is still there, with its folder
    assert pfkit.get_run("keep").status == "Completed"
    assert (home / "runs" / "keep" / "lines.jsonl").is_file()
    with pytest.raises(pfkit.errors.UserError, match="cannot be used"):
        pfkit.get_run("..")


# -- 2. internal errors inside lines -------------------------------------------------------------

HOSTILE = """from promptflow.core import tool

@tool
def work(x: int):
    if x == 1:
        d = {}
        d["self"] = d
        return d
    if x == 2:
        return 10 ** 5000
    if x == 3:
        deep = []
        for _ in range(100_000):
            deep = [deep]
        return deep
    return x
"""


def test_unwritable_line_outputs_are_failed_lines_and_the_run_goes_on(make_flow, tmp_path):
    flow = make_flow({"flow.dag.yaml": ECHO_FLOW, "work.py": HOSTILE}, name="hostile")
    data = rows(tmp_path / "d.jsonl", 6)
    run = pfkit.run(flow, data, name="hostile")
    lines = {r["line_number"]: r for r in run.lines()}
    assert sorted(lines) == list(range(6))
    for bad in (1, 2, 3):
        assert lines[bad]["status"] == "Failed", lines[bad]
        assert lines[bad]["error"]["message"]
    assert [lines[n]["outputs"]["y"] for n in (0, 4, 5)] == [0, 4, 5]
    system = run.info["properties"]["system_metrics"]
    assert system["__pf__.lines.failed"] == 3 and system["__pf__.lines.completed"] == 3


def test_a_row_nested_too_deep_is_a_failed_line(make_flow, tmp_path):
    flow = make_flow({"flow.dag.yaml": ECHO_FLOW.replace("{type: int}", "{type: object}"),
                      "work.py": "from promptflow.core import tool\n\n@tool\ndef work(x):\n"
                                 "    return 'ok'\n"}, name="deep")
    data = tmp_path / "deep.jsonl"
    data.write_text('{"x": 1}\n{"x": ' + "[" * 100_000 + "]" * 100_000 + '}\n{"x": 3}\n')
    try:
        run = pfkit.run(flow, data, name="deep")
    except pfkit.errors.PfkitError as exc:  # the data reader may refuse the file: then clearly
        assert "deep.jsonl" in str(exc)
        assert pfkit.get_run("deep").status == "Failed"
        return
    lines = {r["line_number"]: r for r in run.lines()}
    assert sorted(lines) == [0, 1, 2]
    assert lines[1]["status"] == "Failed" and lines[0]["status"] == lines[2]["status"] == "Completed"


def test_an_exception_escaping_a_line_fails_that_line_only(monkeypatch, tmp_path, make_flow):
    """Whatever still escapes the engine (here: any exception from running one line) is that
    line's error; the other lines run and the run is not 'Completed' with lines missing."""
    from pfkit.runs import _runner

    real = _runner.InProcessRunner._run_line

    async def flaky(self, line_number, inputs):
        if line_number % 2:
            raise ConnectionResetError("stream cut mid-body")
        return await real(self, line_number, inputs)

    monkeypatch.setattr(_runner.InProcessRunner, "_run_line", flaky)
    flow = make_flow({"flow.dag.yaml": ECHO_FLOW, "work.py": SLOW}, name="flaky")
    run = pfkit.run(flow, rows(tmp_path / "d.jsonl", 6), name="flaky", workers=1)
    statuses = [r["status"] for r in run.lines()]
    assert statuses == ["Completed", "Failed"] * 3
    assert "stream cut mid-body" in run.lines()[1]["error"]["message"]
    assert run.status == "Completed"  # every line is recorded; failed lines are data


def test_a_run_with_lines_missing_is_never_completed(monkeypatch, tmp_path, make_flow):
    from pfkit.runs import _api, _runner

    class Lossy(_runner.InProcessRunner):
        async def run(self, items, sink):
            def dropping(line):
                if line.line_number != 2:
                    sink(line)
            await super().run(items, dropping)

    monkeypatch.setattr(_api, "_runner_for", lambda request, flow, *a: (
        Lossy(flow, concurrency=2), 1))
    flow = make_flow({"flow.dag.yaml": ECHO_FLOW, "work.py": SLOW}, name="lossy")
    with pytest.raises(pfkit.errors.PfkitError, match="1 of 5 lines"):
        pfkit.run(flow, rows(tmp_path / "d.jsonl", 5), name="lossy")
    record = pfkit.get_run("lossy")
    assert record.status == "Failed" and record.info["error"]["code"] == "LinesMissing"


# -- 3. atomic creation --------------------------------------------------------------------------

def test_two_processes_racing_for_one_name_one_wins(slow_flow, tmp_path, home):
    data = rows(tmp_path / "d.jsonl", 8)
    for trial in range(3):
        name = f"race{trial}"
        args = [sys.executable, "-m", "pfkit", "run", "create", "--flow", str(slow_flow),
                "--data", str(data), "-n", name, "--no-progress"]
        env = {**os.environ, "PFKIT_HOME": str(home)}
        procs = [subprocess.Popen(args, cwd=ROOT, env=env, stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE, text=True) for _ in range(2)]
        results = [(p.wait(timeout=120), p.stderr.read()) for p in procs]
        codes = sorted(code for code, _ in results)
        assert codes == [0, 1], results
        loser = next(err for code, err in results if code == 1)
        assert "already exists" in loser
        lines = [json.loads(x) for x in (home / "runs" / name / "lines.jsonl").read_text().splitlines()]
        assert sorted(r["line_number"] for r in lines) == list(range(8))  # each line once
        assert pfkit.get_run(name).status == "Completed"


def test_a_refused_create_leaves_the_live_run_as_it_was(slow_flow, tmp_path, home):
    data = rows(tmp_path / "d.jsonl", 200)
    live = start_run(slow_flow, data, "live", home, lines=5)
    try:
        db = sqlite3.connect(home / "runs.sqlite")
        before = db.execute("SELECT status, record FROM runs WHERE name='live'").fetchone()
        second = cli("run", "create", "--flow", str(slow_flow), "--data", str(data), "-n", "live",
                     home=home)
        assert second.returncode == 1 and "already exists" in second.stderr
        after = db.execute("SELECT status, record FROM runs WHERE name='live'").fetchone()
        assert after == before and after[0] == "Running"
        db.close()
    finally:
        live.send_signal(signal.SIGINT)
        live.communicate(timeout=60)


# -- 4. resume on changed data or flow -----------------------------------------------------------

def test_resume_refuses_changed_data_or_flow_and_names_the_change(slow_flow, tmp_path, home):
    data = rows(tmp_path / "d.jsonl", 4)
    pfkit.run(slow_flow, data, name="base")
    other = rows(tmp_path / "other.jsonl", 4)
    with pytest.raises(pfkit.errors.UserError, match="another file.*other.jsonl"):
        pfkit.run(slow_flow, other, name="r1", resume_from="base")
    data.write_text(data.read_text() + json.dumps({"x": 99}) + "\n")
    with pytest.raises(pfkit.errors.UserError, match="changed size"):
        pfkit.run(slow_flow, data, name="r2", resume_from="base")
    rows(data, 4)  # the original content again: resumable
    (slow_flow / "work.py").write_text(SLOW.replace("1000", "2000"))
    result = cli("run", "create", "--flow", str(slow_flow), "--data", str(data), "-n", "r3",
                 "--resume-from", "base", home=home)
    assert result.returncode == 1 and "work.py" in result.stderr, result.stderr
    (slow_flow / "work.py").write_text(SLOW)
    resumed = pfkit.run(slow_flow, data, name="r4", resume_from="base")
    assert resumed.info["properties"]["system_metrics"]["lines.reused"] == 4


# -- 5. killed processes -------------------------------------------------------------------------

def test_run_list_tells_a_killed_run_from_a_running_one(slow_flow, tmp_path, home):
    data = rows(tmp_path / "d.jsonl", 400)
    killed = start_run(slow_flow, data, "killed", home, lines=5)
    alive = start_run(slow_flow, data, "alive", home, lines=5)
    try:
        killed.send_signal(signal.SIGKILL)
        killed.wait()
        listed = {r["name"]: r for r in json.loads(cli("run", "list", home=home).stdout)}
        assert listed["alive"]["status"] == "Running"
        assert listed["killed"]["status"] == "Canceled"
        assert "--resume-from killed" in listed["killed"]["status_detail"]
        shown = json.loads(cli("run", "show", "-n", "killed", home=home).stdout)
        assert shown["status"] == "Canceled"
        # the correction is stored, not only shown
        db = sqlite3.connect(home / "runs.sqlite")
        assert db.execute("SELECT status FROM runs WHERE name='killed'").fetchone()[0] == "Canceled"
        db.close()
    finally:
        alive.send_signal(signal.SIGINT)
        alive.communicate(timeout=60)
    resumed = pfkit.run(slow_flow, data, name="again", resume_from="killed", concurrency=16)
    assert [r["line_number"] for r in resumed.lines()] == list(range(400))


# -- 6. a full disk ------------------------------------------------------------------------------

BIG = ("from promptflow.core import tool\n\n@tool\ndef work(x: int):\n"
       "    return 'z' * 20000 + str(x)\n")


@pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("mount"), reason="needs root to mount")
def test_a_full_disk_is_a_clear_error_and_the_run_resumes(make_flow, tmp_path):
    flow = make_flow({"flow.dag.yaml": ECHO_FLOW, "work.py": BIG}, name="big")
    data = rows(tmp_path / "d.jsonl", 60)
    small = tmp_path / "small"
    small.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=400k", "tmpfs", str(small)]).returncode:
        pytest.skip("cannot mount a tmpfs here")
    try:
        home = small / "home"
        result = cli("run", "create", "--flow", str(flow), "--data", str(data), "-n", "full",
                     "--concurrency", "2", home=home)
        assert result.returncode == 1
        assert "internal error" not in result.stderr and "Traceback" not in result.stderr
        assert "cannot write to the run store at" in result.stderr
        assert str(home) in result.stderr and "no space left" in result.stderr
        assert "--resume-from full" in result.stderr
        subprocess.run(["mount", "-o", "remount,size=20m", str(small)], check=True)
        shown = json.loads(cli("run", "show", "-n", "full", home=home).stdout)
        assert shown["status"] in ("Failed", "Canceled")
        resumed = cli("run", "create", "--flow", str(flow), "--data", str(data), "-n", "full2",
                      "--resume-from", "full", home=home)
        assert resumed.returncode == 0, resumed.stderr
        numbers = [json.loads(x)["line_number"] for x in
                   (home / "runs" / "full2" / "lines.jsonl").read_text().splitlines()]
        assert sorted(numbers) == list(range(60))
    finally:
        subprocess.run(["umount", "-l", str(small)])


# -- 7. secrets ----------------------------------------------------------------------------------

LEAKY = """from promptflow.connections import CustomConnection
from promptflow.core import tool

@tool
def work(x: int, conn: CustomConnection):
    if x == 1:
        raise ValueError(f"the server refused key {conn.secrets['key']}")
    return {"x": x}
"""
LEAKY_FLOW = ECHO_FLOW.replace('inputs: {x: "${inputs.x}"}',
                               'inputs: {x: "${inputs.x}", conn: my_custom}')
SECRET = "s3cr3t-Value-9876"


def test_a_key_in_a_tools_error_is_never_written_or_shown(make_flow, tmp_path, home):
    conn = tmp_path / "conn.yaml"
    conn.write_text(f"name: my_custom\ntype: custom\nconfigs: {{}}\nsecrets:\n  key: {SECRET}\n")
    assert cli("connection", "create", "--file", str(conn), home=home).returncode == 0
    flow = make_flow({"flow.dag.yaml": LEAKY_FLOW, "work.py": LEAKY}, name="leaky")
    data = rows(tmp_path / "d.jsonl", 3)
    created = cli("run", "create", "--flow", str(flow), "--data", str(data), "-n", "leak",
                  "--stream", home=home)
    assert created.returncode == 0, created.stderr
    assert "the server refused key" in created.stdout
    shown = [created.stdout + created.stderr]
    for command in ("show", "show-details"):
        result = cli("run", command, "-n", "leak", home=home)
        shown.append(result.stdout + result.stderr)
    shown.append(cli("run", "show-details", "-n", "leak", "--json", home=home).stdout)
    shown.append(cli("run", "list", home=home).stdout)
    for text in shown:
        assert SECRET not in text
    for file in (home / "runs" / "leak").rglob("*"):
        if file.is_file():
            assert SECRET.encode() not in file.read_bytes(), file
    assert SECRET.encode() not in (home / "runs.sqlite").read_bytes()
    for extra in home.glob("runs.sqlite-*"):
        assert SECRET.encode() not in extra.read_bytes()


# -- 8. groups where several runs are accepted ----------------------------------------------------

VARIANT_FLOW = """
inputs:
  x: {type: int}
outputs:
  y: {type: int, reference: "${v.output}"}
nodes:
- name: v
  use_variants: true
node_variants:
  v:
    default_variant_id: a
    variants:
      a:
        node: {type: python, source: {type: code, path: v.py}, inputs: {x: "${inputs.x}", k: 1}}
      b:
        node: {type: python, source: {type: code, path: v.py}, inputs: {x: "${inputs.x}", k: 2}}
"""


def test_visualize_and_list_accept_a_variants_group(make_flow, tmp_path, home):
    flow = make_flow({"flow.dag.yaml": VARIANT_FLOW,
                      "v.py": "from promptflow.core import tool\n\n@tool\ndef v(x: int, k: int):\n"
                              "    return x * k\n"}, name="variants")
    data = rows(tmp_path / "d.jsonl", 2)
    made = cli("run", "create", "--flow", str(flow), "--data", str(data), "--all-variants",
               "-n", "grp", home=home)
    assert made.returncode == 0, made.stderr
    page = tmp_path / "page.html"
    shown = cli("run", "visualize", "-n", "grp", "--html-path", str(page), home=home)
    assert shown.returncode == 0, shown.stderr
    html = page.read_text()
    assert "grp__v.a" in html and "grp__v.b" in html
    listed = json.loads(cli("run", "list", "--group", "grp", home=home).stdout)
    assert sorted(r["name"] for r in listed) == ["grp__v.a", "grp__v.b"]
    missing = cli("run", "visualize", "-n", "nogroup", home=home)
    assert missing.returncode == 1 and "does not exist" in missing.stderr


def test_every_run_option_has_help():
    from pfkit.cli import build_parser

    parser = build_parser()
    run = parser._subparsers._group_actions[0].choices["run"]
    commands = run._subparsers._group_actions[0].choices
    missing = []
    for command, sub in commands.items():
        for action in sub._actions:
            if action.option_strings and action.help is None:
                missing.append(f"{command} {action.option_strings[0]}")
    assert not missing, missing


# -- observers and worker processes ---------------------------------------------------------------

class Recorder:
    def __init__(self) -> None:
        self.events: list[tuple] = []

    def on_run_start(self, event) -> None:
        self.events.append(("start", event.name, event.total))

    def on_line_end(self, line) -> None:
        self.events.append(("line", line.line_number, line.status))

    def on_run_end(self, event) -> None:
        self.events.append(("end", event.status, event.completed, event.failed))


@pytest.mark.parametrize("workers", [1, 2])
def test_observers_see_the_run_start_every_line_and_the_end(slow_flow, tmp_path, workers):
    seen = Recorder()
    run = pfkit.run(slow_flow, rows(tmp_path / "d.jsonl", 6), name=f"observed{workers}",
                    observers=[seen], workers=workers)
    assert run.status == "Completed"
    assert seen.events[0] == ("start", f"observed{workers}", 6)
    assert seen.events[-1] == ("end", "Completed", 6, 0)
    lines = [e for e in seen.events if e[0] == "line"]
    assert sorted(e[1] for e in lines) == list(range(6))  # each line once
    assert {e[2] for e in lines} == {"Completed"}


def test_run_create_with_worker_processes_records_every_line_once(slow_flow, tmp_path, home):
    data = rows(tmp_path / "d.jsonl", 40)
    result = cli("run", "create", "--flow", str(slow_flow), "--data", str(data), "-n", "procs",
                 "--workers", "2", "--no-progress", home=home)
    assert result.returncode == 0, result.stderr
    numbers = [json.loads(x)["line_number"] for x in
               (home / "runs" / "procs" / "lines.jsonl").read_text().splitlines()]
    assert sorted(numbers) == list(range(40))
    assert "workers 2" in (home / "runs" / "procs" / "logs.txt").read_text()
    bad = cli("run", "create", "--flow", str(slow_flow), "--data", str(data), "--workers", "0",
              home=home)
    assert bad.returncode == 1 and "--workers must be at least 1" in bad.stderr


def test_line_records_are_scrubbed_even_inside_odd_objects(capsys):
    from pfkit import _secrets
    from pfkit.engine import LineResult, NodeRun
    from pfkit.runs._runner import finished_line

    class Holder:
        def __repr__(self) -> str:
            return "Holder(key=odd-secret-4242)"

    _secrets.register("odd-secret-4242")
    try:
        node = NodeRun("n", "Completed", {"obj": Holder()}, Holder())
        result = LineResult(0, "Completed", {"q": "odd-secret-4242"}, {"a": Holder()}, {"n": node})
        line = finished_line(result)
        assert "odd-secret-4242" not in line.record_json
        assert "odd-secret-4242" not in line.node_json["n"]
        from pfkit.runs._batch import StreamPrinter

        StreamPrinter().on_line_end(line)  # --stream
        printed = capsys.readouterr().out
        assert printed.startswith("line 0 completed") and "odd-secret-4242" not in printed
    finally:
        _secrets._reset_for_tests()


def test_arun_on_the_callers_loop_with_an_in_memory_store(slow_flow, tmp_path):
    import asyncio

    from pfkit.runs import InMemoryRunStore

    store = InMemoryRunStore()

    async def main():
        return await pfkit.arun(slow_flow, rows(tmp_path / "d.jsonl", 3), name="mem",
                                store=store)

    run = asyncio.run(main())
    assert run.status == "Completed" and run.path is None
    assert [r["outputs"]["y"] for r in run.lines()] == [1000, 1001, 1002]
    assert store.get("mem").status == "Completed"
    with pytest.raises(pfkit.errors.RunNotFound):
        pfkit.get_run("mem")  # nothing was written to the local store
    # worker processes run the lines; this process writes them to the in-memory store
    procs = pfkit.run(slow_flow, tmp_path / "d.jsonl", name="mem2", store=store, workers=2)
    assert [r["outputs"]["y"] for r in procs.lines()] == [1000, 1001, 1002]


ISOLATED_FLOW = """
environment_variables:
  WHO: {who}
inputs:
  x: {{type: int}}
outputs:
  y: {{type: string, reference: "${{work.output}}"}}
nodes:
- name: work
  type: python
  source: {{type: code, path: work.py}}
  inputs: {{x: "${{inputs.x}}"}}
"""
ISOLATED_TOOL = """import asyncio, os
from promptflow.core import tool

@tool
async def work(x: int):
    await asyncio.sleep(0.01)
    with open("mine.txt") as fh:
        return f"{fh.read().strip()}/{os.environ['WHO']}/{x}"
"""


def test_two_runs_of_two_flows_at_once_in_one_process(make_flow, tmp_path):
    import asyncio

    flows = {}
    for who in ("alpha", "beta"):
        flows[who] = make_flow({"flow.dag.yaml": ISOLATED_FLOW.format(who=who),
                                "work.py": ISOLATED_TOOL, "mine.txt": f"file-{who}\n"}, name=who)
    data = rows(tmp_path / "d.jsonl", 20)
    cwd, env_before = os.getcwd(), os.environ.get("WHO")

    async def both():
        return await asyncio.gather(*(pfkit.arun(flows[w], data, name=f"iso_{w}", workers=1)
                                      for w in flows))

    alpha, beta = asyncio.run(both())
    assert [r["outputs"]["y"] for r in alpha.lines()] == [f"file-alpha/alpha/{i}" for i in range(20)]
    assert [r["outputs"]["y"] for r in beta.lines()] == [f"file-beta/beta/{i}" for i in range(20)]
    assert os.getcwd() == cwd and os.environ.get("WHO") == env_before


def test_a_run_owned_by_another_host_is_gone_only_when_its_heartbeat_stops(home):
    from pfkit.runs import LocalRunStore, RunRecord
    from pfkit.runs._owner import STALE_AFTER

    store = LocalRunStore(home)
    for name, age in (("fresh", 1.0), ("stale", STALE_AFTER + 60)):
        store.create(RunRecord(name=name, status="Running", created_on=time.time()))
        with store._writing() as db:  # as if another machine had written it
            record = store.get(name)
            record.owner = {"host": "some-other-host", "pid": 1, "started": "1"}
            db.execute("UPDATE runs SET record = ?, heartbeat = ? WHERE name = ?",
                       (json.dumps(record.to_dict()), time.time() - age, name))
    assert store.get("fresh").status == "Running"
    stale = store.get("stale")
    assert stale.status == "Canceled" and "some-other-host" in stale.status_detail
    store.close()


STREAM_FLOW = """
inputs:
  question: {type: string}
outputs:
  answer: {type: string, reference: "${ask.output}"}
nodes:
- name: ask
  type: llm
  source: {type: code, path: ask.jinja2}
  connection: srv
  api: chat
  inputs:
    model: echo
    stream: true
    question: ${inputs.question}
"""


def test_streams_cut_mid_body_fail_their_lines_and_every_line_is_recorded(make_flow, tmp_path):
    from pfkit.connections._store import ConnectionStore
    from pfkit.testing import TestServer

    flow = make_flow({"flow.dag.yaml": STREAM_FLOW,
                      "ask.jinja2": "# user:\n{{question}}\n"}, name="streamy")
    data = tmp_path / "q.jsonl"
    data.write_text("".join(json.dumps({"question": f"question number {i}"}) + "\n"
                            for i in range(6)))
    with TestServer() as server:
        ConnectionStore().create({"name": "srv", "type": "open_ai", "api_key": "sk-test-1234",
                                  "base_url": server.base_url, "max_retries": "0"})
        server.set_faults(cut_next=2, cut_after=2)
        run = pfkit.run(flow, data, name="streamy", concurrency=1, workers=1)
    lines = run.lines()
    assert [r["line_number"] for r in lines] == list(range(6))  # nothing lost
    failed = [r for r in lines if r["status"] == "Failed"]
    assert len(failed) == 2, [r["error"] for r in failed]
    assert all(r["error"]["message"] for r in failed)
    assert all("question number" in r["outputs"]["answer"] for r in lines
               if r["status"] == "Completed")
    assert run.info["properties"]["system_metrics"]["__pf__.lines.failed"] == 2


def test_a_write_that_fails_with_enospc_stops_the_run_clearly_and_it_resumes(
        monkeypatch, slow_flow, tmp_path, home):
    """Without root (no tmpfs): the line file refuses writes after a few lines, as a full disk."""
    import errno

    from pfkit.runs import _local_store

    real_init = _local_store.LocalRunWriter.__init__

    class FullAfter:
        def __init__(self, inner, budget: int) -> None:
            self.inner, self.budget = inner, budget

        def write(self, text: str) -> int:
            self.budget -= 1
            if self.budget < 0:
                raise OSError(errno.ENOSPC, "No space left on device")
            return self.inner.write(text)

        def __getattr__(self, name):
            return getattr(self.inner, name)

    def init(self, store, name):
        real_init(self, store, name)
        if name == "full":
            self._lines = FullAfter(self._lines, 5)

    monkeypatch.setattr(_local_store.LocalRunWriter, "__init__", init)
    data = rows(tmp_path / "d.jsonl", 30)
    with pytest.raises(pfkit.errors.StoreWriteError) as info:
        pfkit.run(slow_flow, data, name="full", concurrency=2, workers=1)
    message = str(info.value)
    assert "cannot write to the run store at" in message and str(home) in message
    assert "no space left" in message and "--resume-from full" in message
    record = pfkit.get_run("full")
    assert record.status == "Failed" and record.info["error"]["code"] == "StoreWriteFailed"
    assert "--resume-from full" in record.info["status_detail"]
    assert len(record.lines()) == 5  # what was written is kept
    resumed = pfkit.run(slow_flow, data, name="full_again", resume_from="full")
    assert [r["line_number"] for r in resumed.lines()] == list(range(30))
    assert resumed.info["properties"]["system_metrics"]["lines.reused"] == 5


def test_a_running_run_from_an_older_version_is_over_after_an_hour_of_silence(home):
    from pfkit.runs import LocalRunStore

    home.mkdir(parents=True)
    db = sqlite3.connect(home / "runs.sqlite")
    db.execute("CREATE TABLE runs (name TEXT PRIMARY KEY, schema_version INTEGER, status TEXT, "
               "created_on REAL, archived INTEGER, record TEXT)")
    for name in ("quiet", "busy"):
        old = {"name": name, "status": "Running", "created_on": 1.0, "flow_path": "/f",
               "data": "/d.jsonl", "properties": {"system_metrics": {}}}
        db.execute("INSERT INTO runs VALUES (?, 1, 'Running', 1.0, 0, ?)", (name, json.dumps(old)))
        folder = home / "runs" / name
        folder.mkdir(parents=True)
        (folder / "lines.jsonl").write_text("")
    db.commit()
    db.close()
    hours_ago = time.time() - 2 * 3600
    for path in (home / "runs" / "quiet", home / "runs" / "quiet" / "lines.jsonl"):
        os.utime(path, (hours_ago, hours_ago))
    store = LocalRunStore(home)
    assert store.get("busy").status == "Running"  # written to a moment ago: maybe alive
    quiet = store.get("quiet")
    assert quiet.status == "Canceled"
    assert "pfkit run create --flow /f --data /d.jsonl --resume-from quiet" in quiet.status_detail
    store.close()
