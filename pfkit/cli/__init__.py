"""The ``pfkit`` command. Thin: parse arguments, call the library, print results.

Any :class:`~pfkit.errors.PfkitError` becomes one clear line on stderr and a non-zero exit
status; ``--debug`` shows the traceback instead.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from .._version import __version__
from ._common import EXIT_ERROR, EXIT_USAGE, fail, report_error


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="pfkit",
        description="Run, test and evaluate Prompt flow (flow.dag.yaml) flows.",
    )
    parser.add_argument("--version", action="version", version=f"pfkit {__version__}")
    parser.add_argument("--debug", action="store_true", help="show tracebacks on errors")
    groups = parser.add_subparsers(dest="group", metavar="COMMAND")

    from . import _compare, _connection, _demo, _eval, _flow, _run, _testing

    _flow.register(groups)
    _run.register(groups)
    _eval.register(groups)
    _compare.register(groups)
    _demo.register(groups)
    _connection.register(groups)
    _testing.register(groups)
    from . import _serve

    _serve.register_gate(groups)
    return parser


def _enable_faulthandler() -> None:
    """A native crash (a segfault in a model runtime) prints "Fatal Python error" and where it
    happened instead of dying silently; the exit status says it was a signal."""
    import faulthandler

    if not faulthandler.is_enabled():
        try:
            faulthandler.enable(file=sys.stderr, all_threads=True)
        except (AttributeError, ValueError, OSError):  # stderr without a file descriptor
            pass


def main(argv: Sequence[str] | None = None) -> int:
    _enable_faulthandler()
    if argv is None:  # the pfkit command itself (not a caller's process): see pfkit._runtime
        from .._runtime import claim_process

        claim_process()
    args_list = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in args_list
    parser = build_parser()
    try:
        args = parser.parse_args(args_list)
    except SystemExit as exc:  # argparse already printed usage or the version
        return int(exc.code or 0) if not isinstance(exc.code, str) else EXIT_USAGE
    handler = getattr(args, "handler", None)
    if handler is None:
        parser.print_help(sys.stderr)
        return EXIT_USAGE
    try:
        return int(handler(args) or 0)
    except KeyboardInterrupt as exc:
        if type(exc) is not KeyboardInterrupt and str(exc):  # e.g. a canceled run, by name
            print(f"pfkit: interrupted ({exc})", file=sys.stderr)
        else:
            print("pfkit: interrupted", file=sys.stderr)
        return 130
    except BaseException as exc:  # noqa: BLE001 - the CLI never shows a bare traceback
        if isinstance(exc, SystemExit):
            raise
        return report_error(exc, debug=debug or getattr(args, "debug", False))


__all__ = ["EXIT_ERROR", "build_parser", "fail", "main"]
