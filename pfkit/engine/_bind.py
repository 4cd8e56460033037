"""Binding: the one step that imports user code and compiles templates.

``bind(graph)`` turns a planned :class:`FlowGraph` into a :class:`BoundFlow` whose nodes are ready
to call: python tools loaded (once), ToolProvider instances created, literal inputs converted to
the tool's parameter types, templates compiled, llm nodes given their model. Every problem found
here is a :class:`FlowValidationError` naming the file, line, node and field.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from ..errors import FlowValidationError, Location, UserError
from ..graph import FlowGraph
from ..nodes import _llm, _python, _templates
from ..spec import (
    ActivateSpec,
    FlowInputRef,
    FlowSpec,
    Literal,
    NodeRef,
    NodeSpec,
    parse_value_type,
)
from ..spec._references import is_reference_text
from ._isolation import GATE, FlowContext, Holding, own_modules

ModelResolver = Callable[[str, NodeSpec], Any]
ConnectionResolver = Callable[[str], Any]


class NodeSpeed:
    """How a sync tool's calls have gone so far: the one mutable part of a bound node, a
    scheduling hint only (never its behaviour), updated on the event loop thread."""

    __slots__ = ("blocking", "quick_calls", "slow_calls")

    def __init__(self) -> None:
        # Sync tools run on the event loop while they are quick; a tool whose calls keep taking
        # longer than BLOCKING_THRESHOLD moves to worker threads for good (_execute._record_speed).
        self.blocking = False
        self.slow_calls = 0
        self.quick_calls = 0  # quick calls so far (lines with a timeout need some first)


@dataclass(frozen=True, slots=True)
class BoundNode:
    name: str
    spec: NodeSpec
    call: Callable[..., Any]
    is_async: bool
    is_async_gen: bool
    literal_kwargs: dict[str, Any]
    ref_inputs: tuple[tuple[str, FlowInputRef | NodeRef], ...]
    has_default: frozenset[str]
    activate: ActivateSpec | None
    deps: frozenset[str]
    input_deps: frozenset[str]
    aggregation: bool
    # user code (python tools) runs with the flow's folder and environment applied (_isolation)
    user_code: bool = False
    speed: NodeSpeed = field(default_factory=NodeSpeed, compare=False)

    @property
    def blocking(self) -> bool:
        return self.speed.blocking


@dataclass(frozen=True, slots=True)
class BoundFlow:
    """A flow ready to run: immutable, shared by every line, task and thread that runs it."""

    graph: FlowGraph
    nodes: tuple[BoundNode, ...]
    line_nodes: tuple[BoundNode, ...]
    aggregation_nodes: tuple[BoundNode, ...]
    working_dir: Path
    environment: Mapping[str, str] = field(default_factory=dict)
    line_schedule: Any = None
    aggregation_schedule: Any = None
    context: FlowContext | None = None
    # (connection name, connection) -> model or None: the flow's models for promptflow-tools
    # functions that tool code calls directly (pfkit._compat._llm_tools.connection_models)
    models: Any = None
    # outputs -> outputs, applied to every line's outputs (flex flows: a dict return value
    # becomes the output columns; pfkit.flex)
    shape_outputs: Any = None

    @property
    def spec(self) -> FlowSpec:
        return self.graph.spec

    def with_environment(self, extra: Mapping[str, str]) -> BoundFlow:
        """The same bound nodes with more (or other) environment variables: a new flow."""
        if not extra:
            return self
        env = {**self.environment, **{str(k): str(v) for k, v in extra.items()}}
        ctx = self.context.with_environment(env) if self.context is not None else None
        if ctx is not None:
            GATE.register(ctx)
        return replace(self, environment=env, context=ctx)


@contextmanager
def working_directory(path: Path):
    """Deprecated: flows apply their folder around their own tool calls (``_isolation``).
    Kept for callers that still wrap a whole call: chdir into ``path`` and put it first on
    sys.path for the block."""
    GATE.restore()
    previous = os.getcwd()
    entry = str(path)
    os.chdir(path)
    sys.path.insert(0, entry)
    try:
        yield
    finally:
        GATE.restore()
        os.chdir(previous)
        try:
            sys.path.remove(entry)
        except ValueError:
            pass


def _no_model(connection: str, node: NodeSpec) -> Any:
    raise UserError(
        f"node '{node.name}' uses connection '{connection}', but no model provider is configured",
        code="ConnectionNotFound", location=Location(node=node.name, field="connection"),
        hint="Pass a model for this connection (for tests: pfkit.testing.EchoModel).",
    )


def _no_connection(name: str) -> Any:
    raise UserError(f"connection '{name}' is not defined", code="ConnectionNotFound",
                    hint="Create it with  pfkit connection create --file conn.yaml.")


@dataclass(frozen=True, slots=True)
class BoundCall:
    """What a node kind's binder returns: the callable and how to call it."""

    call: Callable[..., Any]
    literals: dict[str, Any]
    has_default: frozenset[str]
    is_async: bool = False
    is_async_gen: bool = False
    user_code: bool = False  # runs the flow author's code: needs the flow's folder/environment


NodeKind = Callable[["_Binder", NodeSpec, dict[str, Any]], BoundCall]
NODE_KINDS: dict[str, NodeKind] = {}


def register_node_kind(name: str, binder: NodeKind) -> None:
    """Add (or replace) a node kind: ``name`` is a node ``type``, or ``"package"`` for nodes
    whose ``source.type`` is ``package`` / ``package_with_prompt``."""
    NODE_KINDS[name] = binder


def node_kind_of(node: NodeSpec) -> str:
    if node.source is not None and node.source.type in ("package", "package_with_prompt"):
        return "package"
    return node.type


class _Binder:
    def __init__(self, graph: FlowGraph, models: ModelResolver | Mapping[str, Any] | None,
                 connections: ConnectionResolver | None) -> None:
        self.graph = graph
        self.spec = graph.spec
        if isinstance(models, Mapping):
            table = dict(models)

            def lookup(connection: str, node: NodeSpec) -> Any:
                if connection in table:
                    return table[connection]
                if "*" in table:
                    return table["*"]
                return _no_model(connection, node)

            self.models: ModelResolver = lookup
        else:
            self.models = models or _no_model
        self.connections = connections or _no_connection

    def error(self, node: NodeSpec, message: str, code: str, field: str | None = None,
              hint: str | None = None) -> FlowValidationError:
        return FlowValidationError(message, code=code, hint=hint, location=Location(
            file=self.spec.file, line=node.line, node=node.name, field=field))

    def source_file(self, node: NodeSpec) -> Path:
        assert node.source is not None and node.source.path is not None
        path = (self.spec.code_dir / node.source.path)
        if not path.is_file():
            raise self.error(node, f"source file '{node.source.path}' does not exist",
                             "InvalidSource", "source.path",
                             hint=f"Create {path} or fix the path (relative to the flow folder).")
        return path

    def read_template(self, node: NodeSpec) -> tuple[str, Any]:
        path = self.source_file(node)
        try:
            text = path.read_text(encoding="utf-8")
        except UnicodeDecodeError:
            raise self.error(node, f"template '{node.source.path}' is not UTF-8 text",
                             "InvalidSource", "source.path") from None
        if path.suffix == ".prompty":  # a prompty file as the template: its body (pfkit.prompty)
            from ..prompty._file import split_front_matter

            text = split_front_matter(text, path)[1]
        if node.type == "llm":
            text = _templates.preprocess_images(text)
        try:
            return text, _templates.compile_template(text, file=str(path), node=node.name)
        except Exception as exc:  # jinja2.TemplateSyntaxError
            lineno = getattr(exc, "lineno", None)
            raise self.error(
                node, f"template {node.source.path} line {lineno}: {getattr(exc, 'message', exc)}",
                "JinjaTemplateError", "source.path",
                hint="Fix the Jinja2 syntax in the template.") from None

    def check_collisions(self, node: NodeSpec, text: str, reserved: set[str], what: str) -> None:
        clash = sorted(_templates.template_variables(text) & reserved)
        if clash:
            raise self.error(
                node, f"template variables {clash} have the names of {what} parameters",
                "NodeInputValidationError", "source.path",
                hint="Rename these variables in the template (and the matching node inputs).")

    def escaped_inputs(self, node: NodeSpec) -> frozenset[str]:
        return _templates.escaped_input_names(node)  # untrusted inputs (see _templates)

    def bind_node(self, node: NodeSpec) -> BoundNode:
        literals = {k: v.value for k, v in node.inputs.items() if isinstance(v, Literal)}
        refs = tuple((k, v) for k, v in node.inputs.items() if not isinstance(v, Literal))
        kind = NODE_KINDS.get(node_kind_of(node))
        if kind is None:
            raise self.error(node, f"{node.type} nodes are not supported yet", "NotSupported", "type",
                             hint="Supported node types: " + ", ".join(
                                 sorted(k for k in NODE_KINDS if k != "package")) + ".")
        bound = kind(self, node, literals)
        return BoundNode(
            name=node.name, spec=node, call=bound.call, is_async=bound.is_async,
            is_async_gen=bound.is_async_gen, literal_kwargs=bound.literals, ref_inputs=refs,
            has_default=bound.has_default, activate=node.activate,
            deps=self.graph.dependencies[node.name],
            input_deps=frozenset(r.node for r in node.input_node_refs()),
            aggregation=node.aggregation, user_code=bound.user_code,
        )

    def convert_literals(self, node: NodeSpec, literals: dict[str, Any],
                         types: Mapping[str, str],
                         annotations: Mapping[str, Any] | None = None) -> dict[str, Any]:
        converted = {}
        for key, value in literals.items():
            if value is None or value == "":
                continue  # dropped, so the parameter's default applies (promptflow's rule)
            value_type = types.get(key)
            if value_type is None:
                converted[key] = value
            elif value_type == "connection":
                if not isinstance(value, str):
                    raise self.error(node, f"input '{key}' must name a connection", "InvalidConnectionType",
                                     f"inputs.{key}")
                try:
                    converted[key] = self.connections(value)
                except UserError as exc:
                    raise type(exc)(f"input '{key}': {exc.message}", code=exc.code, hint=exc.hint,
                                    location=Location(file=self.spec.file, line=node.line,
                                                      node=node.name, field=f"inputs.{key}")) from None
                if annotations and annotations.get(key) is not None:  # promptflow's type check
                    from ..connections import check_connection_type

                    converted[key] = check_connection_type(
                        converted[key], annotations[key], node=node.name, input=key,
                        location=Location(file=self.spec.file, line=node.line, node=node.name,
                                          field=f"inputs.{key}"))
            elif value_type == "image":  # a literal for an Image parameter: read once, here
                from ..nodes._images import ImageInputError, to_image

                try:
                    converted[key] = to_image(value, self.spec.code_dir)
                except (ImageInputError, OSError) as exc:
                    raise self.error(node, f"input '{key}' is not an image: {exc}",
                                     "NodeInputValidationError", f"inputs.{key}",
                                     hint="Give a path inside the flow folder, a data: URL or "
                                          "an http(s) URL.") from None
            else:
                try:
                    converted[key] = parse_value_type(value_type, value)
                except (TypeError, ValueError):
                    raise self.error(node, f"input '{key}' has value {value!r}, which is not of "
                                     f"type {value_type}", "NodeInputValidationError",
                                     f"inputs.{key}", hint=f"Give a {value_type} value.") from None
        return converted

    def model_for(self, node: NodeSpec, connection: Any, field: str) -> Any:
        if not isinstance(connection, str) or not connection:
            raise self.error(node, "the node needs a connection name", "ConnectionNotFound", field,
                             hint="Add  connection: <name>.")
        try:
            return self.models(connection, node)
        except UserError as exc:
            raise type(exc)(exc.message, code=exc.code, hint=exc.hint, location=Location(
                file=self.spec.file, line=node.line, node=node.name, field=field)) from None

    def bind_package(self, node: NodeSpec, literals: dict[str, Any]):
        """promptflow-tools' LLM and embedding tools, run by pfkit's providers (promptflow-tools
        need not be installed): same inputs, same outputs."""
        tool = node.source.tool
        spec = _llm.PACKAGE_TOOLS.get(tool)
        if spec is None:
            raise self.error(
                node, f"package tool '{tool}' is not available in pfkit", "PackageToolNotFound",
                "source.tool", hint="Supported package tools: " + ", ".join(sorted(_llm.PACKAGE_TOOLS))
                + ". Other tools can be written as a python node.")
        connection = node.inputs.get("connection")
        if not isinstance(connection, Literal):
            raise self.error(node, "the connection input must be a connection name", "ConnectionNotFound",
                             "inputs.connection", hint="Add  connection: <name>  to the node's inputs.")
        model = self.model_for(node, connection.value, "inputs.connection")
        literals = {k: v for k, v in literals.items() if k != "connection"}
        if spec.api == "embedding":
            types = {"input": "string", "deployment_name": "string", "model": "string"}
            converted = self.convert_literals(node, literals, types)
            return _llm.EmbeddingCall(model=model), converted, frozenset()
        api = spec.api
        if api == "from_input":
            api_value = literals.pop("api", "chat")
            if api_value not in ("chat", "completion"):
                raise self.error(node, f"api {api_value!r} is not supported", "APINotFound",
                                 "inputs.api", hint="Use chat or completion.")
            api = api_value
        if node.source.type == "package_with_prompt":
            text, template = self.read_template(node)
        else:
            prompt = literals.pop("prompt", None)
            if prompt is None and "prompt" in node.inputs and not isinstance(
                    node.inputs["prompt"], Literal):
                prompt = ""  # given per line (another node's output): it is the template then
            if not isinstance(prompt, str):
                raise self.error(node, "the tool needs a 'prompt' input (the template text)",
                                 "NodeInputValidationError", "inputs.prompt")
            text = prompt
            template = _templates.compile_template(_templates.preprocess_images(text),
                                                   node=node.name)
        if spec.api == "vision":  # the gpt4v tools (pfkit._compat._llm_tools.VisionCall)
            from .._compat._llm_tools import VisionCall

            call = VisionCall(model, text, azure=spec.provider == "azure_openai")
            self.check_collisions(node, text, set(call.types) | {"connection", "prompt"},
                                  "the vision tool's")
            return call, self.convert_literals(node, literals, call.types), frozenset(call.types)
        call, converted, has_default = self.llm_call(node, model, api, text, template, literals,
                                                     reserved={"connection", "prompt", "api"})
        if spec.api == "from_input" and api == "completion":
            converted.setdefault("max_tokens", None)  # promptflow.tools.llm.llm's default, not 16
        if spec.provider == "azure_openai" and call.api_style != "azure_openai":
            # AzureOpenAI tools name the model 'deployment_name'; let it reach an OpenAI-style model
            if "deployment_name" in converted and "model" not in converted:
                converted["model"] = converted.pop("deployment_name")
        return call, converted, has_default

    def bind_python(self, node: NodeSpec, literals: dict[str, Any]):
        tool = _python.load_python_tool(self.source_file(node), flow_file=self.spec.file,
                                        node=node.name, line=node.line)
        if not tool.accepts_kwargs:
            unknown = [k for k in node.inputs if k not in tool.params and k not in tool.init_params]
            if unknown:
                raise self.error(
                    node, f"inputs {unknown} are not parameters of tool "
                    f"'{tool.func.__qualname__}' in {node.source.path}", "NodeInputValidationError",
                    f"inputs.{unknown[0]}",
                    hint=f"Its parameters: {sorted({**tool.params, **tool.init_params})}. Remove the "
                         "input, or add the parameter (or **kwargs) to the tool.")
        types = {k: p.value_type for k, p in {**tool.params, **tool.init_params}.items()}
        annotations = {k: p.annotation for k, p in {**tool.params, **tool.init_params}.items()}
        converted = self.convert_literals(node, literals, types, annotations)
        func = tool.func
        if tool.provider_class is not None:
            init_kwargs = {k: v for k, v in converted.items() if k in tool.init_params}
            missing_refs = [k for k, v in node.inputs.items()
                            if k in tool.init_params and not isinstance(v, Literal)]
            if missing_refs:
                raise self.error(node, f"__init__ parameters {missing_refs} of "
                                 f"{tool.provider_class.__name__} must be literal values",
                                 "NodeInputValidationError", f"inputs.{missing_refs[0]}")
            try:
                instance = tool.provider_class(**init_kwargs)
            except Exception as exc:
                raise self.error(node, f"creating {tool.provider_class.__name__} failed: "
                                 f"({type(exc).__name__}) {exc}", "ToolLoadError", "inputs") from exc
            func = getattr(instance, func.__name__)
            converted = {k: v for k, v in converted.items() if k not in tool.init_params}
        has_default = frozenset(k for k, p in tool.params.items() if p.has_default)
        return func, tool.is_async, tool.is_async_gen, converted, has_default

    def bind_prompt(self, node: NodeSpec):
        text, template = self.read_template(node)
        self.check_collisions(node, text, {"template"}, "the prompt tool's")
        to_escape = self.escaped_inputs(node)

        def render_prompt(**kwargs: Any) -> Any:
            return _templates.render_prompt(template, kwargs, to_escape)

        return render_prompt

    def bind_llm(self, node: NodeSpec, literals: dict[str, Any]):
        if not node.connection:
            raise self.error(node, "llm node has no 'connection'", "InvalidFlowSchema",
                             "connection", hint="Add  connection: <name>.")
        text, template = self.read_template(node)
        model = self.model_for(node, node.connection, "connection")
        return self.llm_call(node, model, node.api or "chat", text, template, literals,
                             reserved={"connection", "prompt"})

    def llm_call(self, node: NodeSpec, model: Any, api: str, text: str, template: Any,
                 literals: dict[str, Any], reserved: set[str]):
        """The parameters of the model's API style: template variables must not collide with
        them (or with ``reserved``), literals are converted to their types."""
        api_style = getattr(model, "api_style", "openai")
        table = _llm.parameter_table(api_style, api)
        self.check_collisions(node, text, set(table) | reserved, f"the {api} API's")
        converted = self.convert_literals(node, literals, {k: t for k, (t, _) in table.items()})
        call = _llm.LLMCall(model=model, api=api, api_style=api_style, template=template,
                            table=table, to_escape=self.escaped_inputs(node))
        return call, converted, frozenset(table)


def _bind_python(binder: _Binder, node: NodeSpec, literals: dict[str, Any]) -> BoundCall:
    call, is_async, is_async_gen, literals, has_default = binder.bind_python(node, literals)
    return BoundCall(call, literals, has_default, is_async, is_async_gen, user_code=True)


def _bind_prompt(binder: _Binder, node: NodeSpec, literals: dict[str, Any]) -> BoundCall:
    return BoundCall(binder.bind_prompt(node), literals, frozenset())


def _bind_llm(binder: _Binder, node: NodeSpec, literals: dict[str, Any]) -> BoundCall:
    call, literals, has_default = binder.bind_llm(node, literals)
    return BoundCall(call, literals, has_default, is_async=True)


def _bind_package(binder: _Binder, node: NodeSpec, literals: dict[str, Any]) -> BoundCall:
    call, literals, has_default = binder.bind_package(node, literals)
    return BoundCall(call, literals, has_default, is_async=True)


register_node_kind("python", _bind_python)
register_node_kind("prompt", _bind_prompt)
register_node_kind("llm", _bind_llm)
register_node_kind("package", _bind_package)


def bind(graph: FlowGraph, *, models: ModelResolver | Mapping[str, Any] | None = None,
         connections: ConnectionResolver | None = None) -> BoundFlow:
    """Load, compile and prepare every node. ``models`` maps an llm node's connection name to a
    ChatModel (a mapping, with ``"*"`` for any, or a callable)."""
    from .._compat import promptflow_shim

    promptflow_shim.install()
    binder = _Binder(graph, models, connections)
    working_dir = graph.spec.code_dir
    env = {str(k): _env_value(graph.spec, str(k), v, binder.connections)
           for k, v in graph.spec.environment_variables.items()}
    context = FlowContext(working_dir, env, _direct_models(binder.models))
    GATE.register(context)
    with Holding(context):  # tools import from (and open files in) their own folder
        before = dict(sys.modules)
        nodes = tuple(binder.bind_node(n) for n in graph.nodes)
        own_modules(context, before)
    from ._execute import Schedule

    line_nodes = tuple(n for n in nodes if not n.aggregation)
    aggregation_nodes = tuple(n for n in nodes if n.aggregation)
    return BoundFlow(
        graph=graph,
        nodes=nodes,
        line_nodes=line_nodes,
        aggregation_nodes=aggregation_nodes,
        working_dir=working_dir,
        environment=env,
        line_schedule=Schedule.of(line_nodes),
        aggregation_schedule=Schedule.of(aggregation_nodes),
        context=context,
        models=_direct_models(binder.models),
    )


def _direct_models(resolve: ModelResolver) -> Callable[[str, Any], Any]:
    def model(name: str, connection: Any) -> Any:
        try:
            return resolve(name, None)
        except Exception:  # noqa: BLE001 - not one of the flow's: built from the object
            return None

    return model


def _env_value(spec: FlowSpec, key: str, value: Any, connections: ConnectionResolver) -> str:
    """Environment variables are text: dicts and lists as JSON, ``${conn.key}`` resolved from the
    connection (its secret is never echoed in errors)."""
    import json

    if isinstance(value, (dict, list)):
        return json.dumps(value)
    text = str(value)
    if is_reference_text(text) and "." in text:
        conn_name, _, field_name = text[2:-1].partition(".")
        where = Location(file=spec.file, field=f"environment_variables.{key}")
        try:
            conn = connections(conn_name)
        except UserError as exc:
            raise UserError(f"environment variable '{key}' refers to {text}: {exc.message}",
                            code="ConnectionNotFound", location=where, hint=exc.hint) from None
        resolved = getattr(conn, field_name, None)
        if resolved is None and hasattr(conn, "get"):
            resolved = conn.get(field_name)
        if resolved is None:
            raise UserError(f"environment variable '{key}' refers to {text}, but connection "
                            f"'{conn_name}' has no field '{field_name}'", code="ConnectionKeyMissing",
                            location=where)
        return str(resolved)
    return text
