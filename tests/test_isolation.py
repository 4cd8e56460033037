"""Several flows in one process: each tool sees its own folder, files, environment and modules;
the process's directory, sys.path and environment are as before afterwards."""

from __future__ import annotations

import asyncio
import os
import sys
import textwrap
import threading
import types
from pathlib import Path

import pytest

import pfkit
from pfkit.engine import load_executable

PROBE = "isolation_probe_events"


def write_flow(folder: Path, who: str, *, sync: bool) -> Path:
    folder.mkdir(parents=True)
    (folder / "marker.txt").write_text(f"marker of {who}\n", encoding="utf-8")
    (folder / "helpers.py").write_text(f"NAME = 'helpers of {who}'\n", encoding="utf-8")
    if sync:
        body = """
            import os, time
            from promptflow.core import tool
            import helpers
            import isolation_probe_events as events

            def seen():
                import helpers as again  # imported at call time, too
                with open("marker.txt", encoding="utf-8") as fh:
                    return [os.getcwd(), os.environ.get("WHO"), fh.read().strip(), helpers.NAME,
                            again.NAME]

            @tool
            def probe(delay: float, tag: str) -> dict:
                events.log.append(("start", os.environ.get("WHO")))
                first = seen()
                time.sleep(delay)
                second = seen()
                events.log.append(("end", os.environ.get("WHO")))
                return {"first": first, "second": second}
            """
    else:
        body = """
            import asyncio, os
            from promptflow.core import tool
            import helpers
            import isolation_probe_events as events

            def seen():
                import helpers as again
                with open("marker.txt", encoding="utf-8") as fh:
                    return [os.getcwd(), os.environ.get("WHO"), fh.read().strip(), helpers.NAME,
                            again.NAME]

            @tool
            async def probe(delay: float, tag: str) -> dict:
                events.log.append(("start", os.environ.get("WHO")))
                first = seen()
                await asyncio.sleep(delay)
                second = seen()
                events.log.append(("end", os.environ.get("WHO")))
                return {"first": first, "second": second}
            """
    (folder / "probe.py").write_text(textwrap.dedent(body), encoding="utf-8")
    (folder / "flow.dag.yaml").write_text(textwrap.dedent(f"""
        environment_variables:
          WHO: {who}
        inputs:
          delay: {{type: double, default: 0.05}}
          tag: {{type: string, default: x}}
        outputs:
          first: {{type: object, reference: "${{probe.output.first}}"}}
          second: {{type: object, reference: "${{probe.output.second}}"}}
        nodes:
        - name: probe
          type: python
          source: {{type: code, path: probe.py}}
          inputs: {{delay: "${{inputs.delay}}", tag: "${{inputs.tag}}"}}
        """), encoding="utf-8")
    return folder


def expected(folder: Path, who: str) -> list[str]:
    return [str(folder), who, f"marker of {who}", f"helpers of {who}", f"helpers of {who}"]


@pytest.fixture
def events():
    module = types.ModuleType(PROBE)
    module.log = []
    sys.modules[PROBE] = module
    yield module.log
    sys.modules.pop(PROBE, None)


@pytest.fixture
def process_state(tmp_path, monkeypatch):
    """The process state before; the test asserts it is the same after."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("WHO", raising=False)
    def environment() -> dict[str, str]:
        return {k: v for k, v in os.environ.items() if k != "PYTEST_CURRENT_TEST"}

    before = (os.getcwd(), list(sys.path), environment())

    def unchanged() -> None:
        assert os.getcwd() == before[0]
        assert sys.path == before[1]
        assert environment() == before[2]
        assert "helpers" not in sys.modules

    return unchanged


def assert_never_overlapped(log: list[tuple[str, str]]) -> None:
    """At any moment, the tool calls in progress all belong to one flow."""
    active: dict[str, int] = {}
    for what, who in log:
        if what == "start":
            assert all(n == 0 for w, n in active.items() if w != who), log
            active[who] = active.get(who, 0) + 1
        else:
            active[who] -= 1


@pytest.mark.parametrize("sync", [False, True], ids=["async-tool", "sync-tool"])
def test_two_overlapping_calls_of_one_flow(tmp_path, events, process_state, sync):
    folder = write_flow(tmp_path / "a", "A", sync=sync)
    flow = load_executable(folder)

    async def main():
        # a timeout makes a sync tool run in worker threads, so the two calls really overlap
        return await asyncio.gather(*(flow.arun({"tag": str(i)}, line_number=i, timeout=30)
                                      for i in range(2)))

    results = asyncio.run(main())
    for result in results:
        assert result.status == "Completed", result.error
        assert result.outputs["first"] == expected(folder, "A")
        assert result.outputs["second"] == expected(folder, "A")
    starts = [i for i, (what, _) in enumerate(events) if what == "start"]
    assert starts == [0, 1]  # the same flow's calls overlapped
    process_state()


@pytest.mark.parametrize("sync", [False, True], ids=["async-tools", "sync-tools"])
def test_two_flows_at_once_with_gather(tmp_path, events, process_state, sync):
    a = write_flow(tmp_path / "a", "A", sync=sync)
    b = write_flow(tmp_path / "b", "B", sync=sync)
    flow_a, flow_b = load_executable(a), load_executable(b)

    async def main():
        calls = []
        for i in range(3):
            calls.append(flow_a.arun({"tag": str(i)}, line_number=i, timeout=30))
            calls.append(flow_b.arun({"tag": str(i)}, line_number=i, timeout=30))
        return await asyncio.gather(*calls)

    results = asyncio.run(main())
    for i, result in enumerate(results):
        folder, who = (a, "A") if i % 2 == 0 else (b, "B")
        assert result.status == "Completed", result.error
        assert result.outputs["first"] == expected(folder, who)
        assert result.outputs["second"] == expected(folder, who)
    assert len(events) == 12
    assert_never_overlapped(events)
    process_state()


def test_two_flows_from_two_threads(tmp_path, events, process_state):
    a = write_flow(tmp_path / "a", "A", sync=True)
    b = write_flow(tmp_path / "b", "B", sync=False)
    flows = {"A": (a, pfkit.load_flow(a)), "B": (b, pfkit.load_flow(b))}
    own_loop = {"A": (a, load_executable(a)), "B": (b, load_executable(b))}
    results: dict[str, list] = {"A": [], "B": []}
    errors: list[BaseException] = []

    def worker(who: str) -> None:
        try:
            folder, flow = flows[who]
            for _ in range(3):  # sync calls: the session's background loop
                results[who].append((folder, flow(delay=0.02)))
            folder, executable = own_loop[who]

            async def on_own_loop():  # and a loop of this thread's own
                return await executable.arun({"delay": 0.02}, timeout=30)

            line = asyncio.run(on_own_loop())
            assert line.status == "Completed", line.error
            results[who].append((folder, line.outputs))
        except BaseException as exc:  # noqa: BLE001 - reported by the test
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(who,)) for who in ("A", "B")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert not errors, errors
    for who, got in results.items():
        assert len(got) == 4
        for folder, outputs in got:
            assert outputs["first"] == expected(folder, who)
            assert outputs["second"] == expected(folder, who)
    assert_never_overlapped(events)
    process_state()


def test_a_waiting_flow_is_not_starved(tmp_path, events, process_state):
    """B arrives while A's calls keep coming: B runs before A's later calls (first in, first
    out), instead of waiting until A has nothing left to do."""
    a = write_flow(tmp_path / "a", "A", sync=False)
    b = write_flow(tmp_path / "b", "B", sync=False)
    flow_a, flow_b = load_executable(a), load_executable(b)

    async def main():
        first = asyncio.ensure_future(flow_a.arun({"delay": 0.1}))
        await asyncio.sleep(0.02)  # A holds the gate
        waiting_b = asyncio.ensure_future(flow_b.arun({"delay": 0.01}))
        await asyncio.sleep(0.02)
        later_a = asyncio.ensure_future(flow_a.arun({"delay": 0.01}))
        return await asyncio.gather(first, waiting_b, later_a)

    results = asyncio.run(main())
    assert all(r.status == "Completed" for r in results)
    assert [who for what, who in events if what == "start"] == ["A", "B", "A"]
    process_state()


def test_with_environment_is_a_new_flow(tmp_path, events, process_state):
    folder = write_flow(tmp_path / "a", "A", sync=False)
    flow = load_executable(folder)
    other = flow.with_environment({"WHO": "override"})
    assert flow.environment["WHO"] == "A" and other.environment["WHO"] == "override"

    async def main():
        return await asyncio.gather(flow.arun({}), other.arun({}))

    plain, overridden = asyncio.run(main())
    assert plain.outputs["first"][1] == "A"
    assert overridden.outputs["first"][1] == "override"
    assert overridden.outputs["first"][2] == "marker of A"  # same folder, same code
    assert_never_overlapped(events)
    process_state()


def test_binding_imports_from_the_flow_folder_and_restores(tmp_path, process_state):
    a = write_flow(tmp_path / "a", "A", sync=True)
    b = write_flow(tmp_path / "b", "B", sync=True)
    sys.modules[PROBE] = types.ModuleType(PROBE)
    sys.modules[PROBE].log = []
    try:
        flow_a, flow_b = load_executable(a), load_executable(b)  # both have helpers.py
        line_a = asyncio.run(flow_a.arun({"delay": 0}))
        line_b = asyncio.run(flow_b.arun({"delay": 0}))
    finally:
        sys.modules.pop(PROBE, None)
    assert line_a.outputs["first"][3] == "helpers of A"
    assert line_b.outputs["first"][3] == "helpers of B"
    process_state()


def test_two_overlapping_atest_calls_of_one_flow(tmp_path, events, process_state):
    from pfkit.flows import atest

    folder = write_flow(tmp_path / "a", "A", sync=False)
    flow = pfkit.load_flow(folder)

    async def main():
        return await asyncio.gather(atest(flow.bound, {"tag": "1"}), atest(flow.bound, {"tag": "2"}))

    for result in asyncio.run(main()):
        assert result.outputs["first"] == expected(folder, "A")
        assert result.outputs["second"] == expected(folder, "A")
    assert [what for what, _ in events] == ["start", "start", "end", "end"]
    process_state()


def test_a_tool_that_calls_another_flow_in_process(tmp_path, events, process_state):
    """Flow A's tool calls flow B (sync, and async in an async tool): B's tools see B's folder
    and environment, A's tool sees A's again afterwards, and nothing waits for itself."""
    inner = write_flow(tmp_path / "b", "B", sync=True)
    outer = tmp_path / "a"
    outer.mkdir()
    (outer / "marker.txt").write_text("marker of A\n", encoding="utf-8")
    (outer / "call.py").write_text(textwrap.dedent(f"""
        import os
        import pfkit
        from promptflow.core import tool

        INNER = pfkit.load_flow({str(inner)!r})

        @tool
        def call_sync(mode: str) -> dict:
            got = INNER(delay=0)
            with open("marker.txt", encoding="utf-8") as fh:
                return {{"inner": got["first"], "after": [os.getcwd(), os.environ.get("WHO"),
                                                         fh.read().strip()]}}

        @tool
        async def call_async(mode: str) -> dict:
            got = await INNER.arun(delay=0)
            return {{"inner": got["first"], "after": [os.getcwd(), os.environ.get("WHO")]}}
        """), encoding="utf-8")
    (outer / "sync.py").write_text("from call import call_sync\n", encoding="utf-8")
    (outer / "flow.dag.yaml").write_text(textwrap.dedent("""
        environment_variables:
          WHO: A
        inputs:
          mode: {type: string, default: x}
        outputs:
          o: {type: object, reference: "${n.output}"}
        nodes:
        - name: n
          type: python
          source: {type: code, path: call.py}
          inputs: {mode: "${inputs.mode}"}
        """), encoding="utf-8")
    # one tool per flow file: keep call_sync, then call_async
    text = (outer / "call.py").read_text()
    sync_only = text.replace("@tool\nasync def call_async", "async def call_async")
    async_only = text.replace("@tool\ndef call_sync", "def call_sync")
    for source, timeout in ((sync_only, None), (sync_only, 30), (async_only, None)):
        (outer / "call.py").write_text(source, encoding="utf-8")
        flow = load_executable(outer)

        async def main(flow=flow, timeout=timeout):
            return await flow.arun({}, timeout=timeout)

        line = asyncio.run(main())
        assert line.status == "Completed", line.error
        assert line.outputs["o"]["inner"] == expected(inner, "B")
        assert line.outputs["o"]["after"][:2] == [str(outer), "A"]
    process_state()


def test_a_resident_flow_stays_applied_between_calls_and_yields_to_others(
        tmp_path, events, process_state):
    """``resident(flow)`` (pfkit flow serve: a process serving one flow) keeps its folder and
    environment applied between calls; another flow still runs in its own, and afterwards the
    resident flow's context comes back; leaving restores the process state."""
    from pfkit.engine import resident

    a = write_flow(tmp_path / "a", "A", sync=False)
    b = write_flow(tmp_path / "b", "B", sync=False)
    flow_a, flow_b = load_executable(a), load_executable(b)

    async def main():
        with resident(flow_a):
            first = await flow_a.arun({"delay": 0}, line_number=0)
            await asyncio.sleep(0)  # a deferred restore would run now
            between = (os.getcwd(), os.environ.get("WHO"))
            other = await flow_b.arun({"delay": 0}, line_number=1)
            await asyncio.sleep(0)
            after_other = (os.getcwd(), os.environ.get("WHO"))
            again = await flow_a.arun({"delay": 0}, line_number=2)
            await asyncio.sleep(0)
            kept = (os.getcwd(), os.environ.get("WHO"))
        return first, between, other, after_other, again, kept

    first, between, other, after_other, again, kept = asyncio.run(main())
    assert first.outputs["first"] == expected(a, "A")
    assert between == (str(a), "A")
    assert other.outputs["first"] == expected(b, "B")
    assert after_other == (str(tmp_path), None)  # the other flow's context is never kept
    assert again.outputs["first"] == expected(a, "A")
    assert kept == (str(a), "A")
    process_state()
