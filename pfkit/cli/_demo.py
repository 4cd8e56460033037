"""``pfkit demo``: run, evaluate and compare two prompt variants on the embedded model."""

from __future__ import annotations

import argparse


def register(groups: argparse._SubParsersAction) -> None:
    parser = groups.add_parser(
        "demo", help="the whole loop offline: two prompt variants, evaluated and compared",
        description="Batch-run the zero-shot and few-shot variants of an example sentiment flow "
                    "on the embedded local model, evaluate both, compare them with paired "
                    "statistics, print the table and write an HTML report (about 2 minutes on "
                    "2 cores; needs pip install 'pfkit[local]').")
    parser.add_argument("--html", default="pfkit-demo.html", metavar="FILE",
                        help="where to write the report (default: pfkit-demo.html)")
    parser.add_argument("--no-progress", action="store_true", help="no progress lines")
    parser.set_defaults(handler=cmd_demo)


def cmd_demo(args: argparse.Namespace) -> int:
    from ..demo import run_demo

    run_demo(html=args.html, progress=not args.no_progress)
    return 0
