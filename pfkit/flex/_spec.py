"""Reading ``flow.flex.yaml``: every problem a :class:`FlowValidationError` naming file and line."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import FlowValidationError, Location

FLEX_FILE_NAMES = ("flow.flex.yaml", "flow.flex.yml")
_TOP_KEYS = frozenset({"$schema", "entry", "inputs", "outputs", "init", "sample", "environment",
                       "environment_variables", "additional_includes", "code", "name",
                       "display_name", "description", "tags", "language", "type"})
_ENTRY = re.compile(r"^[A-Za-z_][\w]*(\.[A-Za-z_][\w]*)*:[A-Za-z_][\w]*$")
_FILE_REF = re.compile(r"^\$\{file:(.*)\}$")
TYPES = ("string", "int", "double", "bool", "list", "object")
_TYPE_ALIASES = {"str": "string", "float": "double", "number": "double", "integer": "int",
                 "boolean": "bool", "dict": "object", "array": "list"}


@dataclass(frozen=True, slots=True)
class FlexParam:
    name: str
    type: str | None          # a value type, a connection / model-config class name, or None
    default: Any
    has_default: bool
    line: int | None = None


@dataclass(frozen=True, slots=True)
class FlexSpec:
    path: Path                # the YAML file
    code_dir: Path            # where the entry's module is imported from
    entry: str
    entry_line: int | None
    inputs: dict[str, FlexParam]
    outputs: dict[str, Any]
    init: dict[str, FlexParam]
    sample_inputs: dict[str, Any]
    sample_init: dict[str, Any]
    environment_variables: dict[str, Any]
    additional_includes: tuple[str, ...]
    name: str
    raw: dict[str, Any] = field(default_factory=dict, compare=False)
    text: str = ""


def is_flex_file(path: Path) -> bool:
    """A YAML file with a top-level ``entry:`` key (cheap: no YAML parse)."""
    if path.name in FLEX_FILE_NAMES:
        return True
    if path.suffix not in (".yaml", ".yml"):
        return False  # (a flow.dag.yaml with 'entry:' is a flex flow too: a run's snapshot)
    try:
        with open(path, encoding="utf-8", errors="replace") as fh:
            head = fh.read(65536)
    except OSError:
        return False
    return re.search(r"(?m)^entry\s*:", head) is not None


def find_flex_file(path: Path) -> Path | None:
    """``path`` as a flex flow file: the YAML itself, or a folder's flow.flex.yaml (a folder that
    holds a flow.dag.yaml is a DAG flow, as in promptflow)."""
    try:
        if path.is_dir():
            for name in ("flow.dag.yaml", "flow.dag.yml"):
                if (path / name).is_file():
                    # a run snapshot of a flex flow holds its YAML as flow.dag.yaml
                    return path / name if is_flex_file(path / name) else None
            for name in FLEX_FILE_NAMES:
                if (path / name).is_file():
                    return path / name
            return None
        if path.is_file() and is_flex_file(path):
            return path
    except OSError:
        return None
    return None


def _error(file: Path, message: str, line: int | None, *, code: str = "InvalidFlexFlow",
           field_name: str | None = None, hint: str | None = None) -> FlowValidationError:
    return FlowValidationError(message, code=code, hint=hint,
                               location=Location(file=str(file), line=line, field=field_name))


def _params(data: Any, key: str, file: Path) -> dict[str, FlexParam]:
    raw = data.get(key) or {}
    if not isinstance(raw, dict):
        raise _error(file, f"'{key}' must be a mapping of names to {{type, default}}",
                     data.line_of(key), field_name=key)
    result: dict[str, FlexParam] = {}
    for name, spec in raw.items():
        line = raw.line_of(name) if hasattr(raw, "line_of") else None
        if not isinstance(name, str) or not name.isidentifier():
            raise _error(file, f"{key} name {name!r} is not a valid Python name", line,
                         field_name=key)
        if spec is None:
            spec = {}
        if not isinstance(spec, dict):
            raise _error(file, f"{key}.{name} must be a mapping with 'type' (and 'default')",
                         line, field_name=f"{key}.{name}",
                         hint=f"Write  {name}: {{type: string}}.")
        value_type = spec.get("type")
        if value_type is not None:
            value_type = _TYPE_ALIASES.get(str(value_type), str(value_type))
            if value_type not in TYPES and not value_type[:1].isupper():
                raise _error(file, f"{key}.{name} has type {spec.get('type')!r}, which is not a "
                             "flow type", spec.line_of("type") if hasattr(spec, "line_of")
                             else line, field_name=f"{key}.{name}.type",
                             hint="Types: " + ", ".join(TYPES) + ", or a connection / model "
                                  "configuration class name.")
        result[name] = FlexParam(name, value_type, spec.get("default"), "default" in spec, line)
    return result


def _file_value(value: Any, base: Path, file: Path, line: int | None) -> Any:
    if not isinstance(value, str):
        return value
    match = _FILE_REF.match(value.strip())
    if not match:
        return value
    from ..prompty._file import load_file_reference

    return load_file_reference(value, base, file, line)


def load_flex_spec(path: Path) -> FlexSpec:
    from ..spec._yaml import load_yaml_file, plain

    file = path.resolve()
    text = file.read_text(encoding="utf-8")
    data = load_yaml_file(file)
    if data is None or not isinstance(data, dict):
        raise _error(file, "the flow file must be a YAML mapping with an 'entry' key", 1)
    unknown = [k for k in data if k not in _TOP_KEYS]
    if unknown:
        raise _error(file, f"unknown top-level key {unknown[0]!r}", data.line_of(unknown[0]),
                     hint="A flex flow has entry, inputs, outputs, init, sample, "
                          "environment_variables, additional_includes and code.")
    entry = data.get("entry")
    entry_line = data.line_of("entry")
    if not entry:
        raise _error(file, "the flex flow has no 'entry'", 1, field_name="entry",
                     hint="Add  entry: module:function  (or module:Class).")
    if not isinstance(entry, str) or not _ENTRY.match(entry.strip()):
        raise _error(file, f"Invalid entry {entry!r}. The entry should be in the format of "
                     "'<module>:<function>' or '<module>:<Class>'", entry_line,
                     code="InvalidFlexFlowEntry", field_name="entry",
                     hint="For example  entry: my_flow:run  or  entry: pkg.mod:MyFlow.")
    if data.get("language") not in (None, "python"):
        raise _error(file, f"language {data.get('language')!r} is not supported",
                     data.line_of("language"), code="NotSupported", field_name="language")
    code = data.get("code")
    code_dir = file.parent
    if code is not None:
        if not isinstance(code, str) or not (file.parent / code).is_dir():
            raise _error(file, f"code folder {code!r} does not exist", data.line_of("code"),
                         field_name="code", hint="'code' is a folder relative to the flow file.")
        code_dir = (file.parent / code).resolve()
    sample = data.get("sample") or {}
    sample_line = data.line_of("sample")
    sample = _file_value(sample, file.parent, file, sample_line)
    if not isinstance(sample, dict):
        raise _error(file, "'sample' must be a mapping with 'inputs' (and 'init')", sample_line,
                     field_name="sample")
    sample_inputs = _file_value(sample.get("inputs") or {}, file.parent, file, sample_line)
    sample_init = _file_value(sample.get("init") or {}, file.parent, file, sample_line)
    for what, value in (("sample.inputs", sample_inputs), ("sample.init", sample_init)):
        if not isinstance(value, dict):
            raise _error(file, f"'{what}' must be a mapping", sample_line, field_name=what)
    env = data.get("environment_variables") or {}
    if isinstance(env, str):
        env_path = file.parent / env
        if not env_path.is_file():
            raise _error(file, f"the environment_variables file '{env}' does not exist",
                         data.line_of("environment_variables"), code="FileNotFound",
                         field_name="environment_variables")
        env = load_yaml_file(env_path, what="the environment_variables file") or {}
    if not isinstance(env, dict):
        raise _error(file, "'environment_variables' must be a mapping",
                     data.line_of("environment_variables"), field_name="environment_variables")
    includes = data.get("additional_includes") or []
    if not isinstance(includes, list) or not all(isinstance(i, str) for i in includes):
        raise _error(file, "'additional_includes' must be a list of paths",
                     data.line_of("additional_includes"), field_name="additional_includes")
    outputs = data.get("outputs") or {}
    if not isinstance(outputs, dict):
        raise _error(file, "'outputs' must be a mapping", data.line_of("outputs"),
                     field_name="outputs")
    return FlexSpec(
        path=file, code_dir=code_dir, entry=entry.strip(), entry_line=entry_line,
        inputs=_params(data, "inputs", file), outputs=plain(outputs),
        init=_params(data, "init", file), sample_inputs=plain(sample_inputs),
        sample_init=plain(sample_init), environment_variables=plain(env),
        additional_includes=tuple(includes), name=str(data.get("name") or file.parent.name),
        raw=plain(data), text=text)
