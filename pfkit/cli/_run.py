"""``pfkit run create | list | show | show-details | show-metrics | visualize | delete |
archive | restore``."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from ..errors import UserError
from ._common import fail, parse_key_values, print_json


def register(groups: argparse._SubParsersAction) -> None:
    run = groups.add_parser("run", help="batch runs over datasets")
    commands = run.add_subparsers(dest="command", metavar="COMMAND")
    run.set_defaults(handler=lambda args: run.print_help(sys.stderr) or 2)

    create = commands.add_parser("create", help="run a flow over a dataset")
    create.add_argument("--flow", help="flow folder, flow.dag.yaml, flow.flex.yaml or a "
                                       ".prompty file")
    create.add_argument("--data", help="dataset: .jsonl .json .csv .tsv .parquet, a folder, "
                                       "a saved HF dataset or hf:NAME[:SPLIT]")
    create.add_argument("--column-mapping", nargs="+", metavar="INPUT=VALUE",
                        help="e.g. question='${data.q}' answer='${run.outputs.answer}'")
    create.add_argument("--variant", help="e.g. '${summarize.variant_1}'")
    create.add_argument("--all-variants", action="store_true",
                        help="one run per combination of the variants of every node")
    create.add_argument("--run", help="base run, for an evaluation run (${run.outputs.x})")
    create.add_argument("-n", "--name", help="run name: letters, digits, _ - . (default: flow, "
                                             "variant and time)")
    create.add_argument("--display-name", help="a label for the run shown by run list/show "
                                               "(default: the name)")
    create.add_argument("--description", help="free text kept in the run's record")
    create.add_argument("--stream", action="store_true", help="print each line as it finishes")
    create.add_argument("--concurrency", type=int, help="lines in flight (default 16)")
    create.add_argument("--workers", type=int, metavar="N",
                        help="run lines in N worker processes (default: what suits the run: "
                             "this process alone for small runs, else up to 4 workers)")
    create.add_argument("--line-timeout", type=float, help="seconds per line (default 600)")
    create.add_argument("--resume-from", metavar="RUN",
                        help="reuse the completed lines of RUN and run the rest (same flow "
                             "and data, else refused)")
    create.add_argument("--environment-variables", nargs="+", metavar="KEY=VALUE",
                        help="extra environment variables for the flow's tools")
    create.add_argument("--connections", nargs="+", metavar="NODE.FIELD=VALUE",
                        help="override node.connection, node.deployment_name or node.model")
    create.add_argument("--init", nargs="+", metavar="KEY=VALUE",
                        help="init values of a flex flow's class entry (also init: in -f FILE)")
    create.add_argument("-f", "--file", help="run.yaml with any of these settings")
    create.add_argument("--cache", choices=("off", "read_write", "record", "replay"),
                        help="model response cache mode (default: $PFKIT_CACHE or off)")
    create.add_argument("--cassette", metavar="FILE",
                        help="the cassette file for --cache record/replay (default: "
                             "pfkit.cassette.jsonl in the flow folder)")
    create.add_argument("--no-progress", action="store_true", help="no progress line on stderr")
    create.set_defaults(handler=cmd_create)

    listing = commands.add_parser("list", help="list runs, newest first")
    listing.add_argument("--max-results", "-r", type=int, default=50,
                         help="at most this many runs (default 50)")
    listing.add_argument("--all-results", action="store_true", help="every run (no limit)")
    listing.add_argument("--group", metavar="GROUP",
                         help="only the runs of an --all-variants group")
    group = listing.add_mutually_exclusive_group()
    group.add_argument("--archived-only", action="store_true", help="only archived runs")
    group.add_argument("--include-archived", action="store_true",
                       help="archived runs too (hidden by default)")
    listing.set_defaults(handler=cmd_list)

    for command, handler, text in (
        ("show", cmd_show, "a run's record as JSON"),
        ("show-metrics", cmd_show_metrics, "a run's metrics as JSON"),
        ("delete", cmd_delete, "delete a run and its files"),
        ("archive", cmd_archive, "hide a run from run list"),
        ("restore", cmd_restore, "unarchive a run"),
    ):
        sub = commands.add_parser(command, help=text)
        sub.add_argument("-n", "--name", required=True, help="the run's name")
        sub.set_defaults(handler=handler)

    commands.choices["show-metrics"].add_argument(
        "--stats", action="store_true",
        help="each metric with n, missing and errored lines and a 95%% interval (from the line "
             "outputs of the same name), instead of promptflow's flat {name: value}")
    details = commands.add_parser("show-details", help="inputs and outputs of each line")
    details.add_argument("-n", "--name", required=True, help="the run's name")
    details.add_argument("--json", action="store_true",
                         help="a JSON array: line_number, status, inputs, outputs, error")
    details.add_argument("--max-results", "-r", type=int, default=100,
                         help="at most this many lines (default 100)")
    details.add_argument("--all-results", action="store_true", help="every line (no limit)")
    details.set_defaults(handler=cmd_show_details)

    visualize = commands.add_parser("visualize", help="an HTML page comparing runs (offline)")
    visualize.add_argument("-n", "--names", required=True,
                           help="run names or --all-variants group names, comma-separated")
    visualize.add_argument("--html-path", help="where to write the page")
    visualize.set_defaults(handler=cmd_visualize)

    for parser in commands.choices.values():
        parser.add_argument("--debug", action="store_true", help=argparse.SUPPRESS)


# -- create -------------------------------------------------------------------------------------

def _run_yaml(path: str) -> dict[str, Any]:
    from ..spec._yaml import load_yaml_file, plain

    file = Path(path)
    data = plain(load_yaml_file(file))
    if not isinstance(data, dict):
        raise fail(f"{path} must be a YAML mapping")
    base = file.resolve().parent
    for key in ("flow", "data"):
        if isinstance(data.get(key), str) and not data[key].startswith("hf:"):
            data[key] = str((base / data[key]).resolve())
    connections = {}
    for node, fields in (data.get("connections") or {}).items():
        for field_name, value in (fields or {}).items():
            connections[f"{node}.{field_name}"] = value
    data["connections"] = connections
    return data


def build_request(args: argparse.Namespace):
    from ..runs import DEFAULT_CONCURRENCY, RunRequest

    settings: dict[str, Any] = _run_yaml(args.file) if args.file else {}
    mapping = {**(settings.get("column_mapping") or {}),
               **parse_key_values(args.column_mapping, option="--column-mapping")}
    env = {**{str(k): str(v) for k, v in (settings.get("environment_variables") or {}).items()},
           **parse_key_values(args.environment_variables, option="--environment-variables")}
    connections = {**settings.get("connections", {}),
                   **parse_key_values(args.connections, option="--connections")}
    flow = args.flow or settings.get("flow")
    if not flow:
        raise fail("no flow given", hint="Pass --flow DIR (or flow: in the run.yaml).")
    return RunRequest(
        flow=flow, data=args.data or settings.get("data"), column_mapping=mapping,
        variant=args.variant or settings.get("variant"), run=args.run or settings.get("run"),
        name=args.name or settings.get("name"),
        display_name=args.display_name or settings.get("display_name"),
        description=args.description or settings.get("description"),
        tags={str(k): str(v) for k, v in (settings.get("tags") or {}).items()},
        concurrency=args.concurrency or int(settings.get("concurrency") or DEFAULT_CONCURRENCY),
        resume_from=args.resume_from, environment_variables=env, connections=connections,
        cache=args.cache, cassette=args.cassette, line_timeout=args.line_timeout,
        stream=args.stream, workers=args.workers if args.workers is not None else
        (int(settings["workers"]) if settings.get("workers") is not None else None),
        init={**(settings.get("init") or {}),
              **parse_key_values(getattr(args, "init", None), option="--init")},
    )


def cmd_create(args: argparse.Namespace) -> int:
    from ..runs import create_run

    request = build_request(args)
    if request.concurrency < 1:
        raise fail("--concurrency must be at least 1")
    if request.workers is not None and request.workers < 1:
        raise fail("--workers must be at least 1", hint="Pass --workers 1 to run lines in "
                                                         "this process.")
    if args.all_variants:
        return _create_all_variants(request, progress=not args.no_progress)
    from ..runs._api import RunCanceled

    try:
        run = create_run(request, progress=not args.no_progress)
    except RunCanceled as canceled:
        data = f" --data {request.data}" if request.data else ""
        print(f"pfkit: run '{canceled.name}' canceled; its finished lines are saved. Finish it "
              f"with  pfkit run create --flow {request.flow}{data} --resume-from {canceled.name}",
              file=sys.stderr)
        return 130
    _print_created(run.info)
    return 0


def _print_created(record: dict[str, Any]) -> None:
    _show(record)
    system = record["properties"]["system_metrics"]
    failed = system.get("__pf__.lines.failed", 0)
    done = system.get("__pf__.lines.completed", 0)
    note = f"pfkit: run '{record['name']}' {record['status']}: {done} lines completed"
    if failed:
        note += f", {failed} failed (see  pfkit run show-details -n {record['name']})"
    print(note, file=sys.stderr)


def _create_all_variants(request: Any, *, progress: bool) -> int:
    from ..runs._variants import create_variant_runs

    group, runs = create_variant_runs(request, progress=progress)
    rows = []
    for run in runs:
        system = run.info["properties"]["system_metrics"]
        rows.append({"run": run.name, "variants": run.record.variant, "status": run.status,
                     "completed": system.get("__pf__.lines.completed", 0),
                     "failed": system.get("__pf__.lines.failed", 0), "metrics": run.metrics()})
    _show({"group": group, "runs": rows})
    print(f"pfkit: {len(rows)} runs in group '{group}' (one per variant combination)",
          file=sys.stderr)
    return 0


# -- reading --------------------------------------------------------------------------------------

def _store():
    from ..runs import LocalRunStore

    return LocalRunStore()


def _show(value: Any) -> None:
    """JSON on stdout, with every known secret masked."""
    from .._secrets import scrub_value

    print_json(scrub_value(value))


def cmd_list(args: argparse.Namespace) -> int:
    archived = "only" if args.archived_only else "include" if args.include_archived else "exclude"
    if args.group:
        from ..runs._store_api import check_run_name

        check_run_name(args.group, "group name")
    _show([r.to_dict() for r in _store().list(
        max_results=None if args.all_results else args.max_results, archived=archived,
        group=args.group)])
    return 0


def cmd_show(args: argparse.Namespace) -> int:
    _show(_store().get(args.name).to_dict())
    return 0


def cmd_show_metrics(args: argparse.Namespace) -> int:
    from .._secrets import scrub_value
    from ..runs import Run

    run = Run(args.name)
    if getattr(args, "stats", False):
        from ..evaluate import run_statistics

        metrics: Any = {k: s.to_dict() for k, s in run_statistics(run).items()}
    else:
        metrics = run.metrics()
    sys.stdout.write(json.dumps(scrub_value(metrics), ensure_ascii=False, indent=2) + "\n")
    return 0


def cmd_show_details(args: argparse.Namespace) -> int:
    from .._secrets import scrub_value
    from ..runs import Run

    lines = scrub_value(Run(args.name).lines())
    if not args.all_results:
        lines = lines[: args.max_results]
    if args.json:
        _show([{k: rec.get(k) for k in ("line_number", "status", "inputs", "outputs", "error")}
                    for rec in lines])
        return 0
    sys.stdout.write(details_table(lines))
    return 0


def details_table(lines: list[dict[str, Any]], width: int = 40) -> str:
    """A plain-text table: inputs.*, inputs.line_number, outputs.* (and the error of failed
    lines), cells cut to ``width`` characters."""
    input_keys = sorted({k for rec in lines for k in rec["inputs"]})
    output_keys = sorted({k for rec in lines for k in (rec["outputs"] or {})})
    headers = [f"inputs.{k}" for k in input_keys] + ["inputs.line_number"] + \
        [f"outputs.{k}" for k in output_keys]
    if any(rec["status"] != "Completed" for rec in lines):
        headers.append("error")

    def cell(value: Any, limit: int = width) -> str:
        text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False,
                                                                default=repr)
        text = text.replace("\n", "\\n")
        return text if len(text) <= limit else text[: limit - 1] + "…"

    rows = []
    for rec in lines:
        row = [cell(rec["inputs"].get(k)) for k in input_keys] + [str(rec["line_number"])]
        row += [cell((rec["outputs"] or {}).get(k)) if rec["status"] == "Completed" else ""
                for k in output_keys]
        if "error" in headers:
            row.append(cell((rec.get("error") or {}).get("message", ""), 3 * width))
        rows.append(row)
    widths = [max([len(h)] + [len(r[i]) for r in rows]) for i, h in enumerate(headers)]
    out = [" | ".join(h.ljust(widths[i]) for i, h in enumerate(headers)),
           "-+-".join("-" * w for w in widths)]
    out += [" | ".join(c.ljust(widths[i]) for i, c in enumerate(r)) for r in rows]
    return "\n".join(out) + "\n"


def cmd_delete(args: argparse.Namespace) -> int:
    _store().delete(args.name)
    print(f"pfkit: deleted run '{args.name}'", file=sys.stderr)
    return 0


def cmd_archive(args: argparse.Namespace) -> int:
    _store().update(args.name, archived=True)
    return 0


def cmd_restore(args: argparse.Namespace) -> int:
    _store().update(args.name, archived=False)
    return 0


def cmd_visualize(args: argparse.Namespace) -> int:
    """The comparison report of ``pfkit compare`` (metrics with their statistics when the runs
    have scores, and every line side by side)."""
    from ..compare import compare, render_html

    names = [n.strip() for n in args.names.split(",") if n.strip()]
    if not names:
        raise UserError("no run names given", hint="Pass  -n run_a,run_b  or a group name.")
    store = _store()
    result = compare(names, store=store)
    if args.html_path:
        path = Path(args.html_path)
    else:
        folder = store.run_path(result.runs[0])
        path = (folder if folder is not None else Path.cwd()) / "visualize.html"
    path.write_text(render_html(result), encoding="utf-8")
    print(str(path))
    return 0
