"""In-process engine overhead per line: pfkit vs promptflow 1.18.5 vs a bare Python loop.

    .venv/bin/python bench/engine.py [--repeats 5] [--pfkit-lines 20000] [--pfkit-warmup 1000]
                                     [--pf-lines 2000] [--pf-warmup 100] [--no-append]

For each flow (bench/flows/one_node: 1 python node; bench/flows/ten_nodes: a chain of 10), each
repetition runs every contestant once, in turn (A B C D E, A B C D E, ...), each in a fresh
process (bench/_engine_worker.py) that loads the flow once, runs the warm-up lines, then times
the measured lines with ``time.perf_counter`` around the loop:

- bare               a plain loop calling the flow's tool functions in the flow's order, with the
                     same inputs: the physical limit (no engine at all);
- pfkit              ``await execute_line(flow, inputs, line_number=i)`` in one ``asyncio.run``
                     (default 600 s line timeout: one loop timer per line);
- pfkit, no timeout  the same with ``timeout=None``;
- promptflow         ``FlowExecutor.create(...).exec_line(inputs, index=i)`` in its venv, with
                     its defaults (INFO logs, to /dev/null here);
- promptflow, WARNING logs  the same with ``PF_LOGGING_LEVEL=WARNING``, its documented switch for
                     quieter logs (the tuned figure).

Target (docs/benchmarks.md): pfkit <= 0.1 ms per line for the 1-node flow.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import (  # noqa: E402
    BENCH,
    FLOWS,
    PF_PY,
    PFKIT_PY,
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
)

WORKER = BENCH / "_engine_worker.py"
TARGET_US = 100.0  # pfkit, 1-node flow, per line
FLOW_NAMES = ("one_node", "ten_nodes")

BARE, KIT, KIT_NT, PF, PF_TUNED = ("bare loop", "pfkit", "pfkit, timeout=None", "promptflow",
                                   "promptflow, PF_LOGGING_LEVEL=WARNING")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=5, help="repetitions (default 5)")
    parser.add_argument("--pfkit-lines", type=int, default=20_000)
    parser.add_argument("--pfkit-warmup", type=int, default=1_000)
    parser.add_argument("--pf-lines", type=int, default=2_000)
    parser.add_argument("--pf-warmup", type=int, default=100)
    parser.add_argument("--flows", nargs="+", choices=FLOW_NAMES, default=list(FLOW_NAMES))
    parser.add_argument("--no-append", action="store_true", help="do not write bench/RESULTS.md")
    args = parser.parse_args()
    if args.repeats < 5:
        parser.error("--repeats must be at least 5")
    require_pfkit()
    require_promptflow()

    tmp = Path(tempfile.mkdtemp(prefix="pfkit-bench-engine-"))
    records: dict[tuple[str, str], list[dict]] = {}

    def worker(python: Path, env: dict, impl: str, flow: str, lines: int, warmup: int,
               label: str):
        def measure() -> float:
            out = tmp / "result.json"
            out.unlink(missing_ok=True)
            run_process([str(python), str(WORKER), impl, str(FLOWS / flow), "--lines",
                         str(lines), "--warmup", str(warmup), "--out", str(out)],
                        env=env, cwd=FLOWS / flow, timeout=1800)
            record = json.loads(out.read_text())
            records.setdefault((flow, label), []).append(record)
            return record["us_per_line"]
        return measure

    kit, pf, pf_tuned = pfkit_env(), pf_env(), pf_env(PF_LOGGING_LEVEL="WARNING")
    kl, kw, pl, pw = args.pfkit_lines, args.pfkit_warmup, args.pf_lines, args.pf_warmup
    results: dict[str, dict[str, list[float]]] = {}
    for flow in args.flows:
        print(f"flow {flow} (µs per line)", file=sys.stderr)
        results[flow], _ = alternate({
            BARE: worker(PFKIT_PY, kit, "bare", flow, kl, kw, BARE),
            KIT: worker(PFKIT_PY, kit, "pfkit", flow, kl, kw, KIT),
            KIT_NT: worker(PFKIT_PY, kit, "pfkit-no-timeout", flow, kl, kw, KIT_NT),
            PF: worker(PF_PY, pf, "promptflow", flow, pl, pw, PF),
            PF_TUNED: worker(PF_PY, pf_tuned, "promptflow", flow, pl, pw, PF_TUNED),
        }, runs=args.repeats, warmup=0)

    rows = []
    notes = []
    for flow in args.flows:
        s = {name: Stats.of(values) for name, values in results[flow].items()}
        nodes = records[(flow, BARE)][0]["nodes"]
        bare = s[BARE].median
        for name in (BARE, KIT, KIT_NT, PF, PF_TUNED):
            st = s[name]
            lines = records[(flow, name)][0]["lines"]
            if name == BARE:
                over = vs_kit = ""
            else:
                extra = st.median - bare
                over = f"{extra:.1f} / {extra / nodes:.1f}"
                vs_kit = ratio(st.median, s[KIT].median) if name != KIT else "1.00×"
            rows.append([flow, name, f"{lines:,}", st.fmt(digits=1), over, vs_kit])
        for name in (KIT, KIT_NT):
            flagged = [r for r in records[(flow, name)] if r.get("blocking")]
            if flagged:
                notes.append(
                    f"{flow}, {name}: in {len(flagged)} of {len(records[(flow, name)])} "
                    f"repetitions pfkit had moved node(s) "
                    f"{sorted({n for r in flagged for n in r['blocking']})} to worker threads "
                    "(one call above its 2 ms BLOCKING_THRESHOLD, e.g. a preemption on a busy "
                    "machine, flags a node for good); those repetitions ran at "
                    + ", ".join(f"{r['us_per_line']:.0f}" for r in flagged) + " µs/line, the "
                    "others at " + (", ".join(f"{r['us_per_line']:.0f}" for r in
                                              records[(flow, name)] if not r.get("blocking"))
                                    or "none") + " µs/line.")

    one = Stats.of(results["one_node"][KIT]) if "one_node" in results else None
    headers = ["flow", "engine", "lines timed", "µs per line, median (min–max)",
               "above bare loop, µs per line / per node", "÷ pfkit (median)"]
    body = markdown_table(headers, rows)
    summary = [
        f"{args.repeats} repetitions, each contestant in a fresh process per repetition, "
        f"alternated; pfkit and the bare loop time {kl:,} lines after {kw:,} warm-up lines, "
        f"promptflow {pl:,} after {pw:,}. promptflow's stdout (its INFO log lines) goes to "
        "/dev/null.",
    ]
    if one is not None:
        summary.append(
            f"Target pfkit ≤ {TARGET_US:.0f} µs per line (1-node flow): median "
            f"{one.median:.1f} µs → {'met' if one.median <= TARGET_US else '**missed**'}.")
    body += "\n\n" + "\n".join(f"- {n}" for n in summary + notes)
    publish("Engine overhead per line, in-process (bench/engine.py)", body, append=not args.no_append)
    return 0


if __name__ == "__main__":
    sys.exit(main())
