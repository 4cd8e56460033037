"""``pfkit eval --run BASE --evaluator NAME ...``: evaluators over a finished run, one table."""

from __future__ import annotations

import argparse
import json
import sys

from ._common import parse_key_values


def register(groups: argparse._SubParsersAction) -> None:
    parser = groups.add_parser(
        "eval", help="run evaluators over a finished run and print their metrics",
        description="Run evaluators (built-in names or evaluator flow folders) over a finished "
                    "run as promptflow evaluation runs linked to it, and print every metric "
                    "with n, missing and errored lines and a 95%% interval. Evaluator inputs "
                    "are mapped from columns of the same (or a usual) name unless "
                    "--column-mapping says otherwise. The evaluation runs do not wait for each "
                    "other: evaluators that call models overlap, and python evaluators over a "
                    "large run share the work with one helper process (PFKIT_EVAL_HELPER=0 "
                    "keeps every run in this process).")
    parser.add_argument("--run", required=True, metavar="BASE", help="the finished run to score")
    parser.add_argument("--evaluator", action="append", required=True, metavar="NAME",
                        help="a built-in evaluator (e.g. f1_score, relevance) or an evaluator "
                             "flow folder; repeatable")
    parser.add_argument("--column-mapping", nargs="+", action="extend", metavar="K=V",
                        help="evaluator input=${data.col} | ${run.outputs.col} | literal, for "
                             "every evaluator that has the input")
    parser.add_argument("--data", help="the data the run read (default: the run's own data)")
    parser.add_argument("--judge-connection", metavar="C",
                        help="the connection of the evaluators' model nodes (LLM judges, "
                             "embeddings); default: each flow's own (the embedded model)")
    parser.add_argument("--json", action="store_true",
                        help="print metrics, statistics and evaluation run names as JSON")
    parser.set_defaults(handler=cmd_eval)


def cmd_eval(args: argparse.Namespace) -> int:
    from ..evaluate import evaluate, evaluator_path

    mapping = parse_key_values(args.column_mapping, option="--column-mapping")
    evaluators = {}
    for name in args.evaluator:
        path = evaluator_path(name)
        alias = path.name if path is not None and path.is_dir() else str(name)
        evaluators[alias] = name
    result = evaluate(run=args.run, data=args.data, evaluators=evaluators,
                      evaluator_config={"default": {"column_mapping": mapping}},
                      judge_connection=args.judge_connection, progress=not args.json)
    if args.json:
        sys.stdout.write(json.dumps({
            "metrics": result.metrics, "runs": result.runs,
            "statistics": {k: s.to_dict() for k, s in result.statistics.items()}},
            ensure_ascii=False, indent=2, default=repr) + "\n")
    else:
        sys.stdout.write(str(result) + "\n")
        for alias, name in result.runs.items():
            print(f"pfkit: {alias}: evaluation run {name}", file=sys.stderr)
    return 0
