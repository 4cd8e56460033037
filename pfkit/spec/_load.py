"""Read ``flow.dag.yaml`` into a :class:`FlowSpec`, rejecting every malformed shape with an error
that names the file, the line, the node and the field."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

from .._names import unsafe_name_reason
from ..errors import FlowValidationError, Location
from ._models import (
    INPUT_TYPES,
    LLM_APIS,
    MISSING,
    NODE_TYPES,
    SOURCE_TYPES,
    ActivateSpec,
    FlowSpec,
    InputDef,
    NodeSpec,
    NodeVariants,
    OutputDef,
    SourceSpec,
)
from ._outside import find_outside_paths, warn_outside_paths
from ._references import ReferenceSyntaxError, parse_value
from ._yaml import LineDict, load_yaml_file, plain

ROLE_ESCAPING_MODES = ("all", "promptflow")  # as pfkit.nodes._templates.ROLE_ESCAPING_MODES
DAG_FILE_NAMES = ("flow.dag.yaml", "flow.dag.yml")
_TOP_LEVEL_KEYS = frozenset({
    "$schema", "inputs", "outputs", "nodes", "node_variants", "environment",
    "environment_variables", "additional_includes", "name", "display_name", "description",
    "tags", "type", "language", "message_format", "id", "tools",
})


def resolve_flow_file(path: str | Path) -> Path:
    """A flow folder or a YAML file -> the YAML file, or a clear error."""
    p = Path(path).expanduser()
    if p.is_dir():
        for name in DAG_FILE_NAMES:
            if (p / name).is_file():
                return (p / name).resolve()
        for name in ("flow.flex.yaml", "flow.flex.yml"):  # a flex flow (pfkit.flex)
            if (p / name).is_file():
                return (p / name).resolve()
        raise FlowValidationError(
            "no flow.dag.yaml or flow.flex.yaml in this folder", code="FlowFileNotFound",
            location=Location(file=str(p)),
            hint="Point --flow at a folder that holds flow.dag.yaml or flow.flex.yaml, or at the "
                 "flow file itself (a .prompty file too).",
        )
    if p.is_file():
        return p.resolve()
    raise FlowValidationError(
        "no such flow folder or file", code="FlowFileNotFound", location=Location(file=str(p)),
        hint="Check the --flow path.",
    )


class _Reader:
    """Shared state while reading one file: where errors point."""

    def __init__(self, file: Path) -> None:
        self.file = str(file)

    def error(self, message: str, *, code: str, line: int | None = None, node: str | None = None,
              field: str | None = None, hint: str | None = None) -> FlowValidationError:
        return FlowValidationError(
            message, code=code, hint=hint,
            location=Location(file=self.file, line=line, node=node, field=field),
        )

    def mapping(self, value: Any, *, what: str, line: int | None, node: str | None = None,
                field: str | None = None) -> LineDict:
        if value is None:
            empty = LineDict()
            empty.line = line
            return empty
        if not isinstance(value, dict):
            raise self.error(f"{what} must be a mapping, got {type(value).__name__}",
                             code="InvalidFlowSchema", line=getattr(value, "line", line),
                             node=node, field=field)
        return value  # type: ignore[return-value]

    def bool_field(self, data: LineDict, key: str, node: str | None) -> bool:
        value = data.get(key, False)
        if value is None:
            return False
        if not isinstance(value, bool):
            raise self.error(f"'{key}' must be true or false, got {value!r}", code="InvalidFlowSchema",
                             line=data.line_of(key), node=node, field=key)
        return value

    def str_field(self, data: LineDict, key: str, node: str | None, *,
                  field: str | None = None) -> str | None:
        value = data.get(key)
        if value is None:
            return None
        if not isinstance(value, str):
            raise self.error(f"'{key}' must be a string, got {_show(value)}",
                             code="InvalidFlowSchema", line=data.line_of(key), node=node,
                             field=field or key)
        return value

    def name(self, value: Any, *, what: str, line: int | None, node: str | None = None,
             field: str | None = None) -> str:
        """A name that becomes a file or folder name (nodes, variant ids): the one safe rule."""
        reason = unsafe_name_reason(value)
        if reason is None:
            return value
        shown = _show(value)
        raise self.error(
            f"{what} {shown} cannot be used: {reason}", code="InvalidName", line=line,
            node=value if node is None and isinstance(value, str) and len(value) <= 200
            and value.isprintable() else node,
            field=field,
            hint=f"{'Connection names' if field == 'connection' else 'Names of nodes and variants'}"
                 " are 1-200 letters, digits, '_', '-' and '.', starting with a letter, a digit "
                 "or '_' (they become file names in run folders and the connection store).",
        )

    def connection_name(self, spec: LineDict, node: str) -> str | None:
        """``connection:`` names a file in the connection store: the safe-name rule."""
        value = self.str_field(spec, "connection", node)
        if value is None or value == "":
            return value or None
        return self.name(value, what="connection name", line=spec.line_of("connection"),
                         node=node, field="connection")

    def path_field(self, value: Any, *, what: str, line: int | None, node: str | None = None,
                   field: str | None = None) -> str:
        """A relative or absolute file path written in the flow file."""
        problem = _path_problem(value)
        if problem is None:
            return value
        raise self.error(f"{what} {_show(value)} is not a usable path: {problem}",
                         code="InvalidFlowSchema", line=line, node=node, field=field,
                         hint="Give a path relative to the flow folder, e.g. my_tool.py.")

    # -- inputs / outputs -------------------------------------------------------------------

    def inputs(self, data: LineDict) -> dict[str, InputDef]:
        section = self.mapping(data.get("inputs"), what="'inputs'", line=data.line_of("inputs"))
        result: dict[str, InputDef] = {}
        for name, spec in section.items():
            line = section.line_of(name)
            if not isinstance(name, str):
                raise self.error(f"input name {name!r} must be a string", code="InvalidFlowSchema",
                                 line=line, field="inputs")
            if spec is None or not isinstance(spec, dict):
                raise self.error(
                    f"flow input '{name}' must be a mapping with at least 'type'",
                    code="InvalidFlowSchema", line=line, field=f"inputs.{name}",
                    hint="Write it as:  " + name + ":\n    type: string",
                )
            typ = spec.get("type")
            if not isinstance(typ, str) or typ not in INPUT_TYPES:
                raise self.error(
                    f"flow input '{name}' has type {_show(typ)}, which is not a flow input type",
                    code="InputTypeNotSupported" if typ is not None else "InvalidFlowSchema",
                    line=spec.line_of("type"), field=f"inputs.{name}.type",
                    hint="Use one of: int, double, bool, string, list, object, image.",
                )
            enum = spec.get("enum")
            chat_history = spec.get("is_chat_history")
            result[name] = InputDef(
                name=name,
                type=typ,
                default=plain(spec["default"]) if "default" in spec else MISSING,
                description=spec.get("description"),
                enum=tuple(plain(enum)) if isinstance(enum, list) else None,
                is_chat_input=self.bool_field(spec, "is_chat_input", None),
                is_chat_history=bool(chat_history) if chat_history is not None else None,
                line=line,
            )
        return result

    def outputs(self, data: LineDict) -> dict[str, OutputDef]:
        section = self.mapping(data.get("outputs"), what="'outputs'", line=data.line_of("outputs"))
        result: dict[str, OutputDef] = {}
        for name, spec in section.items():
            line = section.line_of(name)
            if not isinstance(name, str):
                raise self.error(f"output name {_show(name)} must be a string",
                                 code="InvalidFlowSchema", line=line, field="outputs")
            if not isinstance(spec, dict):
                raise self.error(
                    f"flow output '{name}' must be a mapping with 'type' and 'reference'",
                    code="InvalidFlowSchema", line=line, field=f"outputs.{name}",
                )
            if "reference" not in spec or spec.get("reference") in (None, ""):
                raise self.error(
                    f"flow output '{name}' has no reference", code="EmptyOutputReference",
                    line=line, field=f"outputs.{name}.reference",
                    hint="Add  reference: ${node_name.output}  (or a flow input or a literal).",
                )
            try:
                ref = parse_value(plain(spec["reference"]), in_flow_output=True)
            except ReferenceSyntaxError as exc:
                raise self.error(str(exc), code=exc.code, line=spec.line_of("reference"),
                                 field=f"outputs.{name}.reference") from None
            result[name] = OutputDef(
                name=name,
                type=self.str_field(spec, "type", None, field=f"outputs.{name}.type") or "string",
                reference=ref,
                description=spec.get("description"),
                evaluation_only=self.bool_field(spec, "evaluation_only", None),
                is_chat_output=self.bool_field(spec, "is_chat_output", None),
                line=line,
            )
        return result

    # -- nodes ------------------------------------------------------------------------------

    def node(self, spec: Any, line: int | None, *, name: str | None = None,
             in_variant: str | None = None) -> NodeSpec:
        where = f"variant '{in_variant}' of node '{name}'" if in_variant else "a node"
        if not isinstance(spec, dict):
            raise self.error(f"{where} must be a mapping", code="InvalidFlowSchema", line=line,
                             node=name)
        if name is None:
            name = spec.get("name")
            if name is None or name == "":
                raise self.error("a node has no 'name'", code="InvalidFlowSchema",
                                 line=spec.line, field="name",
                                 hint="Give every node a unique name.")
            name = self.name(name, what="node name", line=spec.line_of("name"), field="name")
        line = spec.line or line
        use_variants = self.bool_field(spec, "use_variants", name)
        if use_variants and not in_variant:
            return NodeSpec(name=name, type="", source=None, use_variants=True, line=line,
                            raw=plain(spec))

        typ = spec.get("type")
        if not isinstance(typ, str) and typ is not None:
            raise self.error(f"node type must be a string, got {_show(typ)}",
                             code="InvalidFlowSchema", line=spec.line_of("type"), node=name,
                             field="type", hint="Use one of: python, prompt, llm, custom_llm.")
        if typ == "csharp" or spec.get("language") == "csharp":
            raise self.error("C# nodes are not supported", code="NotSupported", line=line,
                             node=name, field="type")
        if typ not in NODE_TYPES:
            raise self.error(
                f"node type {typ!r} is not supported" if typ else "node has no 'type'",
                code="InvalidNodeType" if typ else "InvalidFlowSchema",
                line=spec.line_of("type"), node=name, field="type",
                hint="Use one of: python, prompt, llm, custom_llm.",
            )
        source = self.source(spec, name, typ)
        inputs_raw = self.mapping(spec.get("inputs"), what="'inputs'", line=spec.line_of("inputs"),
                                  node=name, field="inputs")
        inputs = {}
        for key, value in inputs_raw.items():
            if not isinstance(key, str):
                raise self.error(f"input name {key!r} must be a string", code="InvalidFlowSchema",
                                 line=inputs_raw.line_of(key), node=name, field="inputs")
            try:
                inputs[key] = parse_value(plain(value))
            except ReferenceSyntaxError as exc:
                raise self.error(str(exc), code=exc.code, line=inputs_raw.line_of(key), node=name,
                                 field=f"inputs.{key}") from None

        api = self.str_field(spec, "api", name)
        if typ == "llm":
            if api is None:
                raise self.error("llm node has no 'api'", code="InvalidFlowSchema",
                                 line=line, node=name, field="api",
                                 hint="Add  api: chat  or  api: completion.")
            if api not in LLM_APIS:
                raise self.error(f"api {api!r} is not supported for llm nodes",
                                 code="APINotFound", line=spec.line_of("api"), node=name,
                                 field="api", hint="Use  api: chat  or  api: completion.")
        activate = self.activate(spec, name)
        role_escaping = self.str_field(spec, "role_escaping", name) or "all"
        if role_escaping not in ROLE_ESCAPING_MODES:
            raise self.error(
                f"role_escaping must be one of {', '.join(ROLE_ESCAPING_MODES)}, got "
                f"{_show(role_escaping)}", code="InvalidFlowSchema",
                line=spec.line_of("role_escaping"), node=name, field="role_escaping",
                hint="all (the default) escapes chat role lines in every input that is not a "
                     "literal; promptflow escapes only flow inputs, as promptflow 1.18.5 does.")
        aggregation = self.bool_field(spec, "aggregation", name) or self.bool_field(spec, "reduce", name)
        return NodeSpec(
            name=name,
            type=typ,
            source=source,
            inputs=inputs,
            connection=self.connection_name(spec, name),
            api=api,
            provider=self.str_field(spec, "provider", name),
            module=self.str_field(spec, "module", name),
            aggregation=aggregation,
            activate=activate,
            use_variants=False,
            line=line,
            raw=plain(spec),
            role_escaping=role_escaping,
        )

    def source(self, spec: LineDict, name: str, typ: str) -> SourceSpec:
        source = spec.get("source")
        if source is None:
            raise self.error("node has no 'source'", code="InvalidSource",
                             line=spec.line, node=name, field="source",
                             hint="Add  source: {type: code, path: my_tool.py}.")
        if not isinstance(source, dict):
            raise self.error("'source' must be a mapping with 'type' and 'path' or 'tool'",
                             code="InvalidSource", line=spec.line_of("source"), node=name,
                             field="source")
        stype = source.get("type")
        if not isinstance(stype, str) or stype not in SOURCE_TYPES:
            raise self.error(f"source type {_show(stype)} is not supported", code="InvalidSource",
                             line=source.line_of("type"), node=name, field="source.type",
                             hint="Use code, package or package_with_prompt.")
        path = source.get("path")
        tool = source.get("tool")
        if path is not None and path != "":
            path = self.path_field(path, what="source.path", line=source.line_of("path"),
                                   node=name, field="source.path")
        if tool is not None and not isinstance(tool, str):
            raise self.error(f"source.tool must be a string, got {_show(tool)}",
                             code="InvalidSource", line=source.line_of("tool"), node=name,
                             field="source.tool")
        if stype in ("code", "package_with_prompt") and not path:
            raise self.error(f"source of type {stype} needs a 'path'", code="InvalidSource",
                             line=source.line, node=name, field="source.path")
        if stype in ("package", "package_with_prompt") and not tool:
            raise self.error(f"source of type {stype} needs a 'tool'", code="InvalidSource",
                             line=source.line, node=name, field="source.tool")
        if typ in ("prompt", "llm") and stype != "code":
            raise self.error(f"{typ} nodes take a template file: source type must be code",
                             code="InvalidSource", line=source.line_of("type"), node=name,
                             field="source.type")
        return SourceSpec(type=stype, path=path or None, tool=tool or None,
                          line=source.line_of("path"))

    def activate(self, spec: LineDict, name: str) -> ActivateSpec | None:
        if "activate" not in spec or spec.get("activate") is None:
            return None
        act = spec["activate"]
        line = spec.line_of("activate")
        hint = "Write it as  activate: {when: ${node.output}, is: value}."
        if not isinstance(act, dict):
            raise self.error("'activate' must be a mapping with 'when' and 'is'",
                             code="InvalidActivateConfig", line=line, node=name, field="activate",
                             hint=hint)
        missing = [k for k in ("when", "is") if k not in act]
        if missing:
            raise self.error(f"'activate' lacks {' and '.join(repr(m) for m in missing)}",
                             code="InvalidActivateConfig", line=act.line or line, node=name,
                             field="activate", hint=hint)
        extra = sorted(set(act) - {"when", "is"})
        if extra:
            raise self.error(f"'activate' has unknown keys {extra}", code="InvalidActivateConfig",
                             line=act.line or line, node=name, field="activate", hint=hint)
        try:
            when = parse_value(plain(act["when"]))
        except ReferenceSyntaxError as exc:
            raise self.error(str(exc), code=exc.code, line=act.line_of("when"), node=name,
                             field="activate.when") from None
        return ActivateSpec(when=when, is_value=plain(act["is"]))

    def node_variants(self, data: LineDict) -> dict[str, NodeVariants]:
        section = self.mapping(data.get("node_variants"), what="'node_variants'",
                               line=data.line_of("node_variants"))
        result = {}
        for name, spec in section.items():
            line = section.line_of(name)
            name = self.name(name, what="node_variants entry", line=line, field="node_variants")
            spec = self.mapping(spec, what=f"node_variants.{name}", line=line, node=name)
            default = spec.get("default_variant_id")
            variants = self.mapping(spec.get("variants"), what=f"node_variants.{name}.variants",
                                    line=spec.line_of("variants"), node=name)
            if not variants:
                raise self.error(f"node_variants.{name} defines no variants",
                                 code="InvalidFlowSchema", line=line, node=name,
                                 field="node_variants")
            if not default:
                raise self.error(
                    f"default variant id is not specified for node '{name}'",
                    code="InvalidFlowSchema", line=line, node=name,
                    field="node_variants.default_variant_id",
                    hint=f"Add  default_variant_id: {next(iter(variants))}.",
                )
            if not isinstance(default, str):
                raise self.error(
                    f"default_variant_id must be a variant id (a string), got {_show(default)}",
                    code="InvalidFlowSchema", line=spec.line_of("default_variant_id"), node=name,
                    field="node_variants.default_variant_id",
                    hint=f"Write  default_variant_id: {_show(next(iter(variants)))}.",
                )
            if default not in variants:
                raise self.error(
                    f"default variant '{default}' is not among the variants {list(variants)}",
                    code="InvalidFlowSchema", line=spec.line_of("default_variant_id"), node=name,
                    field="node_variants.default_variant_id",
                )
            parsed = {}
            for vid, vspec in variants.items():
                vline = variants.line_of(vid)
                vid = self.name(vid, what="variant id", line=vline, node=name,
                                field=f"node_variants.{name}.variants")
                vspec = self.mapping(vspec, what=f"variant '{vid}'", line=vline, node=name)
                body = vspec.get("node")
                if not isinstance(body, dict):
                    raise self.error(f"variant '{vid}' of node '{name}' has no 'node' body",
                                     code="InvalidFlowSchema", line=vline, node=name,
                                     field=f"node_variants.{name}.variants.{vid}")
                parsed[vid] = self.node(body, vline, name=name, in_variant=vid)
            result[name] = NodeVariants(default_variant_id=str(default), variants=parsed, line=line)
        return result


def load_flow_spec(path: str | Path) -> FlowSpec:
    """Load and structurally validate a DAG flow. Graph-level checks live in :mod:`pfkit.graph`."""
    file = resolve_flow_file(path)
    reader = _Reader(file)
    data = load_yaml_file(file)
    if data is None:
        data = LineDict()
    if not isinstance(data, dict):
        raise reader.error("the flow file must be a YAML mapping", code="InvalidFlowSchema", line=1)
    if "entry" in data:
        raise reader.error("this is a flex flow (it has 'entry'), not a DAG flow: it has no "
                           "nodes to read here", code="UnsupportedFlowType",
                           line=data.line_of("entry"),
                           hint="flow test, run create, eval and serve run flex flows.")
    if data.get("language") == "csharp":
        raise reader.error("C# flows are not supported", code="NotSupported",
                           line=data.line_of("language"))
    unknown = [k for k in data if k not in _TOP_LEVEL_KEYS]
    if unknown:
        raise reader.error(
            f"unknown top-level key {unknown[0]!r}", code="InvalidFlowSchema",
            line=data.line_of(unknown[0]),
            hint="Top-level keys are inputs, outputs, nodes, node_variants, environment, "
                 "environment_variables, additional_includes and metadata (name, description, tags, type).",
        )
    nodes_raw = data.get("nodes") or []
    if not isinstance(nodes_raw, list):
        raise reader.error("'nodes' must be a list", code="InvalidFlowSchema",
                           line=data.line_of("nodes"))
    item_lines = getattr(nodes_raw, "item_lines", [])
    nodes = tuple(
        reader.node(spec, item_lines[i] if i < len(item_lines) else None)
        for i, spec in enumerate(nodes_raw)
    )
    env = data.get("environment_variables") or {}
    env_line = data.line_of("environment_variables")
    env_file = None
    if isinstance(env, str):
        env_file = reader.path_field(env, what="environment_variables file", line=env_line,
                                     field="environment_variables")
        env_path = file.parent / env_file
        try:
            readable = env_path.is_file()
        except (OSError, ValueError):
            readable = False
        if not readable:
            raise reader.error(
                f"the environment_variables file '{env_file}' does not exist ({env_path})",
                code="FileNotFound", line=env_line, field="environment_variables",
                hint="Give a YAML file of variables relative to the flow folder, or a mapping.")
        env = load_yaml_file(env_path, what="the environment_variables file") or {}
    if not isinstance(env, dict):
        raise reader.error("'environment_variables' must be a mapping", code="InvalidFlowSchema",
                           line=getattr(env, "line", None) or env_line,
                           field="environment_variables")
    for key in env:
        if not isinstance(key, str):
            raise reader.error(f"environment variable name {_show(key)} must be a string",
                               code="InvalidFlowSchema", line=env.line_of(key),
                               field="environment_variables")
    includes = data.get("additional_includes") or []
    includes_line = data.line_of("additional_includes")
    if not isinstance(includes, list):
        raise reader.error("'additional_includes' must be a list of paths",
                           code="InvalidFlowSchema", line=includes_line,
                           field="additional_includes")
    include_lines = getattr(includes, "item_lines", [])
    for i, include in enumerate(includes):
        reader.path_field(include, what="additional include",
                          line=include_lines[i] if i < len(include_lines) else includes_line,
                          field="additional_includes")
    message_format = reader.str_field(data, "message_format", None) or "basic"
    flow_name = reader.str_field(data, "name", None) or file.parent.name
    flow_type = reader.str_field(data, "type", None)
    spec = FlowSpec(
        path=file,
        code_dir=file.parent,
        inputs=reader.inputs(data),
        outputs=reader.outputs(data),
        nodes=nodes,
        node_variants=reader.node_variants(data),
        environment_variables=plain(env),
        additional_includes=tuple(includes),
        name=flow_name,
        type=flow_type,
        message_format=message_format,
        raw=plain(data),
    )
    outside = find_outside_paths(spec, env_file=env_file, env_line=env_line,
                                 include_lines=tuple(include_lines))
    if outside:
        spec = replace(spec, outside_paths=outside)
        warn_outside_paths(spec)
    return spec


def _show(value: Any, limit: int = 60) -> str:
    """A value for an error message: repr, cut short (a 5,000-digit number or a huge mapping
    must not flood the terminal)."""
    try:
        text = repr(plain(value))
    except (ValueError, RecursionError):  # an int past Python's digit limit, a deep value
        text = f"<{type(value).__name__}>"
    return text if len(text) <= limit else f"{text[:limit - 3]}... ({len(text)} characters)"


_MAX_PATH = 1024


def _path_problem(value: Any) -> str | None:
    if not isinstance(value, str):
        return f"it is a {type(plain(value)).__name__}, not text"
    if not value.strip():
        return "it is empty"
    if "\0" in value:
        return "it contains a NUL character"
    if len(value) > _MAX_PATH:
        return f"it is {len(value)} characters long (at most {_MAX_PATH})"
    longest = max((len(part.encode("utf-8")) for part in value.replace("\\", "/").split("/")),
                  default=0)
    if longest > 255:
        return f"one of its parts is {longest} bytes long (at most 255)"
    return None


