"""LLM call overhead, in-process: pfkit's OpenAI model vs the raw ``openai`` client.

    .venv/bin/python bench/llm.py [--runs 7] [--calls 1000] [--concurrency 32] [--latency 0.05]
                                  [--no-append]

1,000 chat calls against pfkit's OpenAI-compatible test server, running in its own process
(``pfkit.testing.TestServerProcess``, so it shares no GIL with the client) and answering every
request after 50 ms, at concurrency 32:

(a) raw ``openai.AsyncOpenAI`` (``max_retries=0``), ``asyncio.Semaphore(32)`` around each call,
    with its default httpx transport and (a2) with ``http_client=openai.DefaultAioHttpClient()``,
    the transport pfkit picks when aiohttp is installed (pfkit's overhead is judged against the
    raw client on the same transport);
(b) pfkit's ``OpenAICompatibleModel.chat`` (no connection limits), ``asyncio.Semaphore(32)``;
(c) pfkit's ``OpenAICompatibleModel.chat`` with the connection's own limiter
    (``Limits(max_concurrency=32)``), all 1,000 calls started at once, no semaphore.

Each measurement runs in a fresh event loop with a fresh client / model, first sends 32
untimed calls (so the connection pool is open), then times the 1,000 calls: wall clock and this
process's CPU time (``time.process_time``). Contestants alternate (A B C A B C ...) after a
warm-up round. Reports calls/s against the limit C / L = 640 calls/s, and pfkit's overhead per
call against the raw client (target: within 10 %).
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import (  # noqa: E402
    ForeignLoad,
    Stats,
    machine_load_note,
    markdown_table,
    publish,
    require_pfkit,
)

OVERHEAD_TARGET = 0.10  # pfkit within 10 % of the raw client
MODEL = "gpt-4o-mini"


@dataclass
class Measurement:
    wall: float        # s for the timed calls
    cpu: float         # s of this process's CPU time during them
    server_cpu: float  # s of the test server process's CPU time during them (-1 if unknown)
    calls: int


def _proc_cpu(pid: int | None) -> float:
    """utime + stime of a process, in seconds (-1 if unknown)."""
    if pid is None:
        return -1.0
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        import os
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return -1.0


def _messages(i: int) -> list[dict]:
    return [{"role": "system", "content": "You answer in one short sentence."},
            {"role": "user", "content": f"What is {i} + {i * 3}? Answer with the number only."}]


Call = Callable[[int], Awaitable[str]]


async def _drive(call: Call, calls: int, concurrency: int, semaphore: bool) -> int:
    """``calls`` calls, at most ``concurrency`` in flight (by a semaphore here, or not at all
    when the callee limits itself). Returns how many answers had content."""
    if semaphore:
        sem = asyncio.Semaphore(concurrency)

        async def one(i: int) -> str:
            async with sem:
                return await call(i)
    else:
        one = call
    answers = await asyncio.gather(*(one(i) for i in range(calls)))
    return sum(1 for a in answers if a)


def measure(make: Callable[[], tuple[Call, Callable[[], Awaitable[None]]]], *, calls: int,
            concurrency: int, semaphore: bool, server_pid: int | None) -> Measurement:
    async def main() -> Measurement:
        call, close = make()
        try:
            await _drive(call, concurrency, concurrency, True)  # open the connection pool
            gc.collect()
            s0, c0, t0 = _proc_cpu(server_pid), time.process_time(), time.perf_counter()
            ok = await _drive(call, calls, concurrency, semaphore)
            t1, c1, s1 = time.perf_counter(), time.process_time(), _proc_cpu(server_pid)
        finally:
            await close()
        if ok != calls:
            raise RuntimeError(f"only {ok} of {calls} calls returned content")
        return Measurement(t1 - t0, c1 - c0, s1 - s0 if s0 >= 0 and s1 >= 0 else -1.0, calls)

    return asyncio.run(main())


def raw_client(base_url: str, aiohttp: bool = False
               ) -> Callable[[], tuple[Call, Callable[[], Awaitable[None]]]]:
    def make():
        import openai

        extra = {"http_client": openai.DefaultAioHttpClient()} if aiohttp else {}
        client = openai.AsyncOpenAI(base_url=base_url, api_key="sk-bench", max_retries=0,
                                    timeout=600.0, **extra)

        async def call(i: int) -> str:
            result = await client.chat.completions.create(model=MODEL, messages=_messages(i),
                                                          temperature=0)
            return result.choices[0].message.content

        return call, client.close
    return make


def pfkit_model(base_url: str, max_concurrency: int | None
                ) -> Callable[[], tuple[Call, Callable[[], Awaitable[None]]]]:
    def make():
        from pfkit.providers._limits import Limits
        from pfkit.providers._openai import OpenAICompatibleModel

        model = OpenAICompatibleModel(kind="openai", api_key="sk-bench", base_url=base_url,
                                      connection="bench",
                                      limits=Limits(max_concurrency=max_concurrency))

        async def call(i: int) -> str:
            response = await model.chat({"model": MODEL, "messages": _messages(i),
                                         "temperature": 0})
            return response.message["content"]

        async def close() -> None:
            # Close the clients the model opened on this loop (pfkit's own helper when it has
            # one), so that every measurement starts from a fresh pool.
            from pfkit.providers import _openai

            closer = getattr(_openai, "close_loop_clients", None)
            if closer is not None:
                await closer()
            else:
                client = model._clients.get(asyncio.get_running_loop())
                if client is not None:
                    await client.close()
            if max_concurrency and model.limiter.max_in_flight_seen > max_concurrency:
                raise RuntimeError(f"the limiter let {model.limiter.max_in_flight_seen} calls "
                                   f"run at once (max_concurrency={max_concurrency})")

        return call, close
    return make


def pfkit_uses_aiohttp() -> bool:
    """pfkit's provider passes ``openai.DefaultAioHttpClient()`` when aiohttp is installed."""
    try:
        import openai

        from pfkit.providers import _openai
    except ImportError:
        return False
    helper = getattr(_openai, "_http_client", None)
    return helper is not None and helper(openai) is not None


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=7, help="measured rounds (default 7)")
    parser.add_argument("--warmup", type=int, default=1, help="warm-up rounds (default 1)")
    parser.add_argument("--calls", type=int, default=1000)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--latency", type=float, default=0.05)
    parser.add_argument("--no-append", action="store_true", help="do not write bench/RESULTS.md")
    args = parser.parse_args()
    if args.runs < 5 and not args.no_append:
        parser.error("--runs must be at least 5 (or use --no-append)")
    require_pfkit()

    import openai  # noqa: F401  (imported once, outside every measurement)

    from pfkit.testing import TestServerProcess

    C, L, N = args.concurrency, args.latency, args.calls
    names = {
        "raw": f"(a) raw `openai.AsyncOpenAI` (httpx), Semaphore({C})",
        "raw_aio": f"(a2) raw `openai.AsyncOpenAI` (aiohttp), Semaphore({C})",
        "kit_sem": f"(b) pfkit `OpenAICompatibleModel.chat`, Semaphore({C})",
        "kit_lim": f"(c) pfkit model, connection `max_concurrency={C}`, no semaphore",
    }
    with TestServerProcess(latency=L) as server:
        proc = getattr(server, "_process", None)
        server_pid = proc.pid if proc is not None else None
        print(f"test server: {server.base_url} (latency {L:g} s, pid {server_pid})",
              file=sys.stderr)
        contestants = {
            "raw": (raw_client(server.base_url), True),
            "raw_aio": (raw_client(server.base_url, aiohttp=True), True),
            "kit_sem": (pfkit_model(server.base_url, None), True),
            "kit_lim": (pfkit_model(server.base_url, C), False),
        }
        results: dict[str, list[Measurement]] = {k: [] for k in contestants}
        load = ForeignLoad().__enter__()
        for round_ in range(args.warmup + args.runs):
            for key, (make, sem) in contestants.items():
                m = measure(make, calls=N, concurrency=C, semaphore=sem, server_pid=server_pid)
                tag = "warm-up" if round_ < args.warmup else f"run {round_ - args.warmup + 1}"
                print(f"  {tag:>8}  {names[key]:<66} {m.wall:.3f} s  {N / m.wall:6.0f} calls/s"
                      f"  cpu {m.cpu * 1e6 / N:5.0f} µs/call"
                      f"  server cpu {m.server_cpu * 1e6 / N:5.0f} µs/call",
                      file=sys.stderr, flush=True)
                if round_ >= args.warmup:
                    results[key].append(m)
        load.__exit__(None, None, None)

    limit_rate = C / L
    ideal_wall = -(-N // C) * L
    wall = {k: Stats.of([m.wall for m in v]) for k, v in results.items()}
    rate = {k: Stats.of([N / m.wall for m in v]) for k, v in results.items()}
    cpu = {k: Stats.of([m.cpu / N * 1e6 for m in v]) for k, v in results.items()}
    srv = {k: Stats.of([m.server_cpu / N * 1e6 for m in v]) for k, v in results.items()}
    ref = "raw_aio" if pfkit_uses_aiohttp() else "raw"
    raw_wall = wall[ref].median
    rows = []
    for key in contestants:
        is_raw = key.startswith("raw")
        over = wall[key].median / raw_wall - 1
        met = "" if is_raw else ("yes" if over <= OVERHEAD_TARGET else "**no**")
        rows.append([
            names[key], wall[key].fmt(unit=" s"), rate[key].fmt(digits=0),
            f"{rate[key].median / limit_rate:.2f}×",
            "(reference)" if key == ref else f"{over * 100:+.1f} %",
            "" if key == ref else f"{(wall[key].median - raw_wall) / N * C * 1e3:+.2f} ms",
            cpu[key].fmt(digits=0, unit=" µs"),
            "" if key == ref else f"{cpu[key].median - cpu[ref].median:+.0f} µs",
            srv[key].fmt(digits=0, unit=" µs"), met,
        ])
    table = markdown_table(
        [f"{N:,} chat calls, concurrency {C}", "wall, median (min–max)",
         "calls/s, median (min–max)", f"÷ limit ({limit_rate:.0f} calls/s)",
         "wall vs reference", "extra latency per call (wall)",
         "client CPU per call, median (min–max)", "client CPU vs reference",
         "server CPU per call", f"within {OVERHEAD_TARGET:.0%} of reference"],
        rows)
    notes = [
        f"{args.runs} measured rounds after {args.warmup} warm-up round(s), contestants "
        "alternated (a b c a b c ...), all in one process; each measurement: fresh event loop, "
        f"fresh client / model, {C} untimed calls to open the connection pool, then the {N:,} "
        "timed calls, each answer checked for content.",
        f"The limit: C / L = {C} / {L:g} s = {limit_rate:.0f} calls/s (ceil({N} / {C}) × {L:g} s"
        f" = {ideal_wall:.2f} s for {N:,} calls, i.e. {N / ideal_wall:.0f} calls/s).",
        f"The reference is the raw client on the transport pfkit uses here ({names[ref]}): "
        "wall vs reference = the median wall ÷ the reference's − 1 (the target for pfkit: "
        "≤ +10 %); extra "
        f"latency per call = the difference in wall time × {C} ÷ {N:,} (what each call waited "
        "longer); client CPU = `time.process_time()` of this process over the timed calls ÷ "
        "calls (event loop, openai client, httpx and pfkit); server CPU = the test server "
        "process's utime + stime ÷ calls (it runs in its own process).",
        "pfkit's model keeps one openai client per event loop; the clients it opened are "
        "closed after each measurement (`pfkit.providers._openai.close_loop_clients`).",
        f"machine: {load.summary()}; {machine_load_note()}.",
    ]
    body = table + "\n\n" + "\n".join(f"- {n}" for n in notes)
    publish("LLM call overhead: pfkit's OpenAI model vs the raw client (bench/llm.py)", body,
            append=not args.no_append)
    return 0


if __name__ == "__main__":
    sys.exit(main())
