"""Load the golden fixture flows under tests/flows and run them through pfkit."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

FLOWS = Path(__file__).parent / "flows"


@dataclass
class Case:
    name: str
    folder: Path
    description: str
    lines: list[dict[str, Any]]
    variant: str | None
    invalid: bool
    expected: dict[str, Any]
    meta: dict[str, Any]

    @property
    def server(self) -> bool:
        """Run against pfkit's real TestServer over HTTP (real provider and openai client)."""
        return bool(self.meta.get("server"))


def load_cases() -> list[Case]:
    cases = []
    for folder in sorted(p for p in FLOWS.iterdir() if (p / "case.json").is_file()):
        meta = json.loads((folder / "case.json").read_text(encoding="utf-8"))
        expected_file = folder / "expected.json"
        expected = json.loads(expected_file.read_text(encoding="utf-8")) if expected_file.is_file() else {}
        cases.append(Case(folder.name, folder, meta.get("description", ""), meta.get("lines") or [],
                          meta.get("variant"), bool(meta.get("invalid")), expected, meta))
    return cases


def normalise(value: Any) -> Any:
    """What the generator wrote for a value: JSON types kept, others as repr."""
    if isinstance(value, float) and (math.isnan(value) or math.isinf(value)):
        return value
    try:
        return json.loads(json.dumps(value, ensure_ascii=False, allow_nan=True))
    except (TypeError, ValueError):
        if isinstance(value, dict):
            return {k: normalise(v) for k, v in value.items()}
        if isinstance(value, (list, tuple)):
            return [normalise(v) for v in value]
        return repr(value)


def same(a: Any, b: Any) -> bool:
    """Equality that treats NaN as equal to NaN."""
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
        return True
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    return a == b and type(a) is type(b) or (isinstance(a, (int, float)) and not isinstance(a, bool)
                                             and isinstance(b, (int, float)) and not isinstance(b, bool)
                                             and a == b)


def fixture_connection(name: str):
    """The fixtures' one connection, as regenerate_expected.py gave it to promptflow."""
    from pfkit.connections import AzureOpenAIConnection, OpenAIConnection
    from pfkit.errors import UserError

    if name == "echo_azure":
        return AzureOpenAIConnection(api_key="sk-test", api_base="http://127.0.0.1:9",
                                     api_version="2024-02-01", name=name)
    if name != "echo":
        raise UserError(f"connection '{name}' does not exist", code="ConnectionNotFound")
    return OpenAIConnection(api_key="sk-test", base_url="http://127.0.0.1:9/v1", name=name)


def run_case(case: Case, server: Any = None):
    """Bind and run every line, then the aggregation over the successful lines.

    LLM nodes (and promptflow-tools functions a tool script calls with a connection) get the
    in-process EchoModel; for a ``server`` case they go over HTTP to ``server`` (a running
    ``pfkit.testing.TestServer``) through pfkit's real provider instead."""
    from pfkit._compat._llm_tools import connection_models
    from pfkit._flows import flow_environment, load_bound_flow
    from pfkit.connections import AzureOpenAIConnection, OpenAIConnection
    from pfkit.engine import execute_aggregation, execute_line, working_directory
    from pfkit.providers._registry import model_from_connection
    from pfkit.testing import EchoModel

    if server is not None:
        def connections(name: str):
            if isinstance(fixture_connection(name), AzureOpenAIConnection):
                return AzureOpenAIConnection(api_key="sk-test", api_base=server.url,
                                             api_version="2024-02-01", name=name)
            return OpenAIConnection(api_key="sk-test", base_url=server.base_url, name=name)

        def models(name: str, node: Any = None):
            return model_from_connection(name, connections(name))

        direct = None
    else:
        models = {"echo": EchoModel("openai"), "echo_azure": EchoModel("azure_openai")}
        connections = fixture_connection

        def direct(name: str, conn: Any):
            return models.get(name)

    flow = load_bound_flow(case.folder, variant=case.variant, models=models, connections=connections)

    async def go():
        token = connection_models.set(direct)
        try:
            with working_directory(flow.working_dir), flow_environment(flow):
                lines = [await execute_line(flow, dict(inputs), line_number=i)
                         for i, inputs in enumerate(case.lines)]
                aggregation = await execute_aggregation(flow, lines) if flow.aggregation_nodes else None
        finally:
            connection_models.reset(token)
        return lines, aggregation

    from pfkit._aio import run_sync  # model clients closed before the loop ends

    return flow, run_sync(go())
