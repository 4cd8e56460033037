"""Observers receive the engine's events, each once, in order: lines, nodes (bypassed ones too),
failures, streamed outputs when consumed, and the aggregation."""

from __future__ import annotations

import asyncio

from pfkit.engine import load_executable
from pfkit.observe import Observer, Observers

FLOW = """
inputs:
  x: {type: int}
outputs:
  text: {type: string, reference: "${streamer.output}"}
  metric: {type: object, reference: "${agg.output}"}
nodes:
- name: gate
  type: python
  source: {type: code, path: gate.py}
  inputs: {x: "${inputs.x}"}
- name: skipped
  type: python
  source: {type: code, path: gate.py}
  activate: {when: "${gate.output}", is: 99}
  inputs: {x: "${gate.output}"}
- name: divide
  type: python
  source: {type: code, path: divide.py}
  inputs: {v: "${gate.output}"}
- name: streamer
  type: python
  source: {type: code, path: streamer.py}
  inputs: {v: "${divide.output}"}
- name: agg
  type: python
  aggregation: true
  source: {type: code, path: agg.py}
  inputs: {values: "${divide.output}"}
"""
FILES = {
    "flow.dag.yaml": FLOW,
    "gate.py": "from promptflow.core import tool\n\n@tool\ndef gate(x: int) -> int:\n    return x\n",
    "divide.py": "from promptflow.core import tool\n\n@tool\ndef divide(v: int) -> int:\n"
                 "    return 10 // v\n",
    "streamer.py": "from promptflow.core import tool\n\n@tool\ndef streamer(v: int):\n"
                   "    for i in range(v):\n        yield str(i)\n",
    "agg.py": "from promptflow.core import tool, log_metric\n\n@tool\ndef agg(values: list):\n"
              "    log_metric('n', len(values))\n    return sum(values)\n",
}


class Recorder(Observer):
    def __init__(self) -> None:
        self.events: list[str] = []

    def on_line_start(self, line_number, inputs):
        self.events.append(f"line_start {line_number} {inputs}")

    def on_node_start(self, event):
        self.events.append(f"node_start {event.line_number} {event.node} {event.inputs}")

    def on_node_end(self, line_number, run):
        self.events.append(f"node_end {line_number} {run.node} {run.status}")

    def on_stream_end(self, event):
        self.events.append(f"stream_end {event.line_number} {event.node} {event.items} "
                           f"{event.error is not None}")

    def on_line_end(self, result):
        self.events.append(f"line_end {result.line_number} {result.status}")

    def on_aggregation_end(self, result):
        self.events.append(f"aggregation_end {result.status} {result.metrics}")


def test_event_order_for_bypassed_failing_streaming_and_aggregation_nodes(make_flow):
    flow = load_executable(make_flow(FILES))
    recorder = Recorder()
    observers = Observers((recorder,))

    async def main():
        ok = await flow.arun({"x": 3}, line_number=0, observers=observers)
        failed = await flow.arun({"x": 0}, line_number=1, observers=observers)
        collected = flow.aggregation_collector()
        for line in (ok, failed):
            if line.ok:
                collected.add(line.line_number, collected.extract(line))
        return ok, failed, await flow.aggregate(collected, observers=observers)

    ok, failed, aggregation = asyncio.run(main())
    assert ok.outputs == {"text": "012"}
    assert failed.status == "Failed"
    assert aggregation.metrics == {"n": 1}
    assert recorder.events == [
        "line_start 0 {'x': 3}",
        "node_start 0 gate {'x': 3}",
        "node_end 0 gate Completed",
        "node_end 0 skipped Bypassed",
        "node_start 0 divide {'v': 3}",
        "node_end 0 divide Completed",
        "node_start 0 streamer {'v': 3}",
        "node_end 0 streamer Completed",
        "stream_end 0 streamer 3 False",
        "line_end 0 Completed",
        "line_start 1 {'x': 0}",
        "node_start 1 gate {'x': 0}",
        "node_end 1 gate Completed",
        "node_end 1 skipped Bypassed",
        "node_start 1 divide {'v': 0}",
        "node_end 1 divide Failed",
        "line_end 1 Failed",
        "node_start None agg {'values': [3]}",
        "node_end None agg Completed",
        "aggregation_end Completed {'n': 1}",
    ]


def test_a_stream_that_breaks_fails_the_line_and_is_reported(make_flow):
    files = dict(FILES)
    files["streamer.py"] = ("from promptflow.core import tool\n\n@tool\ndef streamer(v: int):\n"
                            "    yield 'a'\n    raise RuntimeError('cut')\n")
    flow = load_executable(make_flow(files))
    recorder = Recorder()
    line = asyncio.run(flow.arun({"x": 1}, observers=Observers((recorder,))))
    assert line.status == "Failed"
    assert "cut" in line.error["message"]
    assert "stream_end 0 streamer 1 True" in recorder.events  # one item came before the break
    assert recorder.events[-1] == "line_end 0 Failed"


def test_the_current_node_is_known_to_code_the_node_calls(make_flow):
    """The provider layer reads current_observers / current_node to report model calls."""
    files = {
        "flow.dag.yaml": "inputs: {}\noutputs:\n  who: {type: object, reference: '${probe.output}'}\n"
                         "nodes:\n- name: probe\n  type: python\n  source: {type: code, path: p.py}\n",
        "p.py": "from promptflow.core import tool\nfrom pfkit.observe import current_node, "
                "current_observers\n\n@tool\nasync def probe():\n"
                "    return [list(current_node.get()), bool(current_observers.get())]\n",
    }
    flow = load_executable(make_flow(files))
    watched = asyncio.run(flow.arun({}, line_number=7, observers=Observers((Recorder(),))))
    unwatched = asyncio.run(flow.arun({}, line_number=7))
    assert watched.outputs == {"who": [["probe", 7], True]}
    assert unwatched.outputs == {"who": [[None, None], False]}


def test_an_observer_that_raises_is_not_silenced(make_flow):
    class Broken(Observer):
        def on_line_end(self, result):
            raise OSError("disk full")

    flow = load_executable(make_flow(FILES))
    try:
        asyncio.run(flow.arun({"x": 1}, observers=Observers((Broken(),))))
    except OSError as exc:
        assert "disk full" in str(exc)
    else:  # pragma: no cover - the assertion below explains
        raise AssertionError("an observer's error must stop what emitted the event")


def test_an_observer_that_raises_on_a_node_event_stops_the_line(make_flow):
    class Broken(Observer):
        def on_node_end(self, line_number, run):
            raise OSError("disk full")

    flow = load_executable(make_flow(FILES))
    try:
        asyncio.run(flow.arun({"x": 1}, observers=Observers((Broken(),))))
    except OSError as exc:
        assert "disk full" in str(exc)
    else:  # pragma: no cover - the assertion below explains
        raise AssertionError("an observer's error must not become a failed line")
