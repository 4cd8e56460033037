"""Batch runs, pfkit vs promptflow 1.18.5: whole processes, wall clock.

    .venv/bin/python bench/batch.py [--runs 5] [--pf-runs 3] [--only a,b,c] [--no-append]

(a) Small batch: 200 lines of ``bench/flows/one_node`` (one python node),
    ``pfkit run create`` vs ``pf run create`` (promptflow with its default worker count, and with
    ``PF_WORKER_COUNT`` = pfkit's default concurrency, 16). Target: pfkit <= 1 s.
(b) LLM-bound batch: 1,000 lines of ``bench/flows/two_llm`` (two sequential llm nodes, the second
    sends the first's reply) against pfkit's test server, answering after 50 ms, in
    ``--server-processes`` processes sharing one port (default 2: in one Python process a burst
    of 32 requests is answered one after another); ``pfkit run create --concurrency 32`` vs
    ``pf run create`` with its defaults and with ``PF_WORKER_COUNT=32``. Each is reported against the physical limit
    ceil(N / C) * k * L = ceil(1000 / 32) * 2 * 0.05 s = 3.2 s as measured / ideal.
    Target: pfkit <= 1.15x the limit (judged on the whole process and on the run's own
    duration). Four floors run alongside (bench/_bare_llm_batch.py): the same calls with no
    framework through openai.AsyncOpenAI (httpx and aiohttp transports), a plain aiohttp session
    and a minimal asyncio HTTP client, so the share of the client library is visible.
(c) Large batch: 100,000 lines of ``bench/flows/word_count`` (two python nodes) for pfkit alone
    (promptflow would need about half an hour), with its RSS sampled every 0.5 s from
    /proc/PID/status and reported at 10 %, 50 % and 100 % of the lines; plus 2,000 lines of the
    same flow, pfkit vs promptflow, for lines/s side by side. Targets: >= 5,000 lines/s, peak
    RSS <= 200 MB and flat.

Every promptflow batch runs with ``PF_DISABLE_TRACING=true`` in a private ``PF_HOME_DIRECTORY``
(a copy of a template home holding the connection, with telemetry off and
``trace.destination=none`` so that ``pf run create`` does not start its trace service), so run
names never clash. pfkit's runs and connection live in ``$PFKIT_HOME=.bench/batch/kit-home``.
Data files are generated under ``.bench/batch/data`` (git-ignored). Run folders are deleted after
each measured batch (outside the timing).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import (  # noqa: E402
    BENCH,
    FLOWS,
    PF_CLI,
    PFKIT_CLI,
    PFKIT_PY,
    REPO,
    BenchError,
    ForeignLoad,
    Stats,
    machine_load_note,
    markdown_table,
    pf_env,
    pfkit_env,
    publish,
    ratio,
    require_pfkit,
    require_promptflow,
    run_process,
)

SCRATCH = REPO / ".bench" / "batch"
DATA = SCRATCH / "data"
KIT_HOME = SCRATCH / "kit-home"
PF_TEMPLATE = SCRATCH / "pf-home-template"
PF_HOMES = SCRATCH / "pf-homes"

ONE_NODE = FLOWS / "one_node"
TWO_LLM = FLOWS / "two_llm"
WORD_COUNT = FLOWS / "word_count"

CONNECTION = "bench_oai"
BARE_OPENAI = "floor: bare loop, openai.AsyncOpenAI (httpx)"
BARE_OPENAI_AIO = "floor: bare loop, openai.AsyncOpenAI (aiohttp)"
BARE_AIOHTTP = "floor: bare loop, plain aiohttp.ClientSession"
BARE_ASYNCIO = "floor: bare loop, minimal asyncio HTTP client"
PFKIT_DEFAULT_CONCURRENCY = 16  # `pfkit run create --help`: "lines in flight (default 16)"

SMALL_TARGET = 1.0          # s, 200-line batch, whole process
LLM_TARGET = 1.15           # x the physical limit
LARGE_RATE_TARGET = 5000.0  # lines/s
LARGE_RSS_TARGET = 200.0    # MB
SAMPLE_EVERY = 0.5          # s, RSS sampling period

WORDS = ("alpha bravo charlie delta echo foxtrot golf hotel india juliet kilo lima mike november "
         "oscar papa quebec romeo sierra tango uniform victor whiskey xray yankee zulu").split()


# --------------------------------------------------------------------------- data

def write_jsonl(path: Path, rows: int, make: Callable[[int], dict]) -> Path:
    """Write ``rows`` JSON lines (deterministic), unless the file already has them."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.exists():
        with path.open("rb") as fh:
            if sum(1 for _ in fh) == rows:
                return path
    tmp = path.with_suffix(".tmp")
    with tmp.open("w", encoding="utf-8") as fh:
        for i in range(rows):
            fh.write(json.dumps(make(i)) + "\n")
    tmp.replace(path)
    return path


def text_row(i: int) -> dict:
    n = 4 + i % 9
    return {"text": " ".join(WORDS[(i * 7 + j * 3) % len(WORDS)] for j in range(n)) + f" #{i}"}


def question_row(i: int) -> dict:
    return {"question": f"What is {i} + {i * 3}? Answer with the number only."}


# --------------------------------------------------------------------------- processes

def _descendants(pid: int) -> list[int]:
    """pid and all its descendants (via /proc/*/task/*/children)."""
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        try:
            for task in os.listdir(f"/proc/{p}/task"):
                try:
                    text = Path(f"/proc/{p}/task/{task}/children").read_text()
                except OSError:
                    continue
                todo.extend(int(c) for c in text.split())
        except OSError:
            pass
    return out


def _rss_kb(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/status", encoding="ascii", errors="replace") as fh:
            for line in fh:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except (OSError, ValueError):
        pass
    return 0


@dataclass
class Sample:
    t: float           # s since spawn
    rss_mb: float      # the main process
    tree_mb: float     # the main process and all its descendants
    largest_mb: float  # the largest single process of the tree
    lines: int         # lines finished so far (pfkit: records in lines.jsonl), -1 if unknown


@dataclass
class Outcome:
    wall: float                      # s, spawn to exit
    duration: float | None           # s, the run's own system_metrics.duration
    lines_out: int                   # lines in the run's output file
    max_rss_mb: float                # ru_maxrss of the main process (wait4)
    cpu: float                       # s, user + sys of the process and its reaped children
    samples: list[Sample] = field(default_factory=list)
    workers: int | None = None       # promptflow: the process count its log reports

    @property
    def largest_mb(self) -> float:
        return max([self.max_rss_mb, *(s.largest_mb for s in self.samples)])

    @property
    def tree_mb(self) -> float:
        return max([self.max_rss_mb, *(s.tree_mb for s in self.samples)])


class _LineCounter:
    """Counts newline-terminated records of a file that another process appends to."""

    def __init__(self, path: Path | None) -> None:
        self.path, self.count, self._fh = path, 0, None

    def poll(self) -> int:
        if self.path is None:
            return -1
        if self._fh is None:
            try:
                self._fh = open(self.path, "rb")  # noqa: SIM115
            except OSError:
                return 0
        while chunk := self._fh.read(1 << 20):
            self.count += chunk.count(b"\n")
        return self.count

    def close(self) -> None:
        if self._fh is not None:
            self._fh.close()


def run_measured(cmd: Sequence[str], *, env: Mapping[str, str], log: Path,
                 progress_file: Path | None = None, timeout: float = 3600
                 ) -> tuple[float, int, list[Sample], float, float]:
    """Run one whole process (cwd: the repository; output to ``log``) and sample its RSS every
    SAMPLE_EVERY s. Returns (wall seconds, exit code, samples, ru_maxrss of the process in MB,
    CPU seconds: user + sys of the process and the children it reaped)."""
    samples: list[Sample] = []
    counter = _LineCounter(progress_file)
    done = threading.Event()
    with log.open("w", encoding="utf-8") as out:
        start = time.perf_counter()
        proc = subprocess.Popen(list(cmd), env=dict(env), cwd=REPO, stdout=out,
                                stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)

        def sampler() -> None:
            while not done.wait(SAMPLE_EVERY):
                pids = _descendants(proc.pid)
                sizes = [_rss_kb(p) for p in pids]
                if not sizes or sizes[0] == 0:
                    continue
                samples.append(Sample(time.perf_counter() - start, sizes[0] / 1024,
                                      sum(sizes) / 1024, max(sizes) / 1024, counter.poll()))

        thread = threading.Thread(target=sampler, daemon=True)
        thread.start()
        deadline = start + timeout
        while True:
            pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
            if pid:
                break
            if time.perf_counter() > deadline:
                proc.kill()
                pid, status, usage = os.wait4(proc.pid, 0)
                break
            time.sleep(0.002)
        wall = time.perf_counter() - start
        proc.returncode = os.waitstatus_to_exitcode(status)
        done.set()
        thread.join()
    counter.close()
    return (wall, proc.returncode, samples, usage.ru_maxrss / 1024,
            usage.ru_utime + usage.ru_stime)


def _last_json(text: str) -> dict:
    """The last top-level JSON object a CLI printed (after any log lines)."""
    idx = len(text)
    while True:
        idx = text.rfind("{", 0, idx)
        if idx < 0:
            raise ValueError("no JSON object in the output")
        if idx == 0 or text[idx - 1] == "\n":
            try:
                value, _ = json.JSONDecoder().raw_decode(text, idx)
            except ValueError:
                continue
            if isinstance(value, dict) and "status" in value:
                return value


def _pfkit_workers(log: Path) -> int | None:
    """The worker count a pfkit run reports in its logs.txt ("... workers N, ...")."""
    try:
        found = re.search(r"workers (\d+)", log.read_text(encoding="utf-8", errors="replace"))
    except OSError:
        return None
    return int(found.group(1)) if found else None


def _count_lines(path: Path) -> int:
    with path.open("rb") as fh:
        return sum(1 for _ in fh)


class Runner:
    def __init__(self, keep: bool = False, workers: int | None = None) -> None:
        self.workers = workers  # pfkit run create --workers N (None: pfkit's default)
        self.counter = 0
        self.keep = keep
        self.logs = SCRATCH / "logs"
        self.logs.mkdir(parents=True, exist_ok=True)

    def _name(self, prefix: str) -> str:
        self.counter += 1
        return f"{prefix}-{os.getpid()}-{self.counter}"

    def pfkit(self, flow: Path, data: Path, rows: int, *, concurrency: int | None = None,
              progress: bool = False) -> Outcome:
        name = self._name("kit")
        env = pfkit_env()
        env.pop("PFKIT_CACHE", None)
        env["PFKIT_HOME"] = str(KIT_HOME)
        cmd = [str(PFKIT_CLI), "run", "create", "--flow", str(flow), "--data", str(data),
               "-n", name, "--no-progress"]
        if concurrency is not None:
            cmd += ["--concurrency", str(concurrency)]
        if self.workers is not None:
            cmd += ["--workers", str(self.workers)]
        run_dir = KIT_HOME / "runs" / name
        log = self.logs / f"{name}.log"
        wall, code, samples, max_rss, cpu = run_measured(
            cmd, env=env, log=log, progress_file=run_dir / "lines.jsonl" if progress else None)
        text = log.read_text(encoding="utf-8", errors="replace")
        if code != 0:
            raise BenchError(f"pfkit failed ({code}): {' '.join(cmd)}\n{text[-3000:]}")
        record = _last_json(text)
        outputs = run_dir / "flow_outputs" / "output.jsonl"
        lines_out = _count_lines(outputs)
        if record.get("status") != "Completed" or lines_out != rows:
            raise BenchError(f"pfkit run {name}: status {record.get('status')}, {lines_out} of "
                             f"{rows} lines in {outputs}\n{text[-3000:]}")
        duration = record["properties"]["system_metrics"]["duration"]
        workers = _pfkit_workers(run_dir / "logs.txt")
        if not self.keep:
            shutil.rmtree(run_dir, ignore_errors=True)
            log.unlink()
        return Outcome(wall, duration, lines_out, max_rss, cpu, samples, workers=workers)

    def bare(self, client: str, base_url: str, data: Path, rows: int, concurrency: int
             ) -> Outcome:
        """bench/_bare_llm_batch.py: the two_llm batch with no framework (the floor)."""
        name = self._name(f"bare-{client}")
        out = self.logs / f"{name}.outputs.jsonl"
        cmd = [str(PFKIT_PY), str(BENCH / "_bare_llm_batch.py"), "--client", client,
               "--base-url", base_url, "--data", str(data), "--out", str(out),
               "--concurrency", str(concurrency)]
        log = self.logs / f"{name}.log"
        wall, code, samples, max_rss, cpu = run_measured(cmd, env=pfkit_env(), log=log)
        text = log.read_text(encoding="utf-8", errors="replace")
        if code != 0:
            raise BenchError(f"bare batch failed ({code}): {' '.join(cmd)}\n{text[-3000:]}")
        record = _last_json(text)
        lines_out = _count_lines(out)
        if record.get("status") != "Completed" or lines_out != rows:
            raise BenchError(f"bare batch {name}: {lines_out} of {rows} lines\n{text[-3000:]}")
        if not self.keep:
            out.unlink()
            log.unlink()
        return Outcome(wall, record["duration"], lines_out, max_rss, cpu, samples)

    def pf(self, flow: Path, data: Path, rows: int, *, workers: int | None = None) -> Outcome:
        name = self._name("pf")
        home = PF_HOMES / name
        shutil.copytree(PF_TEMPLATE, home)
        extra = {"PF_HOME_DIRECTORY": str(home)}
        if workers is not None:
            extra["PF_WORKER_COUNT"] = str(workers)
        env = pf_env(**extra)
        cmd = [str(PF_CLI), "run", "create", "--flow", str(flow), "--data", str(data),
               "-n", name]
        log = self.logs / f"{name}.log"
        wall, code, samples, max_rss, cpu = run_measured(cmd, env=env, log=log)
        text = log.read_text(encoding="utf-8", errors="replace")
        if code != 0:
            raise BenchError(f"promptflow failed ({code}): {' '.join(cmd)}\n{text[-3000:]}")
        record = _last_json(text)
        outputs = home / ".runs" / name / "outputs.jsonl"
        lines_out = _count_lines(outputs) if outputs.exists() else 0
        if record.get("status") != "Completed" or lines_out != rows:
            raise BenchError(f"promptflow run {name}: status {record.get('status')}, "
                             f"{lines_out} of {rows} lines in {outputs}\n{text[-3000:]}")
        duration = record.get("properties", {}).get("system_metrics", {}).get("duration")
        run_log = (home / ".runs" / name / "logs.txt").read_text(errors="replace")
        found = re.search(r"Set process count to (\d+)", run_log)
        used = int(found.group(1)) if found else None
        if workers is not None and used != workers:
            raise BenchError(f"promptflow run {name} used {used} processes, not "
                             f"PF_WORKER_COUNT={workers}")
        if not self.keep:
            shutil.rmtree(home, ignore_errors=True)
            log.unlink()
        return Outcome(wall, duration, lines_out, max_rss, cpu, samples, workers=used)


# --------------------------------------------------------------------------- setup

def write_connection_yaml(base_url: str) -> Path:
    path = SCRATCH / "connection.yaml"
    path.write_text(f"name: {CONNECTION}\ntype: open_ai\napi_key: sk-bench\n"
                    f"base_url: {base_url}\n", encoding="utf-8")
    return path


def setup_pfkit_home(conn: Path | None) -> None:
    shutil.rmtree(KIT_HOME, ignore_errors=True)
    KIT_HOME.mkdir(parents=True)
    if conn is not None:
        env = pfkit_env()
        env["PFKIT_HOME"] = str(KIT_HOME)
        run_process([str(PFKIT_CLI), "connection", "create", "--file", str(conn)], env=env,
                    cwd=REPO)


def setup_pf_template(conn: Path | None) -> None:
    """A promptflow home to copy for every batch: telemetry off, trace service off, and the
    connection (encrypted with the key keyrings.alt keeps, which every copy shares)."""
    shutil.rmtree(PF_TEMPLATE, ignore_errors=True)
    shutil.rmtree(PF_HOMES, ignore_errors=True)
    PF_TEMPLATE.mkdir(parents=True)
    PF_HOMES.mkdir(parents=True)
    env = pf_env(PF_HOME_DIRECTORY=str(PF_TEMPLATE))
    run_process([str(PF_CLI), "config", "set", "telemetry.enabled=false"], env=env, cwd=REPO)
    run_process([str(PF_CLI), "config", "set", "trace.destination=none"], env=env, cwd=REPO)
    if conn is not None:
        run_process([str(PF_CLI), "connection", "create", "--file", str(conn)], env=env,
                    cwd=REPO)


# --------------------------------------------------------------------------- alternation

def alternate_uneven(contestants: Mapping[str, tuple[Callable[[], Outcome], int]], *,
                     warmup: int = 1) -> tuple[dict[str, list[Outcome]], dict[str, list[Outcome]]]:
    """Like _common.alternate, with a number of measured rounds per contestant: every round
    runs each contestant that still needs rounds, in order (A B C A B C A B A B ...)."""
    measured: dict[str, list[Outcome]] = {name: [] for name in contestants}
    warm: dict[str, list[Outcome]] = {name: [] for name in contestants}
    rounds = warmup + max(n for _, n in contestants.values())
    for round_ in range(rounds):
        for name, (fn, n) in contestants.items():
            if round_ >= warmup + n:
                continue
            value = fn()
            target = warm if round_ < warmup else measured
            target[name].append(value)
            tag = "warm-up" if round_ < warmup else f"run {round_ - warmup + 1}/{n}"
            dur = f"{value.duration:.3f}" if value.duration is not None else "?"
            print(f"  {tag:>10}  {name:<44} wall {value.wall:.3f} s  run {dur} s  "
                  f"cpu {value.cpu:.2f} s  rss {value.largest_mb:.0f} MB", file=sys.stderr,
                  flush=True)
    return measured, warm


def wall_stats(values: list[Outcome]) -> Stats:
    return Stats.of([v.wall for v in values])


def duration_stats(values: list[Outcome]) -> Stats | None:
    d = [v.duration for v in values if v.duration is not None]
    return Stats.of(d) if d else None


def label(name: str, values: list[Outcome]) -> str:
    """The contestant's name, with the process count promptflow reported (if it did)."""
    counts = sorted({v.workers for v in values if v.workers is not None})
    return f"{name} [{'/'.join(map(str, counts))} processes]" if counts else name


def cpu_stats(values: list[Outcome]) -> Stats:
    return Stats.of([v.cpu for v in values])


def fmt_s(s: Stats | None) -> str:
    return "" if s is None else s.fmt(unit=" s")


# --------------------------------------------------------------------------- (a)

def bench_small(runner: Runner, rows: int, runs: int, pf_runs: int) -> str:
    data = write_jsonl(DATA / f"text_{rows}.jsonl", rows, text_row)
    tuned = PFKIT_DEFAULT_CONCURRENCY
    print(f"(a) small batch: {rows} lines of one_node", file=sys.stderr)
    measured, _ = alternate_uneven({
        "pfkit run create": (lambda: runner.pfkit(ONE_NODE, data, rows), runs),
        "pf run create (defaults)": (lambda: runner.pf(ONE_NODE, data, rows), pf_runs),
        f"pf run create, PF_WORKER_COUNT={tuned}":
            (lambda: runner.pf(ONE_NODE, data, rows, workers=tuned), pf_runs),
    })
    kit = wall_stats(measured["pfkit run create"])
    rows_out = []
    for name, values in measured.items():
        w = wall_stats(values)
        met = ("yes" if w.median <= SMALL_TARGET else "**no**") if name.startswith("pfkit") else ""
        rows_out.append([label(name, values), len(values), w.fmt(unit=" s"),
                         fmt_s(duration_stats(values)), f"{cpu_stats(values).median:.2f} s",
                         ratio(w.median, kit.median), f"≤ {SMALL_TARGET:g} s" if met else "",
                         met])
    table = markdown_table(
        ["contestant", "rounds", "whole process, median (min–max)",
         "run's own duration, median (min–max)", "CPU user+sys (median)", "÷ pfkit (wall)",
         "target", "met"], rows_out)
    return (f"### (a) Small batch: {rows} lines of `bench/flows/one_node` (one python node)\n\n"
            + table + "\n\n"
            f"- pfkit with its default concurrency ({PFKIT_DEFAULT_CONCURRENCY}); promptflow with "
            f"its default worker count and with `PF_WORKER_COUNT={tuned}` (pfkit's concurrency).\n"
            "- whole process = wall clock from spawn to exit of `pfkit run create` / "
            "`pf run create`; run's own duration = `system_metrics.duration` of the run record; "
            "CPU = user + sys of the process and the children it reaped (`wait4`).")


# --------------------------------------------------------------------------- (b)

def bench_llm(runner: Runner, base_url: str, rows: int, concurrency: int, latency: float,
              runs: int, pf_runs: int, server_processes: int) -> str:
    data = write_jsonl(DATA / f"questions_{rows}.jsonl", rows, question_row)
    ideal = math.ceil(rows / concurrency) * 2 * latency
    print(f"(b) LLM-bound batch: {rows} lines of two_llm, limit {ideal:.2f} s", file=sys.stderr)
    measured, _ = alternate_uneven({
        f"pfkit run create --concurrency {concurrency}":
            (lambda: runner.pfkit(TWO_LLM, data, rows, concurrency=concurrency), runs),
        "pf run create (defaults)": (lambda: runner.pf(TWO_LLM, data, rows), pf_runs),
        f"pf run create, PF_WORKER_COUNT={concurrency}":
            (lambda: runner.pf(TWO_LLM, data, rows, workers=concurrency), pf_runs),
        BARE_OPENAI: (lambda: runner.bare("openai", base_url, data, rows, concurrency), runs),
        BARE_OPENAI_AIO: (lambda: runner.bare("openai-aiohttp", base_url, data, rows,
                                              concurrency), runs),
        BARE_AIOHTTP: (lambda: runner.bare("aiohttp", base_url, data, rows, concurrency), runs),
        BARE_ASYNCIO: (lambda: runner.bare("asyncio", base_url, data, rows, concurrency), runs),
    })
    kit_name = next(iter(measured))
    kit = wall_stats(measured[kit_name])
    rows_out = []
    for name, values in measured.items():
        w, d = wall_stats(values), duration_stats(values)
        is_kit = name == kit_name
        met = ""
        if is_kit:
            met = ("yes" if w.median / ideal <= LLM_TARGET else "**no**") + " / " + \
                (("yes" if d.median / ideal <= LLM_TARGET else "**no**") if d else "?")
        rows_out.append([label(name, values), len(values), w.fmt(unit=" s"),
                         f"{w.median / ideal:.2f}×", fmt_s(d),
                         f"{d.median / ideal:.2f}×" if d else "",
                         f"{cpu_stats(values).median:.2f} s", ratio(w.median, kit.median), met])
    table = markdown_table(
        ["contestant", "rounds", "whole process, median (min–max)", "÷ limit (wall)",
         "run's own duration, median (min–max)", "÷ limit (run)", "CPU user+sys (median)",
         "÷ pfkit (wall)", f"pfkit ≤ {LLM_TARGET}× limit (wall / run)"], rows_out)
    floor_openai = wall_stats(measured[BARE_OPENAI_AIO]).median
    kit_cpu = cpu_stats(measured[kit_name]).median
    floor_cpu = cpu_stats(measured[BARE_OPENAI_AIO]).median
    httpx_cpu = cpu_stats(measured[BARE_OPENAI]).median
    asyncio_cpu = cpu_stats(measured[BARE_ASYNCIO]).median
    aiohttp_cpu = cpu_stats(measured[BARE_AIOHTTP]).median
    d = duration_stats(measured[kit_name])
    kit_run_note = (f" On the run's own duration pfkit is at {d.median / ideal:.2f}× the limit "
                    f"({'met' if d.median / ideal <= LLM_TARGET else 'missed'})." if d else "")
    return (f"### (b) LLM-bound batch: {rows} lines of `bench/flows/two_llm` (two sequential llm "
            f"nodes), test server at {latency * 1000:g} ms, concurrency {concurrency}\n\n"
            + table + "\n\n"
            f"- Physical limit ceil({rows} / {concurrency}) × 2 × {latency:g} s = {ideal:.2f} s; "
            "÷ limit = measured / ideal." + kit_run_note + "\n"
            "- The test server (`pfkit.testing.TestServerProcess`, echo answers) runs in "
            f"{server_processes} process(es) of its own sharing one port (`--server-processes`), "
            "started once for the whole section; both tools use the same `open_ai` "
            "connection `bench_oai` pointing at it.\n"
            f"- promptflow with its default worker count and with `PF_WORKER_COUNT={concurrency}`"
            " (checked in each run's log).\n"
            f"- The floors (`bench/_bare_llm_batch.py`, whole processes under pfkit's venv): the "
            f"same {rows:,} × 2 sequential calls with {concurrency} workers and no framework, "
            "through `openai.AsyncOpenAI` with its default httpx transport and with the aiohttp "
            "transport (imported inside the timed process), through a plain "
            "`aiohttp.ClientSession` (what pfkit's default transport is built on), and "
            "through a minimal HTTP/1.1 client on asyncio streams. Their run duration excludes "
            "the imports. "
            f"pfkit ÷ the openai (aiohttp) floor, wall medians: {ratio(kit.median, floor_openai)}"
            f". CPU per model call (whole process ÷ {2 * rows:,} calls): pfkit "
            f"{kit_cpu / (2 * rows) * 1e3:.2f} ms, openai floor {floor_cpu / (2 * rows) * 1e3:.2f}"
            f" ms (aiohttp) / {httpx_cpu / (2 * rows) * 1e3:.2f} ms (httpx), plain aiohttp "
            f"{aiohttp_cpu / (2 * rows) * 1e3:.2f} ms, minimal asyncio "
            f"client {asyncio_cpu / (2 * rows) * 1e3:.2f} ms.")


# --------------------------------------------------------------------------- (c)

def _at_fraction(samples: list[Sample], rows: int, fraction: float) -> Sample | None:
    for s in samples:
        if s.lines >= fraction * rows:
            return s
    return None


def bench_large(runner: Runner, rows: int, pf_rows: int, runs: int, pf_runs: int) -> str:
    big = write_jsonl(DATA / f"text_{rows}.jsonl", rows, text_row)
    small = write_jsonl(DATA / f"text_{pf_rows}.jsonl", pf_rows, text_row)
    tuned = PFKIT_DEFAULT_CONCURRENCY

    print(f"(c1) {pf_rows} lines of word_count, pfkit vs promptflow", file=sys.stderr)
    side, _ = alternate_uneven({
        "pfkit run create": (lambda: runner.pfkit(WORD_COUNT, small, pf_rows), runs),
        "pf run create (defaults)": (lambda: runner.pf(WORD_COUNT, small, pf_rows), pf_runs),
        f"pf run create, PF_WORKER_COUNT={tuned}":
            (lambda: runner.pf(WORD_COUNT, small, pf_rows, workers=tuned), pf_runs),
    })
    print(f"(c2) {rows} lines of word_count, pfkit alone", file=sys.stderr)
    large, _ = alternate_uneven({
        "pfkit run create": (lambda: runner.pfkit(WORD_COUNT, big, rows, progress=True), runs),
    })

    kit_side = wall_stats(side["pfkit run create"])
    rows_side = []
    for name, values in side.items():
        w = wall_stats(values)
        rates = Stats.of([pf_rows / v.wall for v in values])
        rows_side.append([label(name, values), len(values), w.fmt(unit=" s"), rates.fmt(digits=0),
                          ratio(w.median, kit_side.median),
                          f"{statistics_median([v.largest_mb for v in values]):.0f} MB / "
                          f"{statistics_median([v.tree_mb for v in values]):.0f} MB"])
    table_side = markdown_table(
        ["contestant", "rounds", "whole process, median (min–max)",
         "lines/s, median (min–max)", "÷ pfkit (wall)",
         "peak RSS: largest process / whole tree (median)"], rows_side)

    values = large["pfkit run create"]
    w = wall_stats(values)
    rates = Stats.of([rows / v.wall for v in values])
    run_rates = Stats.of([rows / v.duration for v in values if v.duration])
    peaks = Stats.of([v.max_rss_mb for v in values])
    rate_met = rates.median >= LARGE_RATE_TARGET
    rss_met = peaks.max <= LARGE_RSS_TARGET
    table_large = markdown_table(
        ["pfkit, " + f"{rows:,} lines", "median (min–max)", "target", "met"],
        [["whole process", w.fmt(unit=" s"), "", ""],
         ["lines/s (whole process)", rates.fmt(digits=0), f"≥ {LARGE_RATE_TARGET:,.0f}",
          "yes" if rate_met else "**no**"],
         ["lines/s (run's own duration)", run_rates.fmt(digits=0), "", ""],
         ["peak RSS (ru_maxrss of the process)", peaks.fmt(digits=0, unit=" MB"),
          f"≤ {LARGE_RSS_TARGET:.0f} MB", "yes" if rss_met else "**no**"]])

    flat_rows = []
    for i, v in enumerate(values, 1):
        first = next((s for s in v.samples if s.lines > 0), None)
        marks = [_at_fraction(v.samples, rows, f) for f in (0.1, 0.5, 1.0)]
        if marks[2] is None and v.samples:  # exited before a sample saw the last line
            marks[2] = v.samples[-1]
        cells = []
        for s in marks:
            cells.append(f"{s.rss_mb:.0f} MB (t={s.t:.1f} s, {s.lines:,} lines)" if s
                         else "no sample")
        flat_rows.append([i, f"{v.wall:.2f} s",
                          f"{first.rss_mb:.0f} MB (t={first.t:.1f} s, {first.lines:,} lines)"
                          if first else "no sample", *cells, f"{v.max_rss_mb:.0f} MB",
                          len(v.samples)])
    table_flat = markdown_table(
        ["round", "wall", "first sample with lines done", "RSS at 10 % of lines",
         "RSS at 50 %", "RSS at 100 %", "peak (ru_maxrss)", "samples"], flat_rows)

    kit_rate = rows / w.median
    pf_rate = pf_rows / wall_stats(side["pf run create (defaults)"]).median
    return (f"### (c) Large batch: `bench/flows/word_count` (two python nodes)\n\n"
            f"{pf_rows:,} lines, side by side:\n\n" + table_side + "\n\n"
            f"{rows:,} lines, pfkit alone:\n\n" + table_large + "\n\n"
            "RSS of the pfkit process over each round (sampled every "
            f"{SAMPLE_EVERY:g} s from /proc/PID/status VmRSS; \"at x %\" = the first sample "
            "taken once the run's `lines.jsonl` held that many line records):\n\n"
            + table_flat + "\n\n"
            f"- pfkit with its default concurrency ({PFKIT_DEFAULT_CONCURRENCY}); promptflow "
            f"with its default worker count and with `PF_WORKER_COUNT={tuned}`. promptflow was "
            f"run on {pf_rows:,} lines only ({rows:,} would take it about "
            f"{rows / pf_rate / 60:.0f} min at its measured {pf_rate:.0f} lines/s); "
            f"pfkit's {rows:,}-line rate ({kit_rate:,.0f} lines/s) is "
            f"{ratio(kit_rate, pf_rate)} promptflow's {pf_rows:,}-line rate.\n"
            "- peak RSS of promptflow: the largest single process of its tree (it forks one "
            "process per worker) and the sum over the tree, from the same 0.5 s samples plus "
            "the main process's ru_maxrss; pfkit runs in one process.")


def statistics_median(values: list[float]) -> float:
    import statistics
    return statistics.median(values)


# --------------------------------------------------------------------------- main

def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=5, help="measured rounds for pfkit (5)")
    parser.add_argument("--pf-runs", type=int, default=3,
                        help="measured rounds for each promptflow contestant (3)")
    parser.add_argument("--only", default="a,b,c", help="sections to run, e.g. a,c")
    parser.add_argument("--small-lines", type=int, default=200)
    parser.add_argument("--llm-lines", type=int, default=1000)
    parser.add_argument("--large-lines", type=int, default=100_000)
    parser.add_argument("--pf-large-lines", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--latency", type=float, default=0.05)
    parser.add_argument("--keep", action="store_true", help="keep run folders and logs")
    parser.add_argument("--workers", type=int, default=None,
                        help="pfkit run create --workers N (default: pfkit's own choice)")
    parser.add_argument("--server-processes", type=int, default=2, metavar="N",
                        help="test server processes sharing its port (2: a burst of 32 "
                             "requests is answered on both cores, not one after another)")
    parser.add_argument("--no-append", action="store_true", help="do not write bench/RESULTS.md")
    args = parser.parse_args()
    only = {s.strip() for s in args.only.split(",") if s.strip()}
    if not args.no_append and (args.runs < 5 or args.pf_runs < 3):
        parser.error("appending to RESULTS.md needs --runs >= 5 and --pf-runs >= 3")
    require_pfkit()
    require_promptflow()

    from pfkit.testing import TestServerProcess

    SCRATCH.mkdir(parents=True, exist_ok=True)
    runner = Runner(keep=args.keep, workers=args.workers)
    sections: list[str] = []
    started = time.perf_counter()
    server = (TestServerProcess(latency=args.latency, processes=args.server_processes)
              if "b" in only else None)
    try:
        if server is not None:
            server.start()
            print(f"test server: {server.base_url} (latency {args.latency:g} s, "
                  f"{args.server_processes} process(es))", file=sys.stderr)
        conn = write_connection_yaml(server.base_url) if server is not None else None
        setup_pfkit_home(conn)
        setup_pf_template(conn)
        plan = [
            ("a", lambda: bench_small(runner, args.small_lines, args.runs, args.pf_runs)),
            ("b", lambda: bench_llm(runner, server.base_url, args.llm_lines, args.concurrency,
                                    args.latency, args.runs, args.pf_runs,
                                    args.server_processes)),
            ("c", lambda: bench_large(runner, args.large_lines, args.pf_large_lines, args.runs,
                                      args.pf_runs)),
        ]
        for key, section in plan:
            if key in only:
                with ForeignLoad() as load:
                    text = section()
                sections.append(f"{text}\n- machine during ({key}): {load.summary()}.")
    finally:
        if server is not None:
            server.stop()
    elapsed = time.perf_counter() - started
    notes = [
        f"pfkit: {args.runs} measured rounds; each promptflow contestant: {args.pf_runs} "
        "(it is slow); one warm-up round of every contestant first, discarded; contestants "
        "alternated round by round (A B C A B C ..., then pfkit alone for its extra rounds).",
        "pfkit runs from its editable install with bytecode cached under `.bench/pycache`; "
        "promptflow with `PF_DISABLE_TRACING=true`, telemetry off and `trace.destination=none` "
        "in a private `PF_HOME_DIRECTORY` per batch (without `trace.destination=none`, "
        "`pf run create` starts its trace service in every fresh home, ~5 s more).",
        f"machine: {machine_load_note()}; the whole script took {elapsed / 60:.1f} min.",
    ]
    body = "\n\n".join(sections) + "\n\n" + "\n".join(f"- {n}" for n in notes)
    publish("Batch runs: small, LLM-bound, large (bench/batch.py)", body, append=not args.no_append)
    return 0


if __name__ == "__main__":
    sys.exit(main())
