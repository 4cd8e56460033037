"""pfkit.Session: one background loop for sync calls, one model (and budget) per connection."""

from __future__ import annotations

import asyncio
import json
import threading

import pytest

import pfkit
from pfkit.connections._store import ConnectionStore
from pfkit.observe import Observer
from pfkit.testing import EchoModel, TestServer

FLOW = """
inputs:
  question: {type: string}
outputs:
  answer: {type: string, reference: "${chat.output}"}
nodes:
- name: chat
  type: llm
  source: {type: code, path: chat.jinja2}
  connection: CONN
  api: chat
  inputs:
    model: gpt-4o-mini
    question: ${inputs.question}
"""
TEMPLATE = "# user:\n{{question}}\n"


@pytest.fixture(autouse=True)
def home(tmp_path, monkeypatch):
    path = tmp_path / "home"
    monkeypatch.setenv("PFKIT_HOME", str(path))
    monkeypatch.delenv("PFKIT_CACHE", raising=False)
    return path


def chat_flow(make_flow, conn: str, name: str = "flow"):
    return make_flow({"flow.dag.yaml": FLOW.replace("CONN", conn), "chat.jinja2": TEMPLATE},
                     name=name)


class LoopRecordingModel(EchoModel):
    """Echoes, and records on which event loop each call ran."""

    def __init__(self) -> None:
        super().__init__("openai")
        self.loops: list[int] = []

    async def chat(self, request):
        self.loops.append(id(asyncio.get_running_loop()))
        return await super().chat(request)


def test_sync_calls_run_on_one_long_lived_loop(make_flow):
    model = LoopRecordingModel()
    with pfkit.Session(models={"*": model}) as session:
        flow = session.load_flow(chat_flow(make_flow, "any"))
        for i in range(3):
            assert json.loads(flow(question=f"q{i}")["answer"])["messages"][0]["content"] == f"q{i}"
        threads = [threading.Thread(target=flow, kwargs={"question": "t"}) for _ in range(3)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(30)
        assert flow.test(question="x").outputs["answer"]
    assert len(model.loops) == 7
    assert len(set(model.loops)) == 1  # not a new loop per call


def test_sync_calls_work_inside_a_running_loop(make_flow):
    """As in Jupyter, where a loop already runs in the calling thread."""
    model = LoopRecordingModel()
    session = pfkit.Session(models={"*": model})
    flow = session.load_flow(chat_flow(make_flow, "any"))

    async def notebook_cell():
        return flow(question="inside")

    try:
        assert json.loads(asyncio.run(notebook_cell())["answer"])["messages"][0]["content"] == "inside"
    finally:
        session.close()


def test_arun_is_public_and_async_with_closes(make_flow):
    async def main():
        async with pfkit.Session(models={"*": EchoModel()}) as session:
            flow = session.load_flow(chat_flow(make_flow, "any"))
            results = await asyncio.gather(*(flow.arun(question=f"q{i}") for i in range(4)))
        return results, session

    results, session = asyncio.run(main())
    assert [json.loads(r["answer"])["messages"][0]["content"] for r in results] == [
        "q0", "q1", "q2", "q3"]
    with pytest.raises(pfkit.errors.UserError, match="closed"):
        session.run_sync(asyncio.sleep(0))


def test_a_failing_line_raises_from_arun(make_flow):
    folder = make_flow({"flow.dag.yaml": "inputs: {x: {type: int}}\noutputs:\n  y: {type: int, "
                        "reference: '${f.output}'}\nnodes:\n- name: f\n  type: python\n  source: "
                        "{type: code, path: f.py}\n  inputs: {x: '${inputs.x}'}\n",
                        "f.py": "from promptflow.core import tool\n\n@tool\ndef f(x: int):\n"
                                "    return 10 // x\n"})
    flow = pfkit.load_flow(folder)
    assert flow(x=5) == {"y": 2}
    with pytest.raises(pfkit.errors.ExecutionError, match="ZeroDivisionError") as info:
        asyncio.run(flow.arun(x=0))
    assert info.value.location.file == "f.py" and info.value.location.line == 5


def test_session_observers_see_flow_calls(make_flow):
    seen: list[str] = []

    class Recorder(Observer):
        def on_line_start(self, line_number, inputs):
            seen.append("line_start")

        def on_node_end(self, line_number, run):
            seen.append(f"node_end:{run.node}:{run.status}")

        def on_line_end(self, result):
            seen.append(f"line_end:{result.status}")

    with pfkit.Session(models={"*": EchoModel()}, observers=[Recorder()]) as session:
        session.load_flow(chat_flow(make_flow, "any"))(question="hi")
    assert seen == ["line_start", "node_end:chat:Completed", "line_end:Completed"]


def connect(name: str, server: TestServer, **options) -> None:
    record = {"name": name, "type": "open_ai", "api_key": "sk-session-test-key",
              "base_url": server.base_url}
    record.update({k: str(v) for k, v in options.items()})
    ConnectionStore().create(record)


def test_concurrent_requests_in_a_session_share_the_connection_limit(make_flow):
    """Sync calls from threads, async calls and two cache modes: all draw on one
    max_concurrency of the connection."""
    with TestServer(latency=0.05) as server:
        connect("limited", server, max_concurrency=2)
        folder = chat_flow(make_flow, "limited")
        with pfkit.Session() as session:
            plain = session.load_flow(folder)
            cached = session.load_flow(folder, cache="read_write")
            assert plain.executable is not cached.executable
            answers: list[str] = []

            def call(i: int) -> None:
                answers.append(plain(question=f"thread {i}")["answer"])

            threads = [threading.Thread(target=call, args=(i,)) for i in range(6)]
            for thread in threads:
                thread.start()

            async def more():
                return await asyncio.gather(*(cached.arun(question=f"async {i}")
                                              for i in range(6)))

            answers.extend(r["answer"] for r in session.run_sync(more()))
            for thread in threads:
                thread.join(60)
        assert len(answers) == 12
        assert server.counters.max_in_flight == 2


def test_pfkit_arun_runs_a_batch_on_the_callers_loop(make_flow, tmp_path):
    folder = chat_flow(make_flow, "any")
    data = tmp_path / "data.jsonl"
    data.write_text("".join(json.dumps({"question": f"q{i}"}) + "\n" for i in range(3)))
    model = LoopRecordingModel()

    async def main():
        run = await pfkit.arun(folder, data, models={"*": model}, concurrency=2)
        return run, id(asyncio.get_running_loop())

    run, loop_id = asyncio.run(main())
    assert run.status == "Completed"
    assert len(run.lines()) == 3
    assert set(model.loops) == {loop_id}
