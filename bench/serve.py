"""Serving throughput and latency: pfkit flow serve vs promptflow's pf flow serve vs a bare
Starlette app on uvicorn (the limit for one worker), in the same run.

    .venv/bin/python bench/serve.py [--duration 20] [--connections 16 64] [--runs 1]
                                    [--only pfkit,pfkit2,promptflow,bare,llm0,llm,llm2] [--quick]
                                    [--no-append]

(1) A python flow (``bench/flows/one_node``: one node echoing its input) behind each server, hit
    with 16 and then 64 concurrent keep-alive connections for ``--duration`` seconds from a load
    generator in this process (a minimal asyncio HTTP/1.1 client, ``bench/_minihttp.py``, far
    cheaper per request than aiohttp; 127.0.0.1 only, bounded by time and by
    ``--max-requests``): requests/s, p50 and p99 latency, errors.
      - pfkit: ``pfkit flow serve --workers 1`` (and ``pfkit2``: ``--workers 2``);
      - promptflow: ``pf flow serve`` (1.18.5, Flask's development server), from
        ``.bench/promptflow-venv``, tracing off;
      - bare: a Starlette app on uvicorn (same loop and HTTP parser as pfkit's) that answers
        the same JSON without running anything: the limit of the stack for one worker.
(2) An llm flow (one chat node) on pfkit's test server, answering after 100 ms, with 64
    connections: the limit is 64 / 0.1 s = 640 requests/s (``llm``: one worker; ``llm2``:
    ``--workers 2``). The test server runs in ``--server-processes`` processes (default 2)
    sharing one port: in one Python process a burst of 64 requests is parsed and answered one
    after another, which alone held the floor at 0.88x. ``llm0`` is the floor: the same load
    generator sending the chat request itself straight to the test server, no pfkit in between
    (what the load generator and the test server, sharing the 2 cores, leave of the limit).

Each server runs in its own process, started fresh, warmed up for 1 s (untimed), measured, then
stopped. Targets (issue 12): pfkit >= 0.75x bare with one worker and p99 <= 20 ms at 16
connections; the llm flow >= 0.9x its limit. The load generator shares the 2 cores with the
server, so every row is measured the same way; the bare row shows what that costs.
``--quick`` is a smoke check (2 s per cell, nothing appended to RESULTS.md).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import (  # noqa: E402
    FLOWS,
    PF_CLI,
    PFKIT_CLI,
    PFKIT_PY,
    ForeignLoad,
    machine_load_note,
    markdown_table,
    pf_env,
    pfkit_env,
    publish,
    require_pfkit,
    require_promptflow,
)
from _minihttp import MiniHttpClient  # noqa: E402

PY_FLOW = FLOWS / "one_node"
BODY = {"text": "hello from the load generator"}
LLM_LATENCY = 0.1
LLM_CONNECTIONS = 64

BARE_APP = """
import json, sys
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

async def score(request: Request) -> Response:
    data = json.loads(await request.body())
    return Response(json.dumps({"output": data["text"]}, ensure_ascii=False).encode(),
                    media_type="application/json")

async def health(request: Request) -> Response:
    return Response(b'{"status": "Healthy"}', media_type="application/json")

app = Starlette(routes=[Route("/score", score, methods=["POST"]),
                        Route("/health", health, methods=["GET"])])
uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[1]), log_level="warning",
            access_log=False, server_header=False)
"""

LLM_FLOW = """
inputs:
  question: {type: string}
outputs:
  answer: {type: string, reference: "${chat.output}"}
nodes:
- name: chat
  type: llm
  source: {type: code, path: chat.jinja2}
  connection: bench_serve_llm
  api: chat
  inputs: {model: gpt-4o-mini, temperature: 0, question: "${inputs.question}"}
"""


@dataclass
class Cell:
    contestant: str
    connections: int
    requests: int
    errors: int
    seconds: float
    p50: float
    p99: float

    @property
    def rate(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, int(round(q * (len(ordered) - 1)))))
    return ordered[index]


# --------------------------------------------------------------------------- the load generator

async def _load(port: int, connections: int, seconds: float, max_requests: int, body: dict,
                record: bool, close: bool = False, path: str = "/score"
                ) -> tuple[int, int, list[float], float]:
    """``connections`` keep-alive connections, each posting ``body`` back to back, through the
    minimal client (``bench/_minihttp.py``): its CPU per request is a fraction of aiohttp's,
    and it shares the 2 cores with the server being measured."""
    payload = json.dumps(body).encode()
    headers = {"Content-Type": "application/json"}
    latencies: list[float] = []
    counts = {"ok": 0, "errors": 0, "sent": 0}
    start = time.perf_counter()
    deadline = start + seconds

    async def worker() -> None:
        client = MiniHttpClient("127.0.0.1", port)
        try:
            while time.perf_counter() < deadline and counts["sent"] < max_requests:
                counts["sent"] += 1
                began = time.perf_counter()
                try:
                    status, _ = await asyncio.wait_for(client.post(path, payload, headers), 60)
                    ok = status == 200
                except (OSError, asyncio.TimeoutError, asyncio.IncompleteReadError, ValueError):
                    ok = False
                if close or not ok:
                    await client.close()  # a new connection for the next request
                if ok:
                    counts["ok"] += 1
                    if record:
                        latencies.append(time.perf_counter() - began)
                else:
                    counts["errors"] += 1
        finally:
            await client.close()

    await asyncio.gather(*(worker() for _ in range(connections)))
    return counts["ok"], counts["errors"], latencies, time.perf_counter() - start


def measure(name: str, port: int, connections: int, seconds: float, max_requests: int,
            body: dict, path: str = "/score") -> Cell:
    close = False  # keep-alive connections for every server
    asyncio.run(_load(port, connections, min(1.0, seconds), max_requests, body, False,
                      close, path))  # warm up, untimed
    ok, errors, latencies, elapsed = asyncio.run(
        _load(port, connections, seconds, max_requests, body, True, close, path))
    return Cell(name, connections, ok, errors, elapsed, percentile(latencies, 0.5) * 1000,
                percentile(latencies, 0.99) * 1000)


# --------------------------------------------------------------------------- the servers

class Server:
    def __init__(self, cmd: list[str], env: dict[str, str], port: int, cwd: Path) -> None:
        self.cmd, self.env, self.port, self.cwd = cmd, env, port, cwd
        self.process: subprocess.Popen | None = None
        self.log: Any = None

    def __enter__(self) -> Server:
        # its log goes to a file: a pipe nobody reads would fill and stall a chatty server
        self.log = tempfile.TemporaryFile(dir=self.cwd)
        self.process = subprocess.Popen(self.cmd, env=self.env, cwd=self.cwd,
                                        stdout=subprocess.DEVNULL, stderr=self.log,
                                        start_new_session=True)
        deadline = time.monotonic() + 120
        import http.client

        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                self.log.seek(0)
                raise RuntimeError(f"{self.cmd[0]} exited: {self.log.read().decode()[-2000:]}")
            try:
                conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=2)
                conn.request("GET", "/health")
                if conn.getresponse().status == 200:
                    conn.close()
                    return self
                conn.close()
            except OSError:
                pass
            time.sleep(0.1)
        self.__exit__()
        raise RuntimeError(f"{' '.join(self.cmd)} did not become healthy")

    def __exit__(self, *exc: object) -> None:
        process = self.process
        if process is None or process.poll() is not None:
            self.log.close()
            return
        os.killpg(process.pid, signal.SIGTERM)  # its own session: the server and its workers
        try:
            process.wait(20)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
        self.log.close()


def contestants(home: Path, work: Path) -> dict[str, callable]:
    env = pfkit_env()
    env["PFKIT_HOME"] = str(home)

    def pfkit(workers: int):
        def start(port: int) -> Server:
            return Server([str(PFKIT_CLI), "flow", "serve", "--source", str(PY_FLOW), "--port",
                           str(port), "--workers", str(workers)], env, port, work)
        return start

    def promptflow(port: int) -> Server:
        return Server([str(PF_CLI), "flow", "serve", "--source", str(PY_FLOW), "--port",
                       str(port), "--host", "127.0.0.1", "--skip-open-browser"], pf_env(), port,
                      work)

    def bare(port: int) -> Server:
        return Server([str(PFKIT_PY), "-c", BARE_APP, str(port)], env, port, work)

    return {"pfkit": pfkit(1), "pfkit2": pfkit(2), "promptflow": promptflow, "bare": bare}


LABELS = {"pfkit": "pfkit flow serve (1 worker)", "pfkit2": "pfkit flow serve --workers 2",
          "promptflow": "pf flow serve (promptflow 1.18.5, Flask)",
          "bare": "bare Starlette on uvicorn (limit, 1 worker)",
          "llm0": "floor: the load generator straight to the test server at 100 ms (no pfkit)",
          "llm": "pfkit, llm flow, test server at 100 ms",
          "llm2": "pfkit --workers 2, llm flow, test server at 100 ms"}


def run_llm(home: Path, work: Path, seconds: float, max_requests: int, workers: int,
            server_processes: int) -> Cell:
    from pfkit.connections._store import ConnectionStore
    from pfkit.testing import TestServerProcess

    flow = work / "llm_flow"
    flow.mkdir(exist_ok=True)
    (flow / "flow.dag.yaml").write_text(LLM_FLOW, encoding="utf-8")
    (flow / "chat.jinja2").write_text("# user:\n{{question}}\n", encoding="utf-8")
    env = pfkit_env()
    env["PFKIT_HOME"] = str(home)
    with TestServerProcess(latency=LLM_LATENCY, processes=server_processes) as llm:
        ConnectionStore(home=home).create({"name": "bench_serve_llm", "type": "open_ai",
                                           "api_key": "sk-bench", "base_url": llm.base_url},
                                          overrides=None)
        port = free_port()
        with Server([str(PFKIT_CLI), "flow", "serve", "--source", str(flow), "--port",
                     str(port), "--workers", str(workers)], env, port, work):
            return measure("llm" if workers == 1 else f"llm{workers}", port, LLM_CONNECTIONS, seconds, max_requests,
                           {"question": "how fast?"})


def run_llm_floor(seconds: float, max_requests: int, server_processes: int) -> Cell:
    """The same load, the same chat request pfkit's llm flow sends, straight to the test server:
    what the load generator and the test server leave of the 640 requests/s on this machine."""
    from urllib.parse import urlsplit

    from pfkit.testing import TestServerProcess

    body = {"model": "gpt-4o-mini", "temperature": 0,
            "messages": [{"role": "user", "content": "how fast?"}]}
    with TestServerProcess(latency=LLM_LATENCY, processes=server_processes) as llm:
        parts = urlsplit(llm.base_url)
        return measure("llm0", parts.port, LLM_CONNECTIONS, seconds, max_requests, body,
                       path=parts.path.rstrip("/") + "/chat/completions")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=float, default=20.0, help="seconds per cell")
    parser.add_argument("--connections", type=int, nargs="+", default=[16, 64])
    parser.add_argument("--runs", type=int, default=1, help="rounds (contestants alternate)")
    parser.add_argument("--only", default="pfkit,pfkit2,promptflow,bare,llm0,llm,llm2")
    parser.add_argument("--max-requests", type=int, default=500_000,
                        help="stop a cell after this many requests")
    parser.add_argument("--quick", action="store_true",
                        help="smoke check: 2 s per cell, nothing appended")
    parser.add_argument("--server-processes", type=int, default=2, metavar="N",
                        help="test server processes sharing its port for the llm rows (2: a "
                             "burst of 64 requests is answered on both cores, not one after "
                             "another in one Python process)")
    parser.add_argument("--no-append", action="store_true", help="do not append to RESULTS.md")
    args = parser.parse_args(argv)
    if args.quick:
        args.duration = 2.0
        args.no_append = True
    require_pfkit()
    only = [c.strip() for c in args.only.split(",") if c.strip()]
    if "promptflow" in only:
        require_promptflow()
    cells: list[Cell] = []
    with tempfile.TemporaryDirectory(prefix="pfkit-bench-serve-") as tmp, ForeignLoad() as load:
        home, work = Path(tmp) / "home", Path(tmp)
        starters = contestants(home, work)
        for _ in range(args.runs):
            for connections in args.connections:
                for name in [n for n in starters if n in only]:
                    port = free_port()
                    with starters[name](port):
                        cell = measure(name, port, connections, args.duration,
                                       args.max_requests, BODY)
                    cells.append(cell)
                    print(f"{name:>10} c={connections:<3} {cell.rate:8.0f} req/s  "
                          f"p50 {cell.p50:6.1f} ms  p99 {cell.p99:6.1f} ms  "
                          f"errors {cell.errors}", file=sys.stderr)
        for _ in range(args.runs):
            for name, workers in (("llm0", 0), ("llm", 1), ("llm2", 2)):
                if name not in only:
                    continue
                cell = (run_llm_floor(args.duration, args.max_requests, args.server_processes)
                        if not workers else
                        run_llm(home, work, args.duration, args.max_requests, workers,
                                args.server_processes))
                cells.append(cell)
                print(f"{name:>10} c={LLM_CONNECTIONS:<3} {cell.rate:8.0f} req/s  "
                      f"p50 {cell.p50:6.1f} ms  p99 {cell.p99:6.1f} ms  "
                      f"(limit {LLM_CONNECTIONS / LLM_LATENCY:.0f})", file=sys.stderr)
    publish("Serving: pfkit flow serve vs pf flow serve vs bare Starlette",
            report(cells, args, load.summary(), machine_load_note()),
            append=not args.no_append)
    return 0


def report(cells: list[Cell], args: argparse.Namespace, foreign: str, machine: str) -> str:
    by_key: dict[tuple[str, int], list[Cell]] = {}
    for cell in cells:
        by_key.setdefault((cell.contestant, cell.connections), []).append(cell)

    def best(name: str, connections: int) -> Cell | None:
        group = by_key.get((name, connections))
        return max(group, key=lambda c: c.rate) if group else None

    rows = []
    for (name, connections), _group in by_key.items():
        cell = best(name, connections)
        bare = best("bare", connections)
        is_llm = name.startswith("llm")
        floor = best("llm0", LLM_CONNECTIONS)
        versus = (f"{cell.rate / (LLM_CONNECTIONS / LLM_LATENCY):.2f}x of 640" if is_llm
                  else f"{cell.rate / bare.rate:.2f}x" if bare and bare.rate else "")
        if is_llm and name != "llm0" and floor and floor.rate:
            versus += f" ({cell.rate / floor.rate:.2f}x of the floor)"
        rows.append([LABELS.get(name, name), connections, f"{cell.rate:,.0f}",
                     f"{cell.p50:.1f}", f"{cell.p99:.1f}", cell.errors, versus])
    table = markdown_table(["server", "connections", "requests/s", "p50 ms", "p99 ms", "errors",
                            "vs bare (llm: vs limit)"], rows)
    return "\n".join([
        f"`bench/serve.py --duration {args.duration:g}` ({args.runs} round(s), best shown): "
        "POST /score with a JSON body on 127.0.0.1, keep-alive connections from a minimal asyncio HTTP "
        "load generator (`bench/_minihttp.py`) in the benchmark's own process (it shares the 2 cores with the "
        "server). Python flow: `bench/flows/one_node`; llm flow: one chat node on the test "
        f"server at {LLM_LATENCY * 1000:.0f} ms, in {args.server_processes} process(es) sharing "
        "its port (`--server-processes`).", "", table, "",
        f"Machine: {machine}; {foreign}."])


if __name__ == "__main__":
    sys.exit(main())
