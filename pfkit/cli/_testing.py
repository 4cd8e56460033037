"""``pfkit testing serve``: run the OpenAI-compatible test server from the command line.

::

    pfkit testing serve --port 8000 --latency 0.05 --rules rules.yaml --fail-rate 429=0.1

prints the base URL (``http://127.0.0.1:8000/v1``, alone on stdout; hints go to stderr) and
serves until Ctrl-C. Point an
``openai`` client (or a pfkit connection's ``base_url``) at it. A rules file is YAML or JSON::

    rules:
      - pattern: "(?i)weather"
        reply: "It is sunny."
      - pattern: "^call"
        reply: {tool_calls: [{name: get_weather, arguments: {city: Paris}}]}
      - pattern: "overload"
        fault: {status: 503}
      - pattern: "flaky stream"
        fault: {cut: 3}            # 3 SSE events, then the connection closes
    default: "I don't know."     # leave out to echo the request back

A rule's ``fault`` is ``{status: N}`` (``retry_after`` for 429), ``{hang: SECONDS}``,
``{malformed: true}``, ``{cut: EVENTS}``, ``{stall: SECONDS, after: EVENTS}`` (silent
mid-body, then closed) or ``{unfinished: true}`` (a stream without ``finish_reason`` or
``[DONE]``). ``--fail-rate`` draws the same by name for any request:
``--fail-rate 429=0.1 503=0.05 cut=0.01 stall=0.01 unfinished=0.01 hang=0.01 malformed=0.01``.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import UserError
from ._common import EXIT_ERROR, EXIT_USAGE, fail, parse_key_values

if TYPE_CHECKING:
    from ..testing import RuleResponder, TestServer


def register(groups: argparse._SubParsersAction) -> None:
    """Add ``pfkit testing serve`` to the main parser's sub-commands."""
    testing = groups.add_parser("testing", help="test helpers: a local OpenAI-compatible server")
    commands = testing.add_subparsers(dest="command", metavar="COMMAND")
    testing.set_defaults(handler=lambda args: testing.print_help(sys.stderr) or EXIT_USAGE)

    serve = commands.add_parser(
        "serve", help="serve a fake OpenAI-compatible API (echo, rules, faults) for tests",
        description="Serve an OpenAI / Azure OpenAI compatible API on a loopback address. "
                    "Answers echo the request unless --rules says otherwise.")
    add_serve_arguments(serve)
    serve.set_defaults(handler=cmd_serve)


def add_serve_arguments(serve: argparse.ArgumentParser) -> None:
    serve.add_argument("--host", default="127.0.0.1", help="address to listen on (loopback)")
    serve.add_argument("--port", type=int, default=8000, help="port (0 picks a free one)")
    serve.add_argument("--latency", type=float, default=0.0, metavar="SECONDS",
                       help="delay before every model response")
    serve.add_argument("--first-chunk-delay", type=float, default=0.0, metavar="SECONDS",
                       help="extra delay before a stream's first event")
    serve.add_argument("--chunk-delay", type=float, default=0.0, metavar="SECONDS",
                       help="delay between a stream's events")
    serve.add_argument("--stream-chunk-chars", type=int, default=16, metavar="N",
                       help="characters of the answer per stream event (default 16)")
    serve.add_argument("--rules", metavar="FILE", help="rules.yaml or rules.json (regex -> reply)")
    serve.add_argument("--fail-rate", nargs="+", action="extend", metavar="FAULT=P",
                       help="inject faults with a probability: an HTTP status or hang, "
                            "malformed, cut, stall, unfinished; e.g. 429=0.1 503=0.05 cut=0.01")
    serve.add_argument("--retry-after", type=float, default=1.0, metavar="SECONDS",
                       help="Retry-After of injected 429s (default 1)")
    serve.add_argument("--hang-seconds", type=float, default=30.0, metavar="SECONDS",
                       help="how long an injected hang lasts before the connection closes "
                            "(default 30)")
    serve.add_argument("--cut-after", type=int, default=2, metavar="EVENTS",
                       help="stream events sent before an injected cut or stall (default 2)")
    serve.add_argument("--stall-seconds", type=float, default=30.0, metavar="SECONDS",
                       help="how long an injected stall stays silent before the connection "
                            "closes (default 30)")
    serve.add_argument("--api-key", help="require this API key (401 otherwise)")
    serve.add_argument("--models", nargs="+", metavar="MODEL",
                       help="allowed models / deployments (404 for others)")
    serve.add_argument("--max-context-words", type=int, metavar="N",
                       help="reject prompts longer than N words (400 context_length_exceeded)")
    serve.add_argument("--embedding-dimensions", type=int, default=8, metavar="N")
    serve.add_argument("--seed", type=int, help="seed for --fail-rate draws")
    serve.add_argument("--reuse-port", action="store_true",
                       help="listen with SO_REUSEPORT, so several server processes can share "
                            "one --port (each counts its own requests)")
    serve.add_argument("--allow-remote", action="store_true",
                       help="allow a non-loopback --host (the server has no real security)")
    serve.add_argument("--debug", action="store_true", help=argparse.SUPPRESS)


def main(argv: Sequence[str] | None = None) -> int:
    """``pfkit testing serve`` on its own, for ``python -m pfkit.cli._testing [options]`` and
    :class:`~pfkit.testing.TestServerProcess`."""
    parser = argparse.ArgumentParser(prog="python -m pfkit.cli._testing",
                                     description="Serve the OpenAI-compatible test API.")
    add_serve_arguments(parser)
    args = parser.parse_args(argv)
    from .._runtime import claim_process

    claim_process()  # this process is the test server's own
    try:
        return cmd_serve(args)
    except UserError as exc:
        print(f"pfkit: error: {exc}", file=sys.stderr)
        return EXIT_ERROR


def parse_fail_rates(pairs: list[str] | None) -> dict[int | str, float]:
    """``["429=0.1", "503=0.05", "cut=0.01"]`` -> ``{429: 0.1, 503: 0.05, "cut": 0.01}``."""
    from ..testing._faults import NAMED_RATES

    rates: dict[int | str, float] = {}
    for fault, probability in parse_key_values(pairs, option="--fail-rate").items():
        name = fault.strip().lower()
        try:
            key: int | str = name if name in NAMED_RATES else int(name)
            value = float(probability)
        except ValueError:
            raise fail(f"--fail-rate expects FAULT=PROBABILITY, got {fault}={probability}",
                       hint="A fault is an HTTP status or one of " + ", ".join(NAMED_RATES)
                            + ";  for example  --fail-rate 429=0.1 503=0.05 cut=0.01") from None
        if (isinstance(key, int) and not 400 <= key <= 599) or not 0.0 <= value <= 1.0:
            raise fail(f"--fail-rate {fault}={probability}: the status must be 4xx/5xx and "
                       "the probability between 0 and 1")
        rates[key] = value
    if sum(rates.values()) > 1.0:
        raise fail("--fail-rate probabilities add up to more than 1")
    return rates


def load_rules(path: str) -> RuleResponder:
    """A :class:`~pfkit.testing.RuleResponder` from a YAML or JSON rules file."""
    from ..testing import RuleResponder

    file = Path(path)
    if not file.is_file():
        raise fail(f"rules file {path} does not exist")
    text = file.read_text(encoding="utf-8")
    try:
        if file.suffix.lower() == ".json":
            data = json.loads(text)
        else:
            import yaml

            data = yaml.safe_load(text)
    except (ValueError, ImportError) as exc:
        raise fail(f"{path}: not valid {file.suffix.lstrip('.').upper() or 'YAML'}: {exc}") from None
    except Exception as exc:  # noqa: BLE001 - yaml.YAMLError and friends
        raise fail(f"{path}: could not be parsed: {exc}") from None
    try:
        return RuleResponder.from_config(data)
    except (ValueError, TypeError, KeyError) as exc:
        raise fail(f"{path}: {exc}") from None


def build_server(args: argparse.Namespace) -> TestServer:
    """The :class:`~pfkit.testing.TestServer` the arguments describe (not started)."""
    from ..testing import TestServer

    if not 0 <= args.port <= 65535:
        raise fail(f"--port {args.port} is not a port number (0 picks a free one)")
    for option, value, low in (("--stream-chunk-chars", args.stream_chunk_chars, 1),
                               ("--cut-after", args.cut_after, 0),
                               ("--embedding-dimensions", args.embedding_dimensions, 1)):
        if value < low:
            raise fail(f"{option} must be at least {low}, got {value}")
    for option, seconds in (("--latency", args.latency), ("--chunk-delay", args.chunk_delay),
                            ("--first-chunk-delay", args.first_chunk_delay),
                            ("--hang-seconds", args.hang_seconds),
                            ("--stall-seconds", args.stall_seconds)):
        if seconds < 0:
            raise fail(f"{option} must be 0 or more seconds, got {seconds:g}")
    responder = load_rules(args.rules) if args.rules else None
    return TestServer(
        responder, host=args.host, port=args.port, latency=args.latency,
        first_chunk_delay=args.first_chunk_delay, chunk_delay=args.chunk_delay,
        stream_chunk_chars=args.stream_chunk_chars,
        embedding_dimensions=args.embedding_dimensions, seed=args.seed,
        allow_remote=args.allow_remote, reuse_port=args.reuse_port,
        fail_rate=parse_fail_rates(args.fail_rate),
        retry_after=args.retry_after, hang_seconds=args.hang_seconds,
        cut_after=args.cut_after, stall_seconds=args.stall_seconds,
        expected_api_key=args.api_key,
        models=args.models, max_context_words=args.max_context_words)


def cmd_serve(args: argparse.Namespace) -> int:
    from ..testing import is_loopback_host

    if not is_loopback_host(args.host) and not args.allow_remote:
        print(f"pfkit: error: refusing to listen on {args.host}: it is not a loopback address. "
              "The test server has no real security; pass --allow-remote if you really mean it.",
              file=sys.stderr)
        return EXIT_USAGE
    server = build_server(args)
    try:
        import asyncio

        asyncio.run(_serve(server))
    except KeyboardInterrupt:
        pass
    except OSError as exc:
        print(f"pfkit: error: cannot listen on {args.host}:{args.port}: {exc}", file=sys.stderr)
        return EXIT_ERROR
    print("pfkit: test server stopped", file=sys.stderr)
    return 0


class _OneLineErrors(logging.Formatter):
    """aiohttp's reports of requests it cannot parse, as one line without the request's bytes
    (they may hold a key) and without a traceback."""

    def format(self, record: logging.LogRecord) -> str:
        exc = record.exc_info[1] if record.exc_info else None
        text = f"pfkit test server: {record.getMessage()}"
        if exc is not None:
            detail = str(getattr(exc, "message", "") or "").strip().splitlines()
            reason = detail[0].rstrip(":") if detail else ""
            text += f" ({type(exc).__name__}{': ' + reason if reason else ''})"
        return text


def _log_server_errors_briefly() -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_OneLineErrors())
    for name in ("aiohttp.server", "aiohttp.web"):
        log = logging.getLogger(name)
        log.addHandler(handler)
        log.propagate = False


async def _serve(server: TestServer) -> None:
    """Start, print the base URL alone on stdout (easy to capture), hints on stderr."""
    _log_server_errors_briefly()
    await server.astart()
    print(server.base_url, flush=True)
    key = "<the --api-key>" if server.faults.expected_api_key else "any"
    print(f"OpenAI-compatible test server at {server.base_url}\n"
          f"  OpenAI(base_url=\"{server.base_url}\", api_key=\"{key}\")\n"
          f"  AzureOpenAI(azure_endpoint=\"{server.url}\", api_key=\"{key}\", "
          "api_version=\"2024-02-01\")\n"
          "Press Ctrl-C to stop.", file=sys.stderr, flush=True)
    await server.serve_forever()


if __name__ == "__main__":
    sys.exit(main())
