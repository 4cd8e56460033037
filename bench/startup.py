"""Cold start, pfkit vs promptflow 1.18.5: whole processes, wall clock.

    .venv/bin/python bench/startup.py [--runs 7] [--warmup 1] [--no-append]

Three pairs, each alternated (pfkit, promptflow, pfkit, promptflow, ...) after a warm-up:

(a) ``python -c "import pfkit"`` vs ``python -c "import promptflow.core"``, each in its venv,
    next to ``python -c pass`` in both venvs (the interpreter's own start, the floor);
(b) ``pfkit --version`` vs ``pf --version``;
(c) ``pfkit flow test --flow bench/flows/one_node --inputs text=hi`` vs the same ``pf`` command.
    promptflow's first ``flow test`` starts its background service (pfs); the warm-up rounds
    absorb that (the first call's time is reported separately), and the service is stopped at
    the end.

Targets (docs/benchmarks.md): ``import pfkit`` <= 0.15 s and >= 15x faster than promptflow's
cold start; ``flow test`` <= 0.4 s.
"""

from __future__ import annotations

import argparse
import sys
from functools import partial
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import (  # noqa: E402
    PF_CLI,
    PF_PY,
    PFKIT_CLI,
    PFKIT_PY,
    REPO,
    Stats,
    alternate,
    markdown_table,
    pf_env,
    pfkit_env,
    publish,
    ratio,
    require_pfkit,
    require_promptflow,
    run_process,
    time_process,
)

FLOW = "bench/flows/one_node"
IMPORT_TARGET = 0.15
FLOW_TEST_TARGET = 0.4
COLD_START_RATIO_TARGET = 15.0


def pf_service_running() -> bool:
    out = run_process([str(PF_CLI), "service", "status"], env=pf_env(), cwd=REPO).stdout
    return '"port"' in out


def pf_service_stop() -> None:
    if pf_service_running():
        run_process([str(PF_CLI), "service", "stop"], env=pf_env(), cwd=REPO)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=7, help="measured rounds (default 7)")
    parser.add_argument("--warmup", type=int, default=1,
                        help="warm-up rounds (default 1; flow test gets one more)")
    parser.add_argument("--no-append", action="store_true", help="do not write bench/RESULTS.md")
    args = parser.parse_args()
    if args.runs < 5:
        parser.error("--runs must be at least 5")
    require_pfkit()
    require_promptflow()

    kit, pf = pfkit_env(), pf_env()
    run = partial(time_process, cwd=REPO)

    # Start from a stopped promptflow service (ours: it lives in .bench/pf-home), so the first
    # flow test below shows what a user's first call costs.
    pf_service_stop()

    print("(a) import", file=sys.stderr)
    imports, _ = alternate({
        "pfkit venv: python -c pass": lambda: run([str(PFKIT_PY), "-c", "pass"], env=kit),
        "import pfkit": lambda: run([str(PFKIT_PY), "-c", "import pfkit"], env=kit),
        "promptflow venv: python -c pass": lambda: run([str(PF_PY), "-c", "pass"], env=pf),
        "import promptflow.core": lambda: run([str(PF_PY), "-c", "import promptflow.core"],
                                              env=pf),
    }, runs=args.runs, warmup=args.warmup)

    print("(b) --version", file=sys.stderr)
    versions, _ = alternate({
        "pfkit --version": lambda: run([str(PFKIT_CLI), "--version"], env=kit),
        "pf --version": lambda: run([str(PF_CLI), "--version"], env=pf, expect="1.18.5"),
    }, runs=args.runs, warmup=args.warmup)

    print("(c) flow test", file=sys.stderr)
    flow_args = ["flow", "test", "--flow", FLOW, "--inputs", "text=hi"]
    expect = '"output": "hi"'
    try:
        tests, warm = alternate({
            "pfkit flow test": lambda: run([str(PFKIT_CLI), *flow_args], env=kit, expect=expect),
            "pf flow test": lambda: run([str(PF_CLI), *flow_args], env=pf, expect=expect),
        }, runs=args.runs, warmup=args.warmup + 1)
    finally:
        pf_service_stop()

    s = {name: Stats.of(v) for group in (imports, versions, tests) for name, v in group.items()}

    def row(what: str, a: str, b: str, target: float | None) -> list[str]:
        met = "" if target is None else ("yes" if s[a].median <= target else "**no**")
        return [what, s[a].fmt(unit=" s"), s[b].fmt(unit=" s"), ratio(s[b].median, s[a].median),
                "" if target is None else f"≤ {target} s", met]

    headers = ["whole process, wall clock", "pfkit median (min–max)",
               "promptflow median (min–max)", "promptflow / pfkit", "pfkit target", "met"]
    rows = [
        row("`python -c pass` (interpreter floor)", "pfkit venv: python -c pass",
            "promptflow venv: python -c pass", None),
        row('`python -c "import pfkit"` vs `"import promptflow.core"`', "import pfkit",
            "import promptflow.core", IMPORT_TARGET),
        row("`pfkit --version` vs `pf --version`", "pfkit --version", "pf --version",
            IMPORT_TARGET),
        row(f"`flow test --flow {FLOW} --inputs text=hi`", "pfkit flow test", "pf flow test",
            FLOW_TEST_TARGET),
    ]
    table = markdown_table(headers, rows)

    floor = s["pfkit venv: python -c pass"].median
    cold_ratio = s["pf --version"].median / s["pfkit --version"].median
    first_pf = warm["pf flow test"][0]
    notes = [
        "pfkit runs from its editable install in `.venv` with bytecode cached under "
        "`.bench/pycache` (as a pip install would have it); promptflow from its pip-installed "
        "venv with `PF_DISABLE_TRACING=true` and its own `PF_HOME_DIRECTORY` (.bench/pf-home).",
        "The interpreter floor differs between the venvs because the editable install's "
        "`__editable__` .pth finder imports pathlib and friends at every interpreter start "
        "(a non-editable install has no such cost).",
        f"{args.runs} measured rounds after {args.warmup} warm-up round(s) "
        f"({args.warmup + 1} for flow test), contestants alternated within each group; "
        "wall clock from spawn to exit, output captured to pipes and checked.",
        f"Above the interpreter floor ({floor:.3f} s): import pfkit "
        f"+{s['import pfkit'].median - floor:.3f} s, pfkit --version "
        f"+{s['pfkit --version'].median - floor:.3f} s, pfkit flow test "
        f"+{s['pfkit flow test'].median - floor:.3f} s.",
        f"Cold start ratio (pf --version / pfkit --version): {cold_ratio:.1f}× "
        f"(target ≥ {COLD_START_RATIO_TARGET:.0f}×: "
        f"{'met' if cold_ratio >= COLD_START_RATIO_TARGET else 'missed'}).",
        f"promptflow's first `pf flow test` (warm-up, starting its background service): "
        f"{first_pf:.2f} s; the table is with the service already running.",
    ]
    body = table + "\n\n" + "\n".join(f"- {n}" for n in notes)
    publish("Startup: import, --version, flow test (bench/startup.py)", body, append=not args.no_append)
    return 0


if __name__ == "__main__":
    sys.exit(main())
