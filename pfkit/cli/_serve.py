"""``pfkit flow serve``, ``pfkit flow build`` and ``pfkit gate``."""

from __future__ import annotations

import argparse
import re
import sys

from ._common import err, fail, parse_key_values, print_json

_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kKmMgG]?)[bB]?\s*$")


def _size(text: str) -> int:
    match = _SIZE.match(text)
    if not match:
        raise argparse.ArgumentTypeError(f"{text!r} is not a size (e.g. 1048576, 512KB, 10MB)")
    factor = {"": 1, "k": 1024, "m": 1024 ** 2, "g": 1024 ** 3}[match.group(2).lower()]
    return int(float(match.group(1)) * factor)


def _add_gate_options(parser: argparse.ArgumentParser, *, required: bool = False) -> None:
    group = parser.add_argument_group("evaluation gate")
    group.add_argument("--gate", action="append", metavar="METRIC>=X", default=[],
                       help="refuse unless the gate run's METRIC meets this threshold "
                            "(>= > <= < ==); repeat for several")
    group.add_argument("--gate-run", metavar="EVAL_RUN", required=required,
                       help="the candidate's evaluation run whose metrics are checked")
    group.add_argument("--baseline-run", metavar="RUN",
                       help="refuse if the gate run is significantly worse than this run "
                            "(paired statistics, as pfkit compare)")
    group.add_argument("--max-regression", type=float, default=0.0, metavar="M",
                       help="with --baseline-run: a significant drop up to M is allowed "
                            "(default 0)")
    group.add_argument("--metric", action="append", dest="gate_metrics", default=[],
                       metavar="METRIC",
                       help="with --baseline-run: compare only these metrics (default: the "
                            "gated ones, else every common score)")


def _add_flow_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--source", required=True, help="flow folder or flow file")
    parser.add_argument("--variant", help="a variant to use, e.g. '${node.variant_1}'")
    parser.add_argument("--connections", nargs="+", metavar="NODE.FIELD=VALUE",
                        help="override node.connection, node.deployment_name or node.model")
    parser.add_argument("--allow-outside-paths", action="store_true",
                        help="serve/package a flow that reads files from outside its folder")


def register(commands: argparse._SubParsersAction) -> None:
    """``serve`` and ``build``, in the ``flow`` group."""
    serve = commands.add_parser("serve", help="serve a flow as an HTTP endpoint (uvicorn)")
    _add_flow_options(serve)
    serve.add_argument("--host", default="127.0.0.1",
                       help="address to bind (default 127.0.0.1; 0.0.0.0 for every interface)")
    serve.add_argument("--port", type=int, default=8080, help="port (default 8080)")
    serve.add_argument("--workers", type=int, default=1, metavar="N",
                       help="worker processes, each loading the flow once (default 1)")
    serve.add_argument("--environment-variables", nargs="+", metavar="KEY=VALUE",
                       help="extra environment variables for the flow's tools")
    serve.add_argument("--timeout", type=float, default=300.0,
                       help="seconds per /score request (default 300): 504 after that")
    serve.add_argument("--max-body-size", type=_size, default=10 * 1024 * 1024,
                       metavar="SIZE", help="largest request body (default 10MB): 413 above")
    serve.add_argument("--api-keys-file", metavar="FILE",
                       help="require Authorization: Bearer KEY, one key a line in FILE "
                            "(or set PFKIT_API_KEYS=key1,key2)")
    serve.add_argument("--feedback-file", metavar="FILE",
                       help="append each POST /feedback body to this JSONL file")
    serve.add_argument("--access-log", action="store_true", help="log every request")
    _add_gate_options(serve)
    serve.add_argument("--debug", action="store_true", help=argparse.SUPPRESS)
    serve.set_defaults(handler=cmd_serve)

    build = commands.add_parser("build", help="build a deployable folder (Docker) for a flow")
    _add_flow_options(build)
    build.add_argument("--output", required=True, help="the folder to write (new or empty)")
    build.add_argument("--format", default="docker", choices=("docker",),
                       help="docker: Dockerfile, flow, connections, settings.json, README")
    build.add_argument("--workers", type=int, default=4, metavar="N",
                       help="server workers in the image (default 4; PFKIT_WORKERS at run)")
    _add_gate_options(build)
    build.add_argument("--debug", action="store_true", help=argparse.SUPPRESS)
    build.set_defaults(handler=cmd_build)


def register_gate(groups: argparse._SubParsersAction) -> None:
    """``pfkit gate``: the gate alone, for CI (exit 0 passed, 1 refused)."""
    gate = groups.add_parser("gate", help="pass or refuse a candidate by its evaluation (CI)")
    _add_gate_options(gate, required=True)
    gate.add_argument("--json", action="store_true", help="print the report as JSON")
    gate.add_argument("--debug", action="store_true", help=argparse.SUPPRESS)
    gate.set_defaults(handler=cmd_gate)


def _gate(args: argparse.Namespace, *, announce: bool = True):
    if not (args.gate or args.baseline_run):
        if args.gate_run:
            raise fail("--gate-run needs --gate METRIC>=X or --baseline-run RUN",
                       hint="Say what the candidate must meet, e.g. --gate 'accuracy>=0.9'.")
        if args.max_regression:
            raise fail("--max-regression needs --baseline-run RUN")
        return None
    if args.max_regression and not args.baseline_run:
        raise fail("--max-regression needs --baseline-run RUN")
    from ..serve._gate import enforce_gate

    report = enforce_gate(args.gate, gate_run=args.gate_run, baseline_run=args.baseline_run,
                          max_regression=args.max_regression,
                          metrics=args.gate_metrics or None)
    if announce:
        err(f"pfkit: {report}")
    return report


def cmd_gate(args: argparse.Namespace) -> int:
    from ..serve._gate import GateRefused

    try:
        report = _gate(args, announce=not args.json)
    except GateRefused as exc:
        if args.json:
            print_json(exc.report.to_dict())
            return 1
        raise
    if report is None:
        raise fail("pfkit gate needs --gate METRIC>=X or --baseline-run RUN")
    if args.json:
        print_json(report.to_dict())
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    _gate(args)
    from ..serve import serve

    serve(args.source, host=args.host, port=args.port, workers=args.workers,
          variant=args.variant,
          connections=parse_key_values(args.connections, option="--connections"),
          environment=parse_key_values(args.environment_variables,
                                       option="--environment-variables"),
          api_keys_file=args.api_keys_file, timeout=args.timeout,
          max_body_bytes=args.max_body_size, feedback_file=args.feedback_file,
          allow_outside_paths=args.allow_outside_paths, access_log=args.access_log)
    return 0


def cmd_build(args: argparse.Namespace) -> int:
    _gate(args)
    from ..serve import build

    out = build(args.source, args.output, format=args.format, variant=args.variant,
                connections=parse_key_values(args.connections, option="--connections"),
                allow_outside_paths=args.allow_outside_paths, workers=args.workers)
    sys.stdout.write(f"built {out}: docker build -t IMAGE {out}  (set the variables in "
                     f"{out / 'settings.json'})\n")
    return 0
