"""``pfkit compare RUN_A RUN_B [RUN ...]``: paired statistics across runs of the same data."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def register(groups: argparse._SubParsersAction) -> None:
    parser = groups.add_parser(
        "compare", help="compare runs of the same data with paired statistics",
        description="Compare runs line by line (aligned by line number and input hash): each "
                    "metric's mean with a 95%% interval per run and, against the baseline, the "
                    "paired difference with its interval, a Holm-corrected p-value and "
                    "win/tie/loss counts. A run's metrics are its numeric outputs and those of "
                    "the evaluation runs made over it.")
    parser.add_argument("runs", nargs="+", metavar="RUN",
                        help="run names, or the name of an --all-variants group (its runs)")
    parser.add_argument("--metric", action="append", default=None, metavar="M",
                        help="compare only this metric (repeatable); default: every metric all "
                             "runs have")
    parser.add_argument("--baseline", metavar="RUN",
                        help="the run the others are compared against (default: the first)")
    parser.add_argument("--json", action="store_true", help="print the result as JSON")
    parser.add_argument("--html", metavar="FILE",
                        help="also write a self-contained HTML report to FILE")
    parser.set_defaults(handler=cmd_compare)


def cmd_compare(args: argparse.Namespace) -> int:
    from ..compare import compare, render_html

    result = compare(args.runs, baseline=args.baseline, metrics=args.metric)
    if args.json:
        sys.stdout.write(json.dumps(result.to_dict(), ensure_ascii=False, indent=2,
                                    default=repr) + "\n")
    else:
        sys.stdout.write(str(result) + "\n")
    if args.html:
        path = Path(args.html)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(render_html(result), encoding="utf-8")
        print(f"pfkit: wrote the report to {path}", file=sys.stderr)
    return 0
