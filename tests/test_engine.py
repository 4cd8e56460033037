"""Executor behaviour beyond the golden fixtures: concurrency, timeouts, generators, aggregation,
single-node runs and the Python API."""

from __future__ import annotations

import asyncio
import json

import pytest

import pfkit
from pfkit._flows import atest_node, load_bound_flow
from pfkit.engine import execute_aggregation, execute_line
from pfkit.errors import ExecutionError, InputError

DIAMOND = """
inputs:
  x: {type: int}
outputs:
  out: {type: object, reference: "${join.output}"}
nodes:
- name: left
  type: python
  source: {type: code, path: left.py}
  inputs: {x: "${inputs.x}"}
- name: right
  type: python
  source: {type: code, path: right.py}
  inputs: {x: "${inputs.x}"}
- name: join
  type: python
  source: {type: code, path: join.py}
  inputs: {a: "${left.output}", b: "${right.output}"}
"""


def run(flow, inputs, **kw):
    return asyncio.run(execute_line(flow, inputs, **kw))


def test_independent_sync_nodes_run_concurrently(make_flow):
    """Both tools wait on one barrier: it only opens if they run at the same time."""
    barrier = "import threading\nBARRIER = threading.Barrier(2, timeout=10)\n"
    tool = ("from promptflow.core import tool\nimport shared_barrier as shared\n\n@tool\ndef f(x: int) -> int:\n"
            "    shared.BARRIER.wait()\n    return x\n")
    join = "from promptflow.core import tool\n\n@tool\ndef j(a, b):\n    return [a, b]\n"
    folder = make_flow({"flow.dag.yaml": DIAMOND, "shared_barrier.py": barrier, "left.py": tool,
                        "right.py": tool, "join.py": join})
    result = run(load_bound_flow(folder), {"x": "4"})
    assert result.status == "Completed", result.error
    assert result.outputs == {"out": [4, 4]}


def test_independent_async_nodes_run_concurrently(make_flow):
    """Each waits for the event the other sets: sequential execution would never finish."""
    shared = "import asyncio\nEVENTS = {}\n"
    left = ("from promptflow.core import tool\nimport asyncio, shared_events as shared\n\n@tool\nasync def f(x: int):\n"
            "    ev = shared.EVENTS.setdefault('l', asyncio.Event())\n"
            "    other = shared.EVENTS.setdefault('r', asyncio.Event())\n"
            "    ev.set()\n    await asyncio.wait_for(other.wait(), 10)\n    return x + 1\n")
    right = left.replace("'l'", "'tmp'").replace("'r'", "'l'").replace("'tmp'", "'r'").replace(
        "x + 1", "x + 2")
    join = "from promptflow.core import tool\n\n@tool\ndef j(a, b):\n    return [a, b]\n"
    folder = make_flow({"flow.dag.yaml": DIAMOND, "shared_events.py": shared, "left.py": left,
                        "right.py": right, "join.py": join})
    result = run(load_bound_flow(folder), {"x": 1})
    assert result.status == "Completed", result.error
    assert result.outputs == {"out": [2, 3]}


def test_slow_sync_tool_moves_to_threads_but_one_hiccup_does_not(make_flow):
    slow = "from promptflow.core import tool\nimport time\n\n@tool\ndef f(x: int):\n    time.sleep(0.02)\n    return x\n"
    hiccup = ("from promptflow.core import tool\nimport time\nCALLS = []\n\n@tool\ndef f(x: int):\n"
              "    CALLS.append(x)\n    if len(CALLS) == 1:\n        time.sleep(0.02)\n    return x\n")
    join = "from promptflow.core import tool\n\n@tool\ndef j(a, b):\n    return a + b\n"
    folder = make_flow({"flow.dag.yaml": DIAMOND, "left.py": slow, "right.py": hiccup,
                        "join.py": join})
    flow = load_bound_flow(folder)
    for x in range(5):
        assert run(flow, {"x": x}).outputs == {"out": 2 * x}
    nodes = {n.name: n for n in flow.nodes}
    assert nodes["left"].blocking and not nodes["right"].blocking


def test_line_timeout_fails_the_line_and_cancels_the_node(make_flow):
    folder = make_flow({"flow.dag.yaml": """
outputs:
  o: {type: string, reference: "${s.output}"}
nodes:
- name: s
  type: python
  source: {type: code, path: s.py}
""", "s.py": "from promptflow.core import tool\nimport asyncio\n\n@tool\nasync def s():\n    await asyncio.sleep(30)\n"})
    result = run(load_bound_flow(folder), {}, timeout=0.2)
    assert result.status == "Failed"
    assert result.error["code"] == "LineExecutionTimeoutError"
    assert result.node_runs["s"].status == "Canceled"


ONE_NODE = """
inputs:
  seconds: {type: double, default: 0}
outputs:
  o: {type: object, reference: "${s.output}"}
nodes:
- name: s
  type: python
  source: {type: code, path: s.py}
  inputs: {seconds: "${inputs.seconds}"}
"""


def test_line_timeout_stops_waiting_for_a_blocking_sync_tool(make_flow):
    """``time.sleep(5)`` with a 0.3 s timeout: the line fails at its time and the next line
    runs; the tool's thread is left to finish (it cannot be killed), its result discarded."""
    tool = ("from promptflow.core import tool\nimport time\n\n@tool\ndef s(seconds: float):\n"
            "    time.sleep(seconds)\n    return seconds\n")
    flow = load_bound_flow(make_flow({"flow.dag.yaml": ONE_NODE, "s.py": tool}))

    async def two_lines():
        return [await execute_line(flow, {"seconds": 5}, line_number=0, timeout=0.3),
                await execute_line(flow, {"seconds": 0}, line_number=1, timeout=0.3)]

    slow, quick = asyncio.run(two_lines())
    assert slow.status == "Failed" and slow.error["code"] == "LineExecutionTimeoutError"
    assert slow.node_runs["s"].status == "Canceled"
    assert quick.status == "Completed" and quick.outputs == {"o": 0}


def test_line_timeout_interrupts_a_cpu_bound_tool(make_flow):
    """A pure-Python loop in a timed-out line's thread is interrupted, not left spinning."""
    tool = ("from promptflow.core import tool\nimport time\nimport spin_state\n\n@tool\n"
            "def s(seconds: float):\n    end = time.time() + 20\n    while time.time() < end:\n"
            "        spin_state.COUNT += 1\n    return 'finished'\n")
    folder = make_flow({"flow.dag.yaml": ONE_NODE, "s.py": tool, "spin_state.py": "COUNT = 0\n"})
    flow = load_bound_flow(folder)
    result = run(flow, {}, timeout=0.3)
    assert result.status == "Failed" and result.error["code"] == "LineExecutionTimeoutError"
    state = flow.context.modules["spin_state"]
    import time

    deadline = time.time() + 5
    while True:  # the interrupt lands within a few bytecodes; give a busy machine a moment
        before = state.COUNT
        time.sleep(0.2)
        if state.COUNT == before or time.time() > deadline:
            break
    assert state.COUNT == before, "the tool's loop kept running after its line timed out"


def test_a_sync_tool_proven_quick_runs_inline_even_with_a_timeout(make_flow):
    tool = "from promptflow.core import tool\n\n@tool\ndef s(seconds: float):\n    return 1\n"
    flow = load_bound_flow(make_flow({"flow.dag.yaml": ONE_NODE, "s.py": tool}))
    node = flow.nodes[0]

    async def lines(n):
        for i in range(n):
            assert (await execute_line(flow, {}, line_number=i, timeout=10)).status == "Completed"

    asyncio.run(lines(3))
    assert node.speed.quick_calls == 3  # timed in threads first
    asyncio.run(lines(20))
    assert node.speed.quick_calls == 23 and not node.blocking


def test_first_failure_fails_the_line_with_promptflow_message(make_flow):
    folder = make_flow({"flow.dag.yaml": """
inputs:
  x: {type: int}
outputs:
  o: {type: int, reference: "${b.output}"}
nodes:
- name: a
  type: python
  source: {type: code, path: a.py}
  inputs: {x: "${inputs.x}"}
- name: b
  type: python
  source: {type: code, path: a.py}
  inputs: {x: "${a.output}"}
""", "a.py": "from promptflow.core import tool\n\n@tool\ndef f(x: int) -> int:\n    if x > 5:\n        raise ValueError(f'{x} is too big')\n    return x * 2\n"})
    flow = load_bound_flow(folder)
    ok, bad = run(flow, {"x": 2}), run(flow, {"x": 4})
    assert ok.outputs == {"o": 8}
    assert bad.status == "Failed" and bad.outputs == {}
    assert bad.error["message"] == "Execution failure in 'b': (ValueError) 8 is too big"
    assert bad.node_statuses() == {"a": "Completed", "b": "Failed"}
    assert isinstance(bad.exception, ExecutionError) and isinstance(bad.exception.cause, ValueError)


def test_generators_pass_through_nodes_and_join_in_outputs(make_flow):
    folder = make_flow({"flow.dag.yaml": """
outputs:
  joined: {type: string, reference: "${gen.output}"}
  count: {type: int, reference: "${count.output}"}
nodes:
- name: gen
  type: python
  source: {type: code, path: gen.py}
- name: agen
  type: python
  source: {type: code, path: agen.py}
- name: count
  type: python
  source: {type: code, path: count.py}
  inputs: {chunks: "${agen.output}"}
""", "gen.py": "from promptflow.core import tool\n\n@tool\ndef g():\n    yield 'a'\n    yield 1\n",
        "agen.py": "from promptflow.core import tool\n\n@tool\nasync def g():\n    for c in 'xyz':\n        yield c\n",
        "count.py": "from promptflow.core import tool\n\n@tool\nasync def c(chunks):\n    return len([x async for x in chunks])\n"})
    result = run(load_bound_flow(folder), {})
    assert result.status == "Completed", result.error
    assert result.outputs == {"joined": "a1", "count": 3}


def test_missing_and_badly_typed_inputs_fail_the_line_not_the_process(make_flow):
    folder = make_flow({"flow.dag.yaml": """
inputs:
  n: {type: int}
  tags: {type: list, default: []}
outputs:
  n: {type: int, reference: "${inputs.n}"}
  tags: {type: list, reference: "${inputs.tags}"}
nodes: []
"""})
    flow = load_bound_flow(folder)
    assert run(flow, {"n": "3", "tags": "[1, 2]"}).outputs == {"n": 3, "tags": [1, 2]}
    missing = run(flow, {}, line_number=7)
    assert missing.error["code"] == "InputNotFound" and "line 7" in missing.error["message"]
    bad = run(flow, {"n": "three"})
    assert bad.error["code"] == "InputTypeError"
    assert isinstance(bad.exception, InputError)
    assert run(flow, {"n": 1, "tags": "[oops"}).error["code"] == "InputParseError"


def test_aggregation_over_successful_lines_with_metrics(make_flow):
    folder = make_flow({"flow.dag.yaml": """
inputs:
  x: {type: int}
outputs:
  y: {type: int, reference: "${sq.output}"}
nodes:
- name: sq
  type: python
  source: {type: code, path: sq.py}
  inputs: {x: "${inputs.x}"}
- name: agg
  type: python
  source: {type: code, path: agg.py}
  inputs: {values: "${sq.output}", xs: "${inputs.x}", label: total}
  aggregation: true
""", "sq.py": "from promptflow.core import tool\n\n@tool\ndef sq(x: int):\n    if x < 0:\n        raise ValueError('negative')\n    return x * x\n",
        "agg.py": "from promptflow.core import tool, log_metric\n\n@tool\ndef agg(values: list, xs: list, label: str):\n    log_metric(label, sum(values))\n    log_metric('n', len(xs))\n    log_metric('nan', float('nan'))\n    return {'values': values, 'xs': xs}\n"})
    flow = load_bound_flow(folder)

    async def go():
        lines = [await execute_line(flow, {"x": x}, line_number=i) for i, x in enumerate([1, -2, 3])]
        return lines, await execute_aggregation(flow, lines)

    lines, agg = asyncio.run(go())
    assert [line.status for line in lines] == ["Completed", "Failed", "Completed"]
    assert agg.status == "Completed"
    assert agg.metrics["total"] == 10 and agg.metrics["n"] == 2
    assert json.dumps(agg.metrics["nan"]) == "NaN"
    assert agg.outputs["agg"] == {"values": [1, 9], "xs": [1, 3]}


def test_log_metric_outside_aggregation_is_a_no_op():
    from pfkit import log_metric

    log_metric("x", 1)  # no sink, no error


def test_single_node_run(make_flow):
    folder = make_flow({"flow.dag.yaml": """
inputs:
  x: {type: int}
nodes:
- name: a
  type: python
  source: {type: code, path: a.py}
  inputs: {x: "${inputs.x}"}
- name: b
  type: python
  source: {type: code, path: b.py}
  inputs: {value: "${a.output.v}", scale: "${inputs.x}"}
""", "a.py": "from promptflow.core import tool\n\n@tool\ndef a(x: int):\n    return {'v': x}\n",
        "b.py": "from promptflow.core import tool\n\n@tool\ndef b(value: int, scale: int):\n    return value * scale\n"})
    flow = load_bound_flow(folder)
    result = asyncio.run(atest_node(flow, "b", {"a.output": {"v": 5}, "x": 3}))
    assert result.outputs == {"b": 15}
    with pytest.raises(InputError) as info:
        asyncio.run(atest_node(flow, "b", {"x": 3}))
    assert "a.output" in info.value.message


def test_python_api_flow_is_callable(make_flow):
    folder = make_flow({"flow.dag.yaml": """
inputs:
  name: {type: string, default: world}
outputs:
  greeting: {type: string, reference: "${hi.output}"}
nodes:
- name: hi
  type: python
  source: {type: code, path: hi.py}
  inputs: {name: "${inputs.name}"}
""", "hi.py": "from pfkit import tool\n\n@tool\ndef hi(name: str):\n    if name == 'boom':\n        raise RuntimeError('no')\n    return f'hello {name}'\n"})
    flow = pfkit.load_flow(folder)
    assert flow() == {"greeting": "hello world"}
    assert flow(name="ana") == {"greeting": "hello ana"}
    with pytest.raises(ExecutionError, match="Execution failure in 'hi': \\(RuntimeError\\) no"):
        flow(name="boom")


def test_python_api_works_inside_a_running_event_loop(make_flow):
    folder = make_flow({"flow.dag.yaml": """
outputs:
  o: {type: int, reference: "${a.output}"}
nodes:
- name: a
  type: python
  source: {type: code, path: a.py}
""", "a.py": "from promptflow.core import tool\n\n@tool\ndef a():\n    return 7\n"})
    flow = pfkit.load_flow(folder)

    async def inside_jupyter_like_loop():
        return flow()

    assert asyncio.run(inside_jupyter_like_loop()) == {"o": 7}


def test_environment_variables_are_set_for_the_run(make_flow, monkeypatch):
    monkeypatch.delenv("PFKIT_TEST_MODE", raising=False)
    folder = make_flow({"flow.dag.yaml": """
environment_variables:
  PFKIT_TEST_MODE: strict
  PFKIT_TEST_JSON: {a: 1}
outputs:
  mode: {type: string, reference: "${a.output}"}
nodes:
- name: a
  type: python
  source: {type: code, path: a.py}
""", "a.py": "import os\nfrom promptflow.core import tool\n\n@tool\ndef a():\n    return os.environ['PFKIT_TEST_MODE'] + os.environ['PFKIT_TEST_JSON']\n"})
    assert pfkit.load_flow(folder)() == {"mode": 'strict{"a": 1}'}
    import os

    assert "PFKIT_TEST_MODE" not in os.environ


def test_additional_includes_are_importable(make_flow, tmp_path):
    shared = tmp_path / "shared_lib"
    shared.mkdir()
    (shared / "helpers.py").write_text("def shout(s):\n    return s.upper()\n")
    folder = make_flow({"flow.dag.yaml": """
additional_includes:
- ../shared_lib
outputs:
  o: {type: string, reference: "${a.output}"}
nodes:
- name: a
  type: python
  source: {type: code, path: a.py}
""", "a.py": "from promptflow.core import tool\nfrom shared_lib.helpers import shout\n\n@tool\ndef a():\n    return shout('hi')\n"})
    assert pfkit.load_flow(folder)() == {"o": "HI"}


HOSTILE = """
inputs:
  x: {type: object}
  kind: {type: string, default: echo}
outputs:
  o: {type: object, reference: "${h.output}"}
nodes:
- name: h
  type: python
  source: {type: code, path: h.py}
  inputs: {x: "${inputs.x}", kind: "${inputs.kind}"}
"""
HOSTILE_TOOL = '''from promptflow.core import tool


class Trap:
    @property
    def boom(self):
        raise RuntimeError("property exploded")


@tool
def h(x, kind: str):
    if kind == "self":
        d = {"a": 1}
        d["me"] = d
        return d
    if kind == "huge":
        return 10 ** 5000
    if kind == "trap":
        return Trap()
    return x
'''


def deep(levels: int):
    value: list = []
    for _ in range(levels):
        value = [value]
    return value


@pytest.mark.parametrize(("inputs", "expected"), [
    ({"x": "ROW"}, "nested too deeply"),
    ({"x": 1, "kind": "self"}, "Circular reference detected"),
    ({"x": 1, "kind": "huge"}, "Exceeds the limit (4300 digits)"),
], ids=["row-nested-100000-deep", "output-contains-itself", "output-10**5000"])
def test_hostile_values_fail_their_line_not_the_engine(make_flow, inputs, expected):
    flow = load_bound_flow(make_flow({"flow.dag.yaml": HOSTILE, "h.py": HOSTILE_TOOL}))
    if inputs["x"] == "ROW":
        inputs = {"x": deep(100_000)}
    result = run(flow, inputs)
    assert result.status == "Failed"
    assert result.error["code"] == "FlowOutputValueInvalid"
    assert expected in result.error["message"]
    json.dumps(result.error)  # the error itself is plain data


def test_anything_raised_while_resolving_outputs_is_a_failed_line(make_flow):
    folder = make_flow({"flow.dag.yaml": HOSTILE.replace("${h.output}", "${h.output.boom}"),
                        "h.py": HOSTILE_TOOL})
    result = run(load_bound_flow(folder), {"x": 1, "kind": "trap"})
    assert result.status == "Failed"
    assert result.error["code"] == "LineExecutionError"
    assert "property exploded" in result.error["message"]
