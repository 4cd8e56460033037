"""Evaluation speed: 5 deterministic evaluators over 10,000 lines in one command.

    .venv/bin/python bench/eval.py [--lines 10000] [--runs 3] [--no-append]

A base run of ``bench/flows/qa_answers`` (10,000 lines, not timed) is scored by
``pfkit eval --run BASE --evaluator exact_match --evaluator f1_score --evaluator rouge
--evaluator bleu --evaluator json_valid``: one whole process, wall clock, the CPU seconds of the
process tree (user + system, from the children's resource usage: what tells on a busy machine)
and its peak RSS (sampled from /proc every 0.2 s). Target: <= 10 s. promptflow has no such
command; its equivalent is five ``pf run create --run BASE`` evaluation runs (its batch rate is
in the batch benchmark's section).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from _common import (  # noqa: E402
    FLOWS,
    PFKIT_CLI,
    REPO,
    Stats,
    machine_load_note,
    pfkit_env,
    publish,
    require_pfkit,
    run_process,
)

WORK = REPO / ".bench" / "eval"
EVALUATORS = ["exact_match", "f1_score", "rouge", "bleu", "json_valid"]


def tree_rss_kb(root: int) -> int:
    """Resident memory of ``root`` and all its descendants, in kB."""
    children: dict[int, list[int]] = {}
    rss: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/status", encoding="ascii", errors="replace") as fh:
                fields = dict(line.split(":", 1) for line in fh if ":" in line)
        except OSError:
            continue
        pid = int(entry)
        children.setdefault(int(fields.get("PPid", "0").strip()), []).append(pid)
        rss[pid] = int(fields.get("VmRSS", "0 kB").split()[0]) if "VmRSS" in fields else 0
    total, stack = 0, [root]
    while stack:
        pid = stack.pop()
        total += rss.get(pid, 0)
        stack.extend(children.get(pid, []))
    return total


def children_cpu() -> float:
    """CPU seconds (user + system) of the finished child processes and their descendants."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def timed(cmd: list[str], env: dict[str, str]) -> tuple[float, float, int, str]:
    peak = 0
    cpu = children_cpu()
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    done = threading.Event()

    def sample() -> None:
        nonlocal peak
        while not done.is_set():
            peak = max(peak, tree_rss_kb(proc.pid))
            done.wait(0.2)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    out, err = proc.communicate(timeout=900)
    elapsed = time.perf_counter() - start
    cpu = children_cpu() - cpu
    done.set()
    sampler.join()
    if proc.returncode != 0:
        raise SystemExit(f"pfkit eval failed ({proc.returncode}):\n{err[-3000:]}")
    return elapsed, cpu, peak, out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lines", type=int, default=10_000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--no-append", action="store_true")
    args = parser.parse_args()
    require_pfkit()
    WORK.mkdir(parents=True, exist_ok=True)
    env = pfkit_env()
    env["PFKIT_HOME"] = str(WORK / "home")
    data = WORK / f"qa_{args.lines}.jsonl"
    with data.open("w", encoding="utf-8") as fh:
        for i in range(args.lines):
            fh.write(json.dumps({"question": f"question {i}", "ground_truth": "the cat sat on a mat"})
                     + "\n")
    base = f"qa_base_{int(time.time())}"
    run_process([str(PFKIT_CLI), "run", "create", "--flow", str(FLOWS / "qa_answers"), "--data",
                 str(data), "-n", base, "--no-progress"], env=env, timeout=900)
    cmd = [str(PFKIT_CLI), "eval", "--run", base, "--json"]
    for name in EVALUATORS:
        cmd += ["--evaluator", name]
    times, cpus, peaks = [], [], []
    for i in range(args.runs + 1):  # the first is a warm-up
        elapsed, cpu, peak, out = timed(cmd, env)
        metrics = json.loads(out)["metrics"]
        assert len(metrics) >= len(EVALUATORS), metrics
        print(f"  {'warm-up' if i == 0 else f'run {i}/{args.runs}':>10}  {elapsed:.2f} s, "
              f"CPU {cpu:.2f} s, peak {peak / 1024:.0f} MB", file=sys.stderr)
        if i:
            times.append(elapsed)
            cpus.append(cpu)
            peaks.append(peak / 1024)
    t, c, m = Stats.of(times), Stats.of(cpus), Stats.of(peaks)
    body = "\n".join([  # publish() adds the heading and the environment lines
        f"- {machine_load_note()}", "",
        "| | wall clock (median, min–max) | CPU of the process tree | peak RSS of the process "
        "tree | target |",
        "|---|---|---|---|---|",
        f"| `pfkit eval --run BASE` with {', '.join(EVALUATORS)} | {t.fmt(unit=' s', digits=2)} "
        f"| {c.fmt(unit=' s', digits=2)} | {m.fmt(digits=0, unit=' MB')} | ≤ 10 s |",
        "",
        f"{args.lines * len(EVALUATORS) / t.median:,.0f} evaluated lines/s over the five "
        "evaluation runs (each a promptflow-style evaluation run linked to the base run).",
    ])
    publish(f"Evaluation: {len(EVALUATORS)} deterministic evaluators over {args.lines:,} lines",
            body, append=not args.no_append)


if __name__ == "__main__":
    main()
