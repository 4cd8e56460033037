"""The executable flow: what runs, evaluation, serving and notebooks consume.

A flow loader (a registry: DAG today; flex and prompty later) turns a path into an
:class:`ExecutableFlow`: immutable, safe to call from many tasks and threads, each call one line.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Protocol, runtime_checkable

from ..observe import Observers
from ._bind import BoundFlow
from ._execute import AggregationInputs, execute_aggregation, execute_line
from ._isolation import GATE
from ._results import AggregationResult, LineResult


@runtime_checkable
class ExecutableFlow(Protocol):
    kind: str                          # "dag" (later "flex", "prompty")
    name: str                          # flow folder name
    code_dir: Path                     # the flow folder (tools import / open files from here)
    file: Path                         # the flow file
    inputs: Mapping[str, Any]          # pfkit.spec FlowInput (type, default, has_default, ...)
    outputs: Mapping[str, Any]         # output specs (names; evaluation_only flags)
    has_aggregation: bool
    variants_used: Mapping[str, str]   # node -> variant id ({} without variants)
    environment: Mapping[str, str]     # environment_variables, resolved

    def with_environment(self, extra: Mapping[str, str]) -> ExecutableFlow: ...

    async def arun(self, inputs: Mapping[str, Any], *, line_number: int = 0,
                   timeout: float | None = None,
                   observers: Observers | None = None) -> LineResult: ...

    def aggregation_collector(self) -> AggregationInputs: ...

    async def aggregate(self, collected: AggregationInputs, *,
                        observers: Observers | None = None) -> AggregationResult: ...

    def resolved_yaml(self) -> str: ...

    def snapshot_to(self, folder: Path) -> None: ...


@dataclass(frozen=True, slots=True)
class DagFlow:
    """A ``flow.dag.yaml`` flow, bound once. See :class:`ExecutableFlow`."""

    bound: BoundFlow
    kind: ClassVar[str] = "dag"

    @property
    def name(self) -> str:
        return self.code_dir.name

    @property
    def code_dir(self) -> Path:
        return self.bound.spec.code_dir

    @property
    def file(self) -> Path:
        return self.bound.spec.path

    @property
    def spec(self) -> Any:
        return self.bound.spec

    @property
    def inputs(self) -> Mapping[str, Any]:
        return self.bound.spec.inputs

    @property
    def outputs(self) -> Mapping[str, Any]:
        return self.bound.spec.outputs

    @property
    def has_aggregation(self) -> bool:
        return bool(self.bound.aggregation_nodes)

    @property
    def variants_used(self) -> Mapping[str, str]:
        return self.bound.graph.variants_used

    @property
    def environment(self) -> Mapping[str, str]:
        return self.bound.environment

    def with_environment(self, extra: Mapping[str, str]) -> DagFlow:
        return DagFlow(self.bound.with_environment(extra))

    async def arun(self, inputs: Mapping[str, Any], *, line_number: int = 0,
                   timeout: float | None = None,
                   observers: Observers | None = None) -> LineResult:
        """One line. Never raises for a node failure, an internal error or a timeout."""
        GATE.begin_call()
        try:
            return await execute_line(self.bound, dict(inputs), line_number=line_number,
                                      timeout=timeout, observers=observers)
        finally:
            GATE.end_call()

    def aggregation_collector(self) -> AggregationInputs:
        return AggregationInputs(self.bound)

    async def aggregate(self, collected: AggregationInputs | list[LineResult], *,
                        observers: Observers | None = None) -> AggregationResult:
        GATE.begin_call()
        try:
            return await execute_aggregation(self.bound, collected, observers=observers)
        finally:
            GATE.end_call()

    def resolved_yaml(self) -> str:
        """The flow file with the chosen variant of each node written into ``nodes``."""
        import copy

        import yaml

        raw = copy.deepcopy(self.bound.spec.raw)
        used = self.variants_used
        nodes = []
        for node in raw.get("nodes") or []:
            if isinstance(node, dict) and node.get("use_variants") and node.get("name") in used:
                name = node["name"]
                body = raw["node_variants"][name]["variants"][used[name]]["node"]
                node = {"name": name, **body}
            nodes.append(node)
        raw["nodes"] = nodes
        raw.pop("node_variants", None)
        return yaml.safe_dump(raw, sort_keys=False, allow_unicode=True)

    def snapshot_to(self, folder: Path) -> None:
        """The flow as it ran: its folder (without caches and virtualenvs) and the flow file
        with the chosen variants written in."""
        import os
        import shutil

        ignore = shutil.ignore_patterns("__pycache__", ".promptflow", ".git", ".venv", "*.pyc",
                                        "pfkit.cassette.jsonl")
        folder = Path(folder)
        shutil.copytree(self.code_dir, folder, ignore=ignore, dirs_exist_ok=True)
        (folder / self.file.name).write_text(self.resolved_yaml(), encoding="utf-8")
        os.utime(folder)


# --------------------------------------------------------------------------- loaders

@dataclass(frozen=True, slots=True)
class FlowLoader:
    kind: str
    matches: Callable[[Path], bool]  # is this path a flow of this kind?
    load: Callable[..., ExecutableFlow]  # load(path, *, variant, models, connections, ...)


_LOADERS: list[FlowLoader] = []


def register_flow_loader(loader: FlowLoader, *, first: bool = True) -> None:
    """Add a loader (tried before the others unless ``first=False``; DAG is the fallback)."""
    global _LOADERS
    others = [entry for entry in _LOADERS if entry.kind != loader.kind]
    _LOADERS = [loader, *others] if first else [*others, loader]


def flow_loaders() -> tuple[FlowLoader, ...]:
    return tuple(_LOADERS)


def _is_dag(path: Path) -> bool:
    return True  # the fallback: its loader reports what is wrong with the path


def _load_dag(path: str | Path, *, variant: str | None = None, models: Any = None,
              connections: Any = None,
              connection_overrides: Mapping[str, str] | None = None) -> DagFlow:
    from ._load import load_bound_flow

    return DagFlow(load_bound_flow(path, variant=variant, models=models, connections=connections,
                                   connection_overrides=connection_overrides))


register_flow_loader(FlowLoader("dag", _is_dag, _load_dag), first=False)


def lazy(target: str) -> Callable[..., Any]:
    """``"package.module:function"`` as a callable that imports the module on first call: a
    loader from another package plugs in without the engine importing it."""
    module_name, _, attribute = target.partition(":")
    resolved: list[Callable[..., Any]] = []

    def call(*args: Any, **kwargs: Any) -> Any:
        if not resolved:
            import importlib

            resolved.append(getattr(importlib.import_module(module_name), attribute))
        return resolved[0](*args, **kwargs)

    call.__qualname__ = call.__name__ = f"lazy({target})"
    return call


def _is_prompty(path: Path) -> bool:
    return path.suffix == ".prompty"


_find_flex_file = lazy("pfkit.flex._spec:find_flex_file")


def _is_flex(path: Path) -> bool:
    return _find_flex_file(path) is not None


# Flex flows (pfkit.flex) and .prompty files (pfkit.prompty) are loaders of their own packages.
register_flow_loader(FlowLoader("flex", _is_flex, lazy("pfkit.flex._flow:load_flex")))
register_flow_loader(FlowLoader("prompty", _is_prompty, lazy("pfkit.flex._flow:load_prompty_flow")))


def load_executable(path: str | Path, *, variant: str | None = None, models: Any = None,
                    connections: Any = None,
                    connection_overrides: Mapping[str, str] | None = None,
                    init: Mapping[str, Any] | None = None) -> ExecutableFlow:
    """Load a flow with the loader that recognises ``path``. Without ``models``, llm nodes get
    their models from the connection store, one instance per connection. ``init``: the
    constructor values of a flex flow's class entry (``--init k=v``)."""
    target = Path(path).expanduser()
    for loader in _LOADERS:
        if loader.matches(target):
            extra = {"init": dict(init)} if init else {}
            if extra and loader.kind == "dag":
                from ..errors import UserError

                raise UserError("--init values are for flex flows (flow.flex.yaml with a class "
                                "entry); this is a DAG flow", code="InvalidInit",
                                hint="Remove --init, or set the values as node inputs.")
            return loader.load(target, variant=variant, models=models, connections=connections,
                               connection_overrides=connection_overrides, **extra)
    raise AssertionError("the DAG loader matches every path")  # pragma: no cover


class resident:  # noqa: N801 - used as a context manager, like contextlib's
    """``with resident(flow):`` keeps the flow's folder, ``sys.path`` entry and environment
    applied between its calls, for a process that exists to run this one flow (``pfkit flow
    serve``): requests then pay no ``chdir`` and environment swap each. Other flows still
    switch the process as usual while they run; on exit the state before is restored (once no
    call runs). A flow without user code (no context) is left as it is."""

    __slots__ = ("ctx",)

    def __init__(self, flow: Any) -> None:
        bound = getattr(flow, "bound", None)
        self.ctx = getattr(bound, "context", None)

    def __enter__(self) -> resident:
        if self.ctx is not None:
            GATE.keep(self.ctx)
        return self

    def __exit__(self, *exc: Any) -> None:
        if self.ctx is not None:
            GATE.unkeep(self.ctx)


__all__ = ["DagFlow", "ExecutableFlow", "FlowLoader", "flow_loaders", "lazy", "load_executable",
           "register_flow_loader", "resident"]
