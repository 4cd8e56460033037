"""Produce ``expected.json`` of the flex-flow and prompty fixture cases with promptflow 1.18.5.

Run with the promptflow venv, from the repository root::

    .bench/promptflow-venv/bin/python tests/flows/regenerate_flex_expected.py [case ...]

Cases are the folders ``tests/flows/flex_*`` and ``tests/flows/prompty_*`` holding a
``fixture.json`` (not ``case.json``: the DAG generator and tests leave them alone)::

    {"description": "...", "flow": "flow.flex.yaml" | "x.prompty", "lines": [{...}, ...],
     "init": {...}, "invalid": false, "call": false}

Per case, in a fresh subprocess (``PF_DISABLE_TRACING=true``):

1. ``FlowExecutor.create(flow, {}, working_dir=case, init_kwargs=init, raise_ex=True)``: the
   flex ``ScriptExecutor`` or the ``PromptyExecutor``. Invalid cases record the exception.
2. Every line: ``exec_line(dict(line), index=i)`` (promptflow applies the sample when a line
   has no inputs); status, output (``line_number`` removed), error (as the DAG generator).
3. With ``__aggregate__``: ``exec_aggregation(None, [outputs of the completed lines, dicts as
   AttrDict])`` as ``BatchEngine._get_aggregation_inputs`` does for flex flows -> metrics.
4. ``"call": true`` (prompty): also ``Prompty.load(file)(**line)`` per line -> ``calls``.

Prompty cases read ``${env:ECHO_BASE_URL}``, ``${env:ECHO_AZURE_ENDPOINT}`` and
``${env:ECHO_API_KEY}``: the parent serves the
DAG generator's echo server (``regenerate_expected.start_echo_server``) there.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import regenerate_expected as dag  # noqa: E402

GENERATOR = "promptflow 1.18.5 FlowExecutor (tests/flows/regenerate_flex_expected.py)"
ECHO_API_KEY = "sk-echo-test-key"


def discover_cases() -> list[str]:
    return sorted(p.parent.name for p in HERE.glob("*/fixture.json")
                  if p.parent.name.startswith(("flex_", "prompty_")))


def _error_of(exc: BaseException) -> dict:
    return {"type": type(exc).__name__, "message": dag.scrub(str(exc))}


def _environment(flow_file: Path) -> dict[str, str]:
    if flow_file.suffix == ".prompty":
        return {}
    from promptflow._utils.yaml_utils import load_yaml

    with open(flow_file, encoding="utf-8") as fh:
        try:
            data = load_yaml(fh) or {}
        except Exception:  # noqa: BLE001 - the executor reports it
            return {}
    return {str(k): str(v) for k, v in (data.get("environment_variables") or {}).items()}


def _includes(flow_file: Path) -> list[str]:
    if flow_file.suffix == ".prompty":
        return []
    from promptflow._utils.yaml_utils import load_yaml

    with open(flow_file, encoding="utf-8") as fh:
        try:
            data = load_yaml(fh) or {}
        except Exception:  # noqa: BLE001 - the executor reports it
            return []
    return list(data.get("additional_includes") or [])


def run_case(case_dir: Path) -> dict:
    import promptflow
    from promptflow._constants import LINE_NUMBER_KEY
    from promptflow._utils.utils import AttrDict
    from promptflow.contracts.run_info import Status
    from promptflow.executor import FlowExecutor

    if promptflow.__version__ != dag.EXPECTED_PF_VERSION:
        raise SystemExit(f"expected promptflow {dag.EXPECTED_PF_VERSION}")
    meta = json.loads((case_dir / "fixture.json").read_text(encoding="utf-8"))
    flow_file = case_dir / meta["flow"]
    dag.set_path_placeholders(case_dir, Path(tempfile.gettempdir()))
    includes = _includes(flow_file)
    os.environ.update(_environment(flow_file))  # the devkit sets them (pf flow test, pf run)
    if includes:  # what the devkit does before running: a snapshot holding the includes
        import shutil

        snapshot = Path(tempfile.mkdtemp()) / case_dir.name
        shutil.copytree(case_dir, snapshot)
        for include in includes:
            source = (case_dir / include).resolve()
            shutil.copy2(source, snapshot / source.name)
        case_dir, flow_file = snapshot, snapshot / meta["flow"]
    os.chdir(case_dir)
    sys.path.insert(0, str(case_dir))
    try:
        executor = FlowExecutor.create(flow_file, {}, working_dir=case_dir,
                                       init_kwargs=meta.get("init") or None, raise_ex=True)
    except Exception as exc:  # noqa: BLE001
        return {"generator": GENERATOR, "error": _error_of(exc), "stage": "create"}
    if meta.get("invalid"):
        stage_error = None
        try:
            executor.exec_line(dict((meta.get("lines") or [{}])[0]), index=0)
        except Exception as exc:  # noqa: BLE001
            stage_error = _error_of(exc)
        return {"generator": GENERATOR, "error": stage_error, "promptflow_rejects": False}
    lines = []
    results = []
    for i, line in enumerate(meta.get("lines") or []):
        try:
            result = executor.exec_line(dict(line), index=i)
        except Exception as exc:  # noqa: BLE001 - input errors: the batch records a failed line
            results.append((Status.Failed, None))
            lines.append({"status": "Failed", "output": {},
                          "error": {"message": dag.scrub(str(exc)), "code": "UserError",
                                    "inner": type(exc).__name__}})
            continue
        output = result.output
        if isinstance(output, dict):
            output = {k: v for k, v in output.items() if k != LINE_NUMBER_KEY}
        failed = result.run_info.status == Status.Failed
        results.append((result.run_info.status, result.output))
        if not isinstance(output, dict) and not failed:
            from promptflow._utils.dataclass_serializer import convert_eager_flow_output_to_dict

            output = convert_eager_flow_output_to_dict(output)
        lines.append({"status": result.run_info.status.value,
                      "output": {} if failed else dag.jsonable(output),
                      "error": dag.summarize_error(result.run_info.error)})
    aggregation = None
    if getattr(executor, "has_aggregation_node", False):
        items = [AttrDict(o) if isinstance(o, dict) else o
                 for status, o in results if status == Status.Completed]
        for item in items:
            if isinstance(item, dict):
                item.pop(LINE_NUMBER_KEY, None)
        aggr = executor.exec_aggregation({}, items)
        aggregation = {"metrics": dag.jsonable(aggr.metrics),
                       "output": dag.jsonable(aggr.output)}
    out = {"generator": GENERATOR, "lines": lines, "aggregation": aggregation}
    if meta.get("call"):
        from promptflow.core import Prompty

        prompty = Prompty.load(flow_file)
        calls = []
        for line in meta.get("lines") or []:
            try:
                value = prompty(**line)
                if hasattr(value, "__next__"):
                    value = {"chunks": [str(c) for c in value]}
                calls.append({"output": dag.jsonable(value), "error": None})
            except Exception as exc:  # noqa: BLE001
                calls.append({"output": None, "error": _error_of(exc)})
        out["calls"] = calls
    return out


def child(case: str) -> int:
    case_dir = HERE / case
    result = run_case(case_dir)
    (case_dir / "expected.json").write_text(dag.dump_json(result), encoding="utf-8")
    return 0


def main(argv: list[str]) -> int:
    if argv[:1] == ["--child"]:
        return child(argv[1])
    cases = argv or discover_cases()
    server, base_url = dag.start_echo_server()
    env = dict(os.environ, PF_DISABLE_TRACING="true", PYTHONDONTWRITEBYTECODE="1",
               ECHO_BASE_URL=base_url, ECHO_API_KEY=ECHO_API_KEY,
               ECHO_AZURE_ENDPOINT=base_url.removesuffix("/v1"))
    failures = 0
    for case in cases:
        proc = subprocess.run([sys.executable, __file__, "--child", case], env=env,
                              capture_output=True, text=True, timeout=300)
        status = "ok" if proc.returncode == 0 else "FAILED"
        failures += proc.returncode != 0
        print(f"{case}: {status}")
        if proc.returncode:
            print(proc.stderr[-3000:])
    server.shutdown()
    return 1 if failures else 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
