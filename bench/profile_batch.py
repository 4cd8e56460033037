"""Where pfkit's batch time and memory go: cProfile / tracemalloc of one in-process run.

    .venv/bin/python bench/profile_batch.py llm   [--lines 1000] [--concurrency 32] [--top 30]
    .venv/bin/python bench/profile_batch.py large [--lines 100000] [--top 30]
    .venv/bin/python bench/profile_batch.py memory [--lines 100000] [--top 15]
    .venv/bin/python bench/profile_batch.py limiter [--calls 1000] [--top 30]

A diagnosis tool, not a benchmark (the profiler slows everything down; nothing is appended to
RESULTS.md). ``llm`` runs ``bench/flows/two_llm`` against the test server (in its own process,
50 ms) with ``pfkit.run(..., concurrency=32)`` under cProfile; ``large`` runs
``bench/flows/word_count`` under cProfile; ``memory`` runs it under tracemalloc and shows what
was allocated between 10 % and 90 % of the lines and is still held (what grows with the number
of lines); ``limiter`` profiles 1,000 calls of ``OpenAICompatibleModel.chat`` through the
connection's ``max_concurrency`` limiter, without a semaphore. Each prints the functions with the
most own time and the pfkit functions with the most cumulative time. Scratch files go to
``.bench/profile`` (git-ignored); data files are shared with ``bench/batch.py``.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import io
import os
import pstats
import shutil
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import FLOWS, REPO  # noqa: E402

SCRATCH = REPO / ".bench" / "profile"


def _print_stats(profile: cProfile.Profile, top: int) -> None:
    out = io.StringIO()
    stats = pstats.Stats(profile, stream=out)
    stats.strip_dirs().sort_stats("tottime").print_stats(top)
    print(out.getvalue())
    out = io.StringIO()
    stats = pstats.Stats(profile, stream=out)
    stats.sort_stats("cumtime").print_stats(r"pfkit/", top)
    print(out.getvalue().replace(str(REPO) + "/", ""))


def _home(name: str) -> Path:
    home = SCRATCH / name
    shutil.rmtree(home, ignore_errors=True)
    home.mkdir(parents=True)
    os.environ["PFKIT_HOME"] = str(home)
    os.environ.pop("PFKIT_CACHE", None)
    return home


def profile_llm(lines: int, concurrency: int, top: int) -> None:
    import subprocess

    import batch

    from pfkit.testing import TestServerProcess

    data = batch.write_jsonl(batch.DATA / f"questions_{lines}.jsonl", lines, batch.question_row)
    home = _home("llm")
    with TestServerProcess(latency=0.05) as server:
        conn = home / "conn.yaml"
        conn.write_text(f"name: bench_oai\ntype: open_ai\napi_key: sk-bench\n"
                        f"base_url: {server.base_url}\n", encoding="utf-8")
        subprocess.run([sys.executable, "-m", "pfkit", "connection", "create", "--file",
                        str(conn)], check=True, capture_output=True)
        import pfkit

        profile = cProfile.Profile()
        start = time.perf_counter()
        cpu = time.process_time()
        profile.enable()
        run = pfkit.run(FLOWS / "two_llm", data, concurrency=concurrency, name="prof-llm")
        profile.disable()
        print(f"{lines} lines, status {run.status}: wall {time.perf_counter() - start:.2f} s, "
              f"CPU {time.process_time() - cpu:.2f} s (under cProfile)\n")
    _print_stats(profile, top)


def profile_large(lines: int, top: int) -> None:
    import batch

    import pfkit

    data = batch.write_jsonl(batch.DATA / f"text_{lines}.jsonl", lines, batch.text_row)
    _home("large")
    profile = cProfile.Profile()
    start = time.perf_counter()
    profile.enable()
    run = pfkit.run(FLOWS / "word_count", data, name="prof-large")
    profile.disable()
    print(f"{lines} lines, status {run.status}: wall {time.perf_counter() - start:.2f} s "
          "(under cProfile)\n")
    _print_stats(profile, top)


def profile_memory(lines: int, top: int) -> None:
    import tracemalloc

    import batch

    import pfkit
    from pfkit.runs import _store

    data = batch.write_jsonl(batch.DATA / f"text_{lines}.jsonl", lines, batch.text_row)
    _home("memory")
    snapshots: dict[str, tracemalloc.Snapshot] = {}
    original = _store.RunWriter.write_line
    written = 0

    def write_line(self, *args, **kwargs):
        nonlocal written
        written += 1
        if written in (lines // 10, lines * 9 // 10):
            snapshots[f"{written} lines"] = tracemalloc.take_snapshot()
            print(f"after {written:,} lines: traced {tracemalloc.get_traced_memory()[0] / 2**20:.1f}"
                  " MB", flush=True)
        return original(self, *args, **kwargs)

    _store.RunWriter.write_line = write_line
    tracemalloc.start(10)
    try:
        run = pfkit.run(FLOWS / "word_count", data, name="prof-memory")
    finally:
        _store.RunWriter.write_line = original
    print(f"{lines:,} lines, status {run.status}; traced peak over the run "
          f"{tracemalloc.get_traced_memory()[1] / 2**20:.1f} MB\n")
    filters = [tracemalloc.Filter(False, tracemalloc.__file__)]
    first, last = (snapshots[k].filter_traces(filters) for k in snapshots)
    diff = last.compare_to(first, "traceback")
    print(f"allocated between 10 % and 90 % of the lines and still held (top {top}):")
    for stat in diff[:top]:
        print(f"\n{stat.size_diff / 2**20:+.2f} MB in {stat.count_diff:+,} blocks")
        for line in stat.traceback.format(limit=10):
            print("   " + line.replace(str(REPO) + "/", ""))


def profile_limiter(calls: int, top: int) -> None:
    from pfkit.providers._limits import Limits
    from pfkit.providers._openai import OpenAICompatibleModel
    from pfkit.testing import TestServerProcess

    async def main(base_url: str) -> None:
        model = OpenAICompatibleModel(kind="openai", api_key="sk-bench", base_url=base_url,
                                      connection="bench", limits=Limits(max_concurrency=32))

        async def call(i: int) -> None:
            await model.chat({"model": "m", "temperature": 0,
                              "messages": [{"role": "user", "content": f"q {i}"}]})

        await asyncio.gather(*(call(i) for i in range(32)))
        profile = cProfile.Profile()
        start = time.perf_counter()
        profile.enable()
        await asyncio.gather(*(call(i) for i in range(calls)))
        profile.disable()
        print(f"{calls} calls through the limiter: {time.perf_counter() - start:.2f} s "
              "(under cProfile)\n")
        _print_stats(profile, top)

    with TestServerProcess(latency=0.05) as server:
        asyncio.run(main(server.base_url))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("case", choices=("llm", "large", "memory", "limiter"))
    parser.add_argument("--lines", type=int)
    parser.add_argument("--calls", type=int, default=1000)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--top", type=int, default=30)
    args = parser.parse_args()
    if args.case == "llm":
        profile_llm(args.lines or 1000, args.concurrency, args.top)
    elif args.case == "large":
        profile_large(args.lines or 100_000, args.top)
    elif args.case == "memory":
        profile_memory(args.lines or 100_000, args.top)
    else:
        profile_limiter(args.calls, args.top)
    return 0


if __name__ == "__main__":
    sys.exit(main())
