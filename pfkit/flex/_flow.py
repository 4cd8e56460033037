"""Flex flows and prompty files as executable flows.

Each becomes a one-node flow for pfkit's engine: the node is the entry call (named as
promptflow names it in messages, e.g. ``my_flow`` or ``MyFlow.__call__``), fed by every flow
input, so lines, timeouts, the isolation gate, observers, errors, records and workers are the
DAG engine's. A class entry's ``__aggregate__`` is an aggregation node over the entry's outputs
of the successful lines; the dict it returns becomes the run's metrics.
"""

from __future__ import annotations

import inspect
import sys
import types
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, ClassVar

from ..engine import BoundCall, DagFlow, bind, register_node_kind
from ..engine._isolation import FlowContext, Holding, own_modules
from ..errors import UserError
from ..graph import plan
from ..spec import MISSING, FlowInputRef, FlowSpec, InputDef, NodeRef, NodeSpec, OutputDef
from ._entry import AttrDict, Entry, ajoin, import_entry, join_iterators, make_entry
from ._spec import FlexSpec, find_flex_file, load_flex_spec

ENTRY_KIND = "flex_entry"
AGGREGATE_KIND = "flex_aggregate"
AGGREGATE_NODE = "__aggregate__"
_HELD = "__pfkit_call__"  # NodeSpec.raw key: what the node calls


@dataclass(frozen=True, slots=True)
class FlexFlow(DagFlow):
    """A ``flow.flex.yaml`` flow (see :class:`pfkit.engine.ExecutableFlow`)."""

    text: str = ""
    sample: Mapping[str, Any] | None = None  # inputs for a test without inputs
    kind: ClassVar[str] = "flex"

    def with_environment(self, extra: Mapping[str, str]) -> FlexFlow:
        return type(self)(self.bound.with_environment(extra), self.text, self.sample)

    async def arun(self, inputs: Mapping[str, Any], *, line_number: int = 0,
                   timeout: float | None = None, observers: Any = None) -> Any:
        if not inputs and self.sample:
            inputs = dict(self.sample)  # promptflow: the sample when a line has no inputs
        return await DagFlow.arun(self, inputs, line_number=line_number, timeout=timeout,
                                  observers=observers)

    def resolved_yaml(self) -> str:
        return self.text

    @property
    def variants_used(self) -> Mapping[str, str]:
        return {}


@dataclass(frozen=True, slots=True)
class PromptyFlow(FlexFlow):
    """A ``.prompty`` file run as a flow: its inputs, one model call, output ``output`` (or
    the JSON fields of a ``json_object`` reply)."""

    kind: ClassVar[str] = "prompty"

    async def arun(self, inputs: Mapping[str, Any], *, line_number: int = 0,
                   timeout: float | None = None, observers: Any = None) -> Any:
        # promptflow runs a prompty's lines on their inputs alone (the sample is for a test)
        return await DagFlow.arun(self, inputs, line_number=line_number, timeout=timeout,
                                  observers=observers)

    @property
    def name(self) -> str:
        return self.file.stem


# --------------------------------------------------------------------------- node kinds

def _bind_entry(binder: Any, node: NodeSpec, literals: dict[str, Any]) -> BoundCall:
    held = node.raw[_HELD]
    return BoundCall(held["call"], {}, held["has_default"], is_async=held["is_async"],
                     user_code=held["user_code"])


def _bind_aggregate(binder: Any, node: NodeSpec, literals: dict[str, Any]) -> BoundCall:
    held = node.raw[_HELD]
    return BoundCall(held["call"], {}, frozenset(), is_async=held["is_async"], user_code=True)


register_node_kind(ENTRY_KIND, _bind_entry)
register_node_kind(AGGREGATE_KIND, _bind_aggregate)


def _entry_call(entry: Entry) -> Any:
    """The entry, its return value shaped: a returned generator stays one (the engine joins it
    for lines and tests, and ``flow serve`` streams it) unless ``__aggregate__`` needs the text;
    generators inside a dict or dataclass are joined here."""
    func = entry.func
    keep_stream = entry.aggregate is None

    def streams(value: Any) -> bool:
        return keep_stream and isinstance(value, (types.GeneratorType, types.AsyncGeneratorType))

    if entry.is_async:
        async def call_async(**kwargs: Any) -> Any:
            value = func(**kwargs)
            if inspect.isawaitable(value):
                value = await value
            return value if streams(value) else await ajoin(value)

        return call_async

    def call(**kwargs: Any) -> Any:
        value = func(**kwargs)
        return value if streams(value) else join_iterators(value)

    return call


def _aggregate_call(entry: Entry) -> Any:
    from ..nodes._tool import log_metric

    aggregate, param = entry.aggregate, entry.aggregate_param

    def items(results: Any) -> list[Any]:
        return [AttrDict(r) if isinstance(r, dict) else r for r in results or []]

    def metrics(value: Any) -> Any:
        if isinstance(value, dict):
            for key, metric in value.items():
                log_metric(str(key), metric)
        return value

    if entry.aggregate_async:
        async def call_async(results: Any) -> Any:
            value = aggregate(**{param: items(results)})
            if inspect.isawaitable(value):
                value = await value
            return metrics(value)

        return call_async

    def call(results: Any) -> Any:
        return metrics(aggregate(**{param: items(results)}))

    return call


def _shape(outputs: dict[str, Any]) -> dict[str, Any]:
    """A dict (or dataclass) return value: its keys are the outputs; anything else: ``output``."""
    value = outputs.get("output")
    if isinstance(value, dict):
        return dict(value)
    return {"output": value}


# --------------------------------------------------------------------------- building

def _value_type(annotation: Any, default: Any) -> str:
    from ..nodes._python import value_type_of

    value_type = value_type_of(annotation, default)
    return value_type if value_type in ("string", "int", "double", "bool", "list", "object",
                                        "image") else "object"


def _inputs(spec: FlexSpec | None, entry: Entry) -> dict[str, InputDef]:
    declared = spec.inputs if spec is not None else {}
    result: dict[str, InputDef] = {}
    for name, param in entry.params.items():
        mine = declared.get(name)
        default = MISSING if param.default is param.empty else param.default
        if mine is not None and mine.has_default and mine.default != "":
            default = mine.default
        value_type = (mine.type if mine is not None and mine.type and mine.type[:1].islower()
                      else _value_type(param.annotation, param.default))
        result[name] = InputDef(name, value_type, default, line=mine.line if mine else None)
    return result


def _resolvers(models: Any, connections: Any) -> tuple[Any, Any]:
    if models is None or connections is None:
        from ..providers._registry import ModelRegistry

        registry = ModelRegistry()
        models = registry if models is None else models
        connections = registry.connection if connections is None else connections
    return models, connections


def build(path: Path, file_spec: FlowSpec, inputs: dict[str, InputDef], call: Any, *,
          name: str, is_async: bool, has_default: frozenset[str], user_code: bool,
          aggregate: Any = None, aggregate_async: bool = False, models: Any = None,
          connections: Any = None, modules: Mapping[str, Any] | None = None) -> Any:
    """The bound one-node flow (see the module docstring)."""
    entry_node = NodeSpec(
        name=name, type=ENTRY_KIND, source=None,
        inputs={k: FlowInputRef(k) for k in inputs},
        raw={_HELD: {"call": call, "has_default": has_default, "is_async": is_async,
                     "user_code": user_code}})
    nodes = [entry_node]
    if aggregate is not None:
        nodes.append(NodeSpec(name=AGGREGATE_NODE, type=AGGREGATE_KIND, source=None,
                              inputs={"results": NodeRef(name, (), f"${{{name}.output}}")},
                              aggregation=True,
                              raw={_HELD: {"call": aggregate, "is_async": aggregate_async}}))
    spec = replace(file_spec, inputs=inputs, nodes=tuple(nodes), outputs={
        "output": OutputDef("output", "object", NodeRef(name, (), f"${{{name}.output}}"))})
    bound = bind(plan(spec), models=models, connections=connections)
    if modules and bound.context is not None:
        bound.context.modules.update(modules)
    return replace(bound, shape_outputs=_shape)


def load_flex(path: str | Path, *, variant: str | None = None, models: Any = None,
              connections: Any = None, connection_overrides: Mapping[str, str] | None = None,
              init: Mapping[str, Any] | None = None) -> FlexFlow:
    from .._compat import promptflow_shim
    from ..engine._bind import _env_value
    from ..spec._includes import with_includes

    target = Path(path).expanduser()
    file = find_flex_file(target)
    if file is None:
        raise UserError("not a flex flow", code="FlowFileNotFound",
                        hint="Point at a folder holding flow.flex.yaml, or at the YAML file.")
    spec = load_flex_spec(file)
    where = {"file": str(spec.path)}
    if variant:
        raise UserError("flex flows have no variants (--variant is for DAG flows)",
                        code="InvalidVariant", location=_location(where))
    if connection_overrides:
        raise UserError("--connections overrides nodes of DAG flows; a flex flow has none",
                        code="InvalidConnectionOverride", location=_location(where),
                        hint="Pass connection names as --init values of the flow's class.")
    models, connections = _resolvers(models, connections)
    promptflow_shim.install()
    file_spec = FlowSpec(path=spec.path, code_dir=spec.code_dir, inputs={}, outputs={},
                         nodes=(), environment_variables=dict(spec.environment_variables),
                         additional_includes=spec.additional_includes, name=spec.name,
                         raw=spec.raw)
    env = {str(k): _env_value(file_spec, str(k), v, connections)
           for k, v in spec.environment_variables.items()}
    if spec.additional_includes:
        relative = spec.code_dir.relative_to(spec.path.parent) if spec.code_dir != \
            spec.path.parent else Path(".")
        copied = with_includes(replace(file_spec, code_dir=spec.path.parent))
        code_dir = (copied.code_dir / relative).resolve()
        spec = replace(spec, code_dir=code_dir)
        file_spec = replace(file_spec, code_dir=code_dir)
    context = FlowContext(spec.code_dir, env)
    with Holding(context):
        before = dict(sys.modules)
        try:
            entry = make_entry(spec, import_entry(spec), dict(init or {}), connections)
        finally:
            own_modules(context, before)
    has_default = frozenset(k for k, p in entry.params.items() if p.default is not p.empty)
    bound = build(spec.path, file_spec, _inputs(spec, entry), _entry_call(entry),
                  name=entry.name, is_async=entry.is_async, has_default=has_default,
                  user_code=True,
                  aggregate=_aggregate_call(entry) if entry.aggregate is not None else None,
                  aggregate_async=entry.aggregate_async, models=models,
                  connections=connections, modules=context.modules)
    return FlexFlow(bound, spec.text, dict(spec.sample_inputs) or None)


def _location(where: Mapping[str, Any]) -> Any:
    from ..errors import Location

    return Location(**where)


def load_prompty_flow(path: str | Path, *, variant: str | None = None, models: Any = None,
                      connections: Any = None,
                      connection_overrides: Mapping[str, str] | None = None,
                      init: Mapping[str, Any] | None = None) -> PromptyFlow:
    from ..prompty._file import load_prompty_file
    from ..prompty._model import resolve_model
    from ..prompty._prompty import _Call

    file = load_prompty_file(path)
    where = {"file": str(file.path)}
    if variant or connection_overrides or init:
        what = "--variant" if variant else "--connections" if connection_overrides else "--init"
        raise UserError(f"{what} does not apply to a .prompty file", code="InvalidOption",
                        location=_location(where),
                        hint="Change the model section of the file (or ${env:...} values).")
    models, connections = _resolvers(models, connections)
    model = resolve_model(file.configuration, models, where=f"{file.path.name}: ")
    call = _Call(file, model)
    types = {n: i.type for n, i in file.inputs.items()}
    inputs = {n: InputDef(n, types.get(n, "object"), default if has_default else MISSING)
              for n, (has_default, default) in call.signature().items()}
    file_spec = FlowSpec(path=file.path, code_dir=file.path.parent, inputs={}, outputs={},
                         nodes=(), name=file.name, raw={})

    async def run(**kwargs: Any) -> Any:
        return await call(**kwargs)

    bound = build(file.path, file_spec, inputs, run, name=file.name, is_async=True,
                  has_default=frozenset(n for n, i in inputs.items() if i.has_default),
                  user_code=False, models=models, connections=connections)
    return PromptyFlow(bound, file.path.read_text(encoding="utf-8"), dict(file.sample) or None)
