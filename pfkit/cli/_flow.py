"""``pfkit flow test | validate | graph``."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from ..errors import ExecutionError, Location
from ._common import (
    EXIT_ERROR,
    err,
    parse_key_values,
    print_json,
    read_inputs_file,
    to_json,
    warn,
)


def register(groups: argparse._SubParsersAction) -> None:
    flow = groups.add_parser("flow", help="test, validate and draw one flow")
    commands = flow.add_subparsers(dest="command", metavar="COMMAND")
    flow.set_defaults(handler=lambda args: flow.print_help(sys.stderr) or 2)

    test = commands.add_parser("test", help="run a flow (or one node) on one set of inputs")
    test.add_argument("--flow", required=True,
                      help="flow folder, flow.dag.yaml, flow.flex.yaml or a .prompty file")
    test.add_argument("--inputs", nargs="+", metavar="KEY=VALUE", help="flow inputs")
    test.add_argument("--input", metavar="FILE", help="inputs from a .json file or a .jsonl line")
    test.add_argument("--node", help="run only this node; give its inputs with --inputs")
    test.add_argument("--variant", help="a variant to use, e.g. '${node.variant_1}'")
    test.add_argument("--connections", nargs="+", metavar="NODE.FIELD=VALUE",
                      help="override node.connection, node.deployment_name or node.model")
    test.add_argument("--init", nargs="+", metavar="KEY=VALUE",
                      help="init values of a flex flow's class entry")
    add_cache_options(test)
    test.add_argument("--detail", action="store_true",
                      help="print the whole line record (node runs, timings) instead of outputs")
    test.add_argument("--debug", action="store_true", help=argparse.SUPPRESS)
    test.set_defaults(handler=cmd_test)

    validate = commands.add_parser("validate", help="check a flow without running it")
    validate.add_argument("--flow", required=True, help="flow folder or flow.dag.yaml")
    validate.add_argument("--variant", help="check with this variant selected")
    validate.add_argument("--init", nargs="+", metavar="KEY=VALUE",
                          help="init values of a flex flow's class entry")
    validate.add_argument("--debug", action="store_true", help=argparse.SUPPRESS)
    validate.set_defaults(handler=cmd_validate)

    graph = commands.add_parser("graph", help="print the flow's DAG as a Mermaid diagram")
    graph.add_argument("--flow", required=True, help="flow folder or flow.dag.yaml")
    graph.add_argument("--variant", help="draw with this variant selected")
    graph.add_argument("--format", choices=("mermaid", "svg"), default="mermaid",
                       help="mermaid (default) or svg (drawn by pfkit, no script)")
    graph.add_argument("--debug", action="store_true", help=argparse.SUPPRESS)
    graph.set_defaults(handler=cmd_graph)

    init = commands.add_parser("init", help="write a starter flow with a sample dataset")
    init.add_argument("--flow", required=True, help="new (or empty) folder for the flow")
    init.add_argument("--type", default="standard", choices=("standard", "chat", "evaluation"))
    init.add_argument("--connection", default="local",
                      help="connection of the llm node (default: local, the embedded model)")
    init.add_argument("--debug", action="store_true", help=argparse.SUPPRESS)
    init.set_defaults(handler=cmd_init)

    from . import _serve

    _serve.register(commands)  # flow serve, flow build


def add_cache_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--cache", choices=("off", "read_write", "record", "replay"),
                        help="model-call cache: off, read_write, record, replay "
                             "(default: $PFKIT_CACHE or off)")
    parser.add_argument("--cassette", metavar="FILE",
                        help="cassette for record/replay (default: pfkit.cassette.jsonl in the "
                             "flow folder)")


def model_session(args: argparse.Namespace, flow_path: str):
    """The models of this command: the default session's, with this command's cache mode."""
    from ..session import Session

    return Session.default().model_layer(args.cache, args.cassette, flow=flow_path)


def _inputs(args: argparse.Namespace) -> dict[str, Any]:
    values: dict[str, Any] = {}
    if args.input:
        values.update(read_inputs_file(args.input))
    values.update(parse_key_values(args.inputs, option="--inputs"))
    return values


def _save_test_files(flow_dir: Path, prefix: str, payload: dict[str, Any]) -> None:
    """promptflow's ``.promptflow/flow.output.json`` and friends, for tools that read them,
    with every known secret masked. A read-only flow folder is not an error."""
    try:
        folder = flow_dir / ".promptflow"
        folder.mkdir(exist_ok=True)
        for name, value in payload.items():
            (folder / f"{prefix}.{name}.json").write_text(to_json(value), encoding="utf-8")
    except OSError:
        pass


def cmd_test(args: argparse.Namespace) -> int:
    inputs = _inputs(args)
    session = model_session(args, args.flow)
    try:
        return _run_test(args, inputs, session)
    finally:
        written = session.finish()
        if written is not None:
            err(f"pfkit: wrote {written} model calls to {session.cassette}")


SAMPLE_DATA = "data.jsonl"  # the sample data beside a flow (as `pfkit flow init` writes it)


def _first_data_row(flow: Any) -> dict[str, Any]:
    """A DAG flow tested without ``--inputs`` whose inputs have no default: the flow's inputs
    from the first row of the ``data.jsonl`` beside it, as a flex flow's sample (said on
    stderr). Nothing when every input has a default or there is no such file: the usual
    error then names the missing input."""
    spec = flow.spec
    missing = [name for name, definition in spec.inputs.items() if not definition.has_default]
    sample = spec.path.parent / SAMPLE_DATA
    if not missing or not sample.is_file():
        return {}
    from ..data import open_dataset

    row = next(iter(open_dataset(sample)), None)
    if row is None:
        return {}
    inputs = {name: value for name, value in row.data.items() if name in missing}
    if inputs:
        warn(f"no --inputs: {', '.join(inputs)} from {sample.parent.name}/{row.origin}")
    return inputs


def _run_test(args: argparse.Namespace, inputs: dict[str, Any], session: Any) -> int:
    from ..engine import load_executable
    from ..flows import atest, atest_node
    from ..session import Session

    run_sync = Session.default().run_sync
    executable = load_executable(args.flow, variant=args.variant, models=session,
                                 connections=session.connection,
                                 connection_overrides=parse_key_values(args.connections,
                                                                       option="--connections"),
                                 init=parse_key_values(getattr(args, "init", None),
                                                       option="--init") or None)
    flow = executable.bound
    if not inputs and not args.node:
        if getattr(executable, "sample", None):
            inputs = dict(executable.sample)  # a flex flow's or prompty's sample inputs
        else:
            inputs = _first_data_row(flow)
    if args.node:
        line = run_sync(atest_node(flow, args.node, inputs, warn=warn))
        prefix = f"flow-{args.node}.node"
        aggregation = None
    else:
        unknown = [k for k in inputs if k not in flow.spec.inputs]
        if unknown:
            warn(f"--inputs {', '.join(unknown)}: not an input of the flow (ignored); its "
                 f"inputs: {', '.join(flow.spec.inputs) or 'none'}")
        result = run_sync(atest(flow, inputs))
        line, aggregation = result.line, result.aggregation
        prefix = "flow"
        if flow.graph.variant:
            prefix = f"flow-{flow.graph.variant.node}-{flow.graph.variant.variant_id}"
    detail = {"flow_runs": [line.to_dict()],
              "node_runs": [r.to_dict() for r in line.node_runs.values()]}
    from ..nodes import flow_test_outputs  # image outputs saved as promptflow does

    saved_outputs, printed_outputs = flow_test_outputs(flow.spec.path.parent, line.outputs)
    files: dict[str, Any] = {"output": saved_outputs, "detail": detail}
    if aggregation is not None:
        files["metrics"] = aggregation.metrics
    _save_test_files(flow.spec.path.parent, prefix, files)  # the flow folder, not a snapshot
    if line.status != "Completed":
        raise line_error(line.error or {})
    if args.detail:
        record = line.to_dict()
        if aggregation is not None:
            record["aggregation"] = aggregation.to_dict()
        if session.stats:
            record["cache"] = session.stats
        print_json(record)
    else:
        print_json(printed_outputs)
    if aggregation is not None:
        if aggregation.status != "Completed":
            error = aggregation.error or {}
            warn(f"aggregation failed: {line_error(error)}")
            if args.debug and error.get("traceback"):
                err(error["traceback"])
            return EXIT_ERROR
        if aggregation.metrics:
            err("metrics: " + json.dumps(aggregation.metrics, ensure_ascii=False, default=str))
    return 0


def line_error(error: dict[str, Any]) -> ExecutionError:
    """The error of a failed line as an exception to report: its message and code, the user's
    file and line (``tool.py:12, node 'n': ...``), and the user's traceback for ``--debug``."""
    where = error.get("location") if isinstance(error.get("location"), dict) else {}
    location = Location(**{k: v for k, v in where.items() if k in Location.__slots__})
    exc = ExecutionError(error.get("message", "the line failed"), code=error.get("code"),
                         location=location,
                         hint=error.get("hint") or ("Run with --debug to see the traceback of "
                                                    "the failing tool."))
    exc.user_traceback = error.get("traceback")
    return exc


def cmd_validate(args: argparse.Namespace) -> int:
    from ..engine import load_bound_flow
    from ..session import Session

    connection = Session.default().connection

    def check_connection(name: str, node: Any) -> _ValidationModel:
        """The connection must exist and its secrets resolve; no model is built or called."""
        conn = connection(name)
        style = "azure_openai" if getattr(conn, "TYPE", "") == "azure_open_ai" else "openai"
        return _ValidationModel(style)

    from ..engine import flow_loaders, load_executable

    target = Path(args.flow).expanduser()
    kind = next(loader.kind for loader in flow_loaders() if loader.matches(target))
    if kind != "dag":  # flex flows and prompty files: loading checks them
        executable = load_executable(target, variant=args.variant, models=check_connection,
                                     connections=connection,
                                     init=parse_key_values(args.init, option="--init") or None)
        print(f"{executable.file}: valid {kind} flow, inputs: "
              f"{', '.join(executable.inputs) or 'none'}")
        return 0
    flow = load_bound_flow(args.flow, variant=args.variant, models=check_connection,
                           connections=connection)
    spec = flow.spec
    kinds = ", ".join(f"{n.name} ({n.spec.type}{', aggregation' if n.aggregation else ''})"
                      for n in flow.nodes)
    print(f"{spec.file}: valid {'chat ' if spec.is_chat else ''}flow, {len(flow.nodes)} nodes: "
          f"{kinds}")
    return 0


def cmd_init(args: argparse.Namespace) -> int:
    from ..authoring import init_command  # pfkit flow init

    return init_command(args)


def cmd_graph(args: argparse.Namespace) -> int:
    from ..graph import plan, to_mermaid
    from ..spec import load_flow_spec

    graph = plan(load_flow_spec(args.flow), args.variant)
    if getattr(args, "format", "mermaid") == "svg":
        from ..authoring import render_svg

        sys.stdout.write(render_svg(graph))
        return 0
    sys.stdout.write(to_mermaid(graph))
    return 0


class _ValidationModel:
    """Stands in for every connection while validating: nothing is called."""

    def __init__(self, api_style: str = "openai") -> None:
        self.api_style = api_style
        self.identity = {"provider": "validation"}

    async def chat(self, request):  # pragma: no cover - never called
        raise RuntimeError("validation does not call models")

    async def complete(self, request):  # pragma: no cover - never called
        raise RuntimeError("validation does not call models")
