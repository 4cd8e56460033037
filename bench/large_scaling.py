"""How `--workers N` scales on the 100,000-line python flow, against one process of this code
and of another checkout, and against what two cores give two processes at all.

    .venv/bin/python bench/large_scaling.py [--rounds 3] [--lines 100000]
        [--tree OLD_CHECKOUT ...]     # e.g. a `git worktree add /tmp/old 505b582`

Cases, alternated in every round (A B C ... A B C ...), one fresh process each:

* ``one``: ``pfkit run create --workers 1`` (this checkout);
* ``w2``: the same with ``--workers 2``;
* ``tree:PATH``: one process of another checkout's code (no ``--workers`` option given) (``PYTHONPATH=PATH``, same venv), for
  "against the code of an earlier day" in the same run;
* ``pair``: two ``--workers 1`` runs started together, wall time divided by two: the lines per
  second two cores give two independent processes of this code, the physical limit of any
  split over two processes on this host (CPU steal, shared caches and SMT included).

Prints each round (whole process, the run's own duration, CPU of the process tree, peak memory
of the whole process tree sampled as ``bench/batch.py`` samples it) and the medians. Nothing is appended to RESULTS.md: the figures are noisy on shared hosts and are copied
there by hand with the round-by-round spread. Data is shared with ``bench/batch.py``.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import batch  # noqa: E402
from _common import FLOWS, PFKIT_PY, REPO, pfkit_env  # noqa: E402

SCRATCH = REPO / ".bench" / "scaling"


def _data(lines: int) -> Path:
    return batch.write_jsonl(batch.DATA / f"text_{lines}.jsonl", lines, batch.text_row)


def _command(data: Path, workers: int | None) -> list[str]:
    """``workers`` None: no ``--workers`` option (code older than worker processes)."""
    return [str(PFKIT_PY), "-m", "pfkit", "run", "create", "--flow", str(FLOWS / "word_count"),
            "--data", str(data), "-n", "r", "--no-progress",
            *(["--workers", str(workers)] if workers is not None else [])]


def _env(home: Path, tree: str | None) -> dict[str, str]:
    shutil.rmtree(home, ignore_errors=True)
    env = pfkit_env()
    env.pop("PFKIT_CACHE", None)
    env["PFKIT_HOME"] = str(home)
    env["PYTHONPATH"] = tree or str(REPO)
    return env


def _check(home: Path, lines: int) -> None:
    count = batch._count_lines(home / "runs" / "r" / "flow_outputs" / "output.jsonl")
    if count != lines:
        raise SystemExit(f"{home}: {count} of {lines} lines in output.jsonl")


def run_one(data: Path, lines: int, workers: int | None, tree: str | None
            ) -> tuple[float, float, float, float]:
    """(wall, the run's own duration, CPU seconds, peak MB of the whole process tree)."""
    home = SCRATCH / "home"
    log = SCRATCH / "run.log"
    wall, code, samples, _, cpu = batch.run_measured(_command(data, workers),
                                                     env=_env(home, tree), log=log)
    text = log.read_text(encoding="utf-8", errors="replace")
    if code:
        raise SystemExit(f"pfkit failed:\n{text[-3000:]}")
    _check(home, lines)
    duration = batch._last_json(text)["properties"]["system_metrics"]["duration"]
    return wall, duration, cpu, max((sample.tree_mb for sample in samples), default=0.0)


def run_pair(data: Path, lines: int) -> tuple[float, float, float, float]:
    homes = [SCRATCH / f"pair{k}" for k in range(2)]
    start = time.perf_counter()
    procs = [subprocess.Popen(_command(data, 1), env=_env(home, None), cwd=SCRATCH,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
             for home in homes]
    codes = [proc.wait() for proc in procs]
    wall = (time.perf_counter() - start) / 2
    if codes != [0, 0]:
        raise SystemExit(f"pfkit failed in the pair: {codes}")
    for home in homes:
        _check(home, lines)
    return wall, wall, 0.0, 0.0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--lines", type=int, default=100_000)
    parser.add_argument("--tree", action="append", default=[], help="another checkout")
    args = parser.parse_args()
    SCRATCH.mkdir(parents=True, exist_ok=True)
    data = _data(args.lines)
    cases = {"one": lambda: run_one(data, args.lines, 1, None),
             "w2": lambda: run_one(data, args.lines, 2, None)}
    for tree in args.tree:
        path = str(Path(tree).resolve())
        cases[f"tree:{path}"] = lambda path=path: run_one(data, args.lines, None, path)
    cases["pair"] = lambda: run_pair(data, args.lines)
    results: dict[str, list[tuple[float, float, float, float]]] = {name: [] for name in cases}
    for round_number in range(1, args.rounds + 1):
        for name, case in cases.items():
            wall, duration, cpu, tree_mb = case()
            results[name].append((wall, duration, cpu, tree_mb))
            print(f"round {round_number} {name:30s} {wall:6.2f} s whole, {duration:6.2f} s run, "
                  f"{cpu:6.2f} CPU-s, {tree_mb:4.0f} MB process tree", flush=True)
    print("medians (lines/s whole process / run's own duration):")
    one = statistics.median(r[0] for r in results["one"])
    for name, rows in results.items():
        wall = statistics.median(r[0] for r in rows)
        duration = statistics.median(r[1] for r in rows)
        print(f"  {name:30s} {args.lines / wall:9,.0f} / {args.lines / duration:9,.0f}"
              f"   ({one / wall:.2f}x one process)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
