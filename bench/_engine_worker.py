"""One repetition of bench/engine.py, in a fresh process: load a flow once, run ``warmup`` lines,
then time ``lines`` lines and write the figures as JSON to ``--out``.

Runs under either venv's Python, so it imports only the standard library at the top:

    python bench/_engine_worker.py IMPL FLOW_DIR --lines N --warmup W --out FILE

IMPL is one of:
  bare              a plain loop calling the flow's tool functions directly, in the flow's order
                    (the physical limit: no engine at all)
  pfkit             ``await pfkit.engine.execute_line(flow, inputs, line_number=i)`` (default
                    600 s line timeout, so one timer per line)
  pfkit-no-timeout  the same with ``timeout=None``
  promptflow        ``FlowExecutor.create(...).exec_line(inputs, index=i)`` (promptflow venv)

Every implementation builds a fresh inputs dict per line and checks the last line's output.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import sys
import time
import types
from pathlib import Path

INPUTS = {"text": "hi"}
EXPECTED = {"one_node": "hi", "ten_nodes": "hi1234567890"}
NODES = {"one_node": 1, "ten_nodes": 10}


# --------------------------------------------------------------------------- the bare loop

def _load_module(path: Path) -> types.ModuleType:
    spec = importlib.util.spec_from_file_location(f"bench_tool_{path.stem}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _stub_promptflow() -> None:
    """``from promptflow.core import tool`` with ``tool`` returning the function itself, so the
    bare loop calls the undecorated functions (no engine, no shim, no tracing)."""
    def tool(func=None, **_kwargs):
        return func if func is not None else (lambda f: f)

    pkg = types.ModuleType("promptflow")
    pkg.__path__ = []
    core = types.ModuleType("promptflow.core")
    core.tool = tool
    pkg.core = core
    sys.modules.setdefault("promptflow", pkg)
    sys.modules.setdefault("promptflow.core", core)


def bare_one_node(flow_dir: Path):
    echo = _load_module(flow_dir / "echo.py").echo

    def loop(count: int) -> dict | None:
        outputs = None
        for _ in range(count):
            inputs = dict(INPUTS)
            outputs = {"output": echo(text=inputs["text"])}
        return outputs

    return loop


def bare_ten_nodes(flow_dir: Path):
    step = _load_module(flow_dir / "step.py").step

    def loop(count: int) -> dict | None:
        outputs = None
        for _ in range(count):
            inputs = dict(INPUTS)
            v = step(text=inputs["text"], suffix="1")
            v = step(text=v, suffix="2")
            v = step(text=v, suffix="3")
            v = step(text=v, suffix="4")
            v = step(text=v, suffix="5")
            v = step(text=v, suffix="6")
            v = step(text=v, suffix="7")
            v = step(text=v, suffix="8")
            v = step(text=v, suffix="9")
            v = step(text=v, suffix="0")
            outputs = {"output": v}
        return outputs

    return loop


BARE = {"one_node": bare_one_node, "ten_nodes": bare_ten_nodes}


def run_bare(flow_dir: Path, lines: int, warmup: int) -> tuple[float, dict]:
    _stub_promptflow()
    loop = BARE[flow_dir.name](flow_dir)
    loop(warmup)
    start = time.perf_counter()
    outputs = loop(lines)
    return time.perf_counter() - start, outputs


# --------------------------------------------------------------------------- pfkit

def run_pfkit(flow_dir: Path, lines: int, warmup: int, *,
              timeout: bool) -> tuple[float, dict, list[str]]:
    import asyncio

    from pfkit.engine import execute_line, load_bound_flow

    flow = load_bound_flow(flow_dir)
    kwargs = {} if timeout else {"timeout": None}

    async def main() -> tuple[float, dict]:
        for i in range(warmup):
            result = await execute_line(flow, dict(INPUTS), line_number=i, **kwargs)
        start = time.perf_counter()
        for i in range(warmup, warmup + lines):
            result = await execute_line(flow, dict(INPUTS), line_number=i, **kwargs)
        elapsed = time.perf_counter() - start
        if result.status != "Completed":
            raise SystemExit(f"pfkit line failed: {result.error}")
        return elapsed, dict(result.outputs)

    elapsed, outputs = asyncio.run(main())
    # pfkit moves a sync node to worker threads for good once one call took longer than its
    # BLOCKING_THRESHOLD; report which nodes ended up there, since that changes the figure.
    blocking = [n.name for n in flow.nodes if getattr(n, "blocking", False)]
    return elapsed, outputs, blocking


# --------------------------------------------------------------------------- promptflow

def run_promptflow(flow_dir: Path, lines: int, warmup: int) -> tuple[float, dict]:
    from promptflow.executor import FlowExecutor

    executor = FlowExecutor.create("flow.dag.yaml", connections={}, working_dir=flow_dir)
    for i in range(warmup):
        result = executor.exec_line(dict(INPUTS), index=i)
    start = time.perf_counter()
    for i in range(warmup, warmup + lines):
        result = executor.exec_line(dict(INPUTS), index=i)
    elapsed = time.perf_counter() - start
    status = getattr(result.run_info.status, "value", result.run_info.status)
    if status != "Completed":
        raise SystemExit(f"promptflow line failed: {result.run_info.error}")
    outputs = {k: v for k, v in result.output.items() if k != "line_number"}
    return elapsed, outputs


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("impl", choices=["bare", "pfkit", "pfkit-no-timeout", "promptflow"])
    parser.add_argument("flow_dir", type=Path)
    parser.add_argument("--lines", type=int, required=True)
    parser.add_argument("--warmup", type=int, required=True)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    flow_dir = args.flow_dir.resolve()

    blocking: list[str] = []
    if args.impl == "bare":
        elapsed, outputs = run_bare(flow_dir, args.lines, args.warmup)
    elif args.impl == "promptflow":
        elapsed, outputs = run_promptflow(flow_dir, args.lines, args.warmup)
    else:
        elapsed, outputs, blocking = run_pfkit(flow_dir, args.lines, args.warmup,
                                               timeout=args.impl == "pfkit")

    expected = {"output": EXPECTED[flow_dir.name]}
    if outputs != expected:
        raise SystemExit(f"{args.impl}: wrong outputs {outputs!r}, expected {expected!r}")
    args.out.write_text(json.dumps({
        "impl": args.impl, "flow": flow_dir.name, "lines": args.lines, "warmup": args.warmup,
        "seconds": elapsed, "us_per_line": elapsed / args.lines * 1e6,
        "nodes": NODES[flow_dir.name], "blocking": blocking,
    }))
    return 0


if __name__ == "__main__":
    sys.exit(main())
