"""Reading a ``.prompty`` file: YAML front matter (model, inputs, outputs, sample) and the
role-marked Jinja2 body, every problem a :class:`FlowValidationError` naming the file and line."""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import FlowValidationError, Location

_REFERENCE = re.compile(r"^\$\{(env|file):(.*)\}$")
_TOP_KEYS = frozenset({"$schema", "name", "description", "version", "authors", "tags", "model",
                       "inputs", "outputs", "sample", "template"})
_MODEL_KEYS = frozenset({"api", "configuration", "parameters", "response"})
_CONFIG_TYPES = ("openai", "azure_openai", "local")
INPUT_TYPES = ("string", "int", "double", "float", "bool", "boolean", "list", "object", "array",
               "number", "integer", "chat_history")


@dataclass(frozen=True, slots=True)
class PromptyInput:
    name: str
    type: str
    default: Any
    has_default: bool


@dataclass(frozen=True, slots=True)
class PromptyFile:
    path: Path
    name: str
    description: str
    api: str                          # chat | completion
    configuration: dict[str, Any] = field(repr=False)  # ${env:...} resolved: may hold keys
    parameters: dict[str, Any] = field(default_factory=dict)
    response: str = "first"          # first | all
    inputs: dict[str, PromptyInput] = field(default_factory=dict)
    outputs: dict[str, Any] = field(default_factory=dict)
    sample: dict[str, Any] = field(default_factory=dict)
    body: str = ""
    body_line: int = 1                # the file line the body starts on
    secrets: tuple[str, ...] = field(default=(), repr=False)


def _error(path: Path, message: str, line: int | None, hint: str | None = None,
           code: str = "InvalidPrompty", field_name: str | None = None) -> FlowValidationError:
    return FlowValidationError(message, code=code, hint=hint,
                               location=Location(file=str(path), line=line, field=field_name))


def split_front_matter(text: str, path: Path) -> tuple[str, str, int]:
    """(front matter, body, the body's first line)."""
    lines = text.splitlines(keepends=True)
    if not lines or lines[0].strip() != "---":
        raise _error(path, "a .prompty file starts with a '---' line, then YAML front matter, "
                     "then '---' and the prompt", 1,
                     hint="Put the model and inputs between two '---' lines at the top.")
    for i in range(1, len(lines)):
        if lines[i].strip() == "---":
            return "".join(lines[1:i]), "".join(lines[i + 1:]), i + 2
    raise _error(path, "the front matter is not closed by a '---' line", 1,
                 hint="Add a line '---' after the YAML front matter.")


def _line(data: Any, key: str, offset: int) -> int | None:
    getter = getattr(data, "line_of", None)
    line = getter(key) if getter else None
    return line + offset if line else None


def resolve_env(value: Any, path: Path, line: int | None, secrets: list[str],
                key: str = "") -> Any:
    """``${env:VAR}`` anywhere in the configuration (nested too), as promptflow does."""
    if isinstance(value, dict):
        return {k: resolve_env(v, path, line, secrets, k) for k, v in value.items()}
    if isinstance(value, list):
        return [resolve_env(v, path, line, secrets, key) for v in value]
    if isinstance(value, str):
        match = _REFERENCE.match(value.strip())
        if match and match.group(1) == "env":
            name = match.group(2).strip()
            resolved = os.environ.get(name)
            if resolved is None:
                raise _error(path, f"{key or 'a value'} refers to ${{env:{name}}}, but the "
                             f"environment variable {name} is not set", line,
                             hint=f"Set {name} (or write the value in the file).",
                             code="EnvironmentVariableNotFound")
            if "key" in key.lower() or "secret" in key.lower() or "token" in key.lower():
                secrets.append(resolved)
            return resolved
    return value


def load_file_reference(value: Any, base: Path, path: Path, line: int | None) -> Any:
    """``${file:x.json}`` (a JSON object, a JSONL file's first line or a YAML mapping) relative
    to the file's folder; other values as they are."""
    if not isinstance(value, str):
        return value
    match = _REFERENCE.match(value.strip())
    if not match or match.group(1) != "file":
        return value
    target = (base / match.group(2).strip()).resolve()
    if not target.is_file():
        raise _error(path, f"{value} names {target}, which does not exist", line,
                     hint="Paths in ${file:...} are relative to the file's folder.",
                     code="FileNotFound")
    text = target.read_text(encoding="utf-8")
    try:
        if target.suffix == ".jsonl":
            first = next((ln for ln in text.splitlines() if ln.strip()), "{}")
            return json.loads(first)
        if target.suffix == ".json":
            return json.loads(text)
        from ..spec._yaml import load_yaml_text, plain

        return plain(load_yaml_text(text, str(target)))
    except ValueError as exc:
        raise _error(path, f"{value}: {target.name} is not valid JSON: {exc}", line,
                     code="InvalidSample") from None


def load_prompty_file(path: str | Path) -> PromptyFile:
    from ..spec._yaml import load_yaml_text, plain

    path = Path(path).expanduser().resolve()
    if not path.is_file():
        raise _error(path, "no such .prompty file", None, code="FlowFileNotFound",
                     hint="Check the path.")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise _error(path, "the file is not UTF-8 text", None) from None
    front, body, body_line = split_front_matter(text, path)
    try:
        data = load_yaml_text(front, str(path)) if front.strip() else {}
    except FlowValidationError as exc:  # its line counts from the front matter's first line
        line = exc.location.line + 1 if exc.location and exc.location.line else None
        raise _error(path, exc.message, line, hint=exc.hint, code=exc.code) from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise _error(path, "the front matter must be a YAML mapping", 2)
    off = 1  # front matter line 1 is file line 2
    unknown = [k for k in data if k not in _TOP_KEYS]
    if unknown:
        raise _error(path, f"unknown front-matter key {unknown[0]!r}", _line(data, unknown[0], off),
                     hint="Keys: name, description, model, inputs, outputs, sample.")
    secrets: list[str] = []
    model = data.get("model") or {}
    model_line = _line(data, "model", off)
    if not isinstance(model, dict):
        raise _error(path, "'model' must be a mapping", model_line, field_name="model")
    bad = [k for k in model if k not in _MODEL_KEYS]
    if bad:
        raise _error(path, f"unknown model key {bad[0]!r}", _line(model, bad[0], off),
                     hint="model: has api, configuration, parameters and response.",
                     field_name=f"model.{bad[0]}")
    api = model.get("api", "chat")
    if api not in ("chat", "completion"):
        raise _error(path, f"model.api must be chat or completion, got {api!r}",
                     _line(model, "api", off), field_name="model.api")
    configuration = model.get("configuration") or {}
    if not isinstance(configuration, dict):
        raise _error(path, "model.configuration must be a mapping",
                     _line(model, "configuration", off), field_name="model.configuration")
    conf_line = _line(model, "configuration", off)
    ctype = configuration.get("type")
    if ctype is not None and ctype not in _CONFIG_TYPES:
        raise _error(path, f"model.configuration.type {ctype!r} is not supported",
                     _line(configuration, "type", off) or conf_line,
                     hint="Use openai, azure_openai or local (pfkit's embedded model), or "
                          "name a pfkit connection with  connection: NAME.",
                     field_name="model.configuration.type")
    configuration = {k: resolve_env(v, path, _line(configuration, k, off) or conf_line,
                                    secrets, k)
                     for k, v in plain(configuration).items()}
    parameters = model.get("parameters") or {}
    if not isinstance(parameters, dict):
        raise _error(path, "model.parameters must be a mapping", _line(model, "parameters", off),
                     field_name="model.parameters")
    parameters = resolve_env(plain(parameters), path, _line(model, "parameters", off), secrets)
    response = model.get("response", "first")
    if response not in ("first", "all"):
        raise _error(path, f"model.response must be first or all, got {response!r}",
                     _line(model, "response", off), field_name="model.response")
    inputs = _inputs(data, path, off)
    outputs = data.get("outputs") or {}
    if not isinstance(outputs, dict):
        raise _error(path, "'outputs' must be a mapping of output names",
                     _line(data, "outputs", off), field_name="outputs")
    sample = load_file_reference(data.get("sample"), path.parent, path, _line(data, "sample", off))
    if sample is None:
        sample = {}
    if not isinstance(sample, dict):
        raise _error(path, "'sample' must be a mapping of input values (or ${file:...})",
                     _line(data, "sample", off), field_name="sample")
    from ..nodes import _templates

    try:
        _templates.compile_template(body, file=str(path))
    except Exception as exc:  # jinja2.TemplateSyntaxError
        lineno = getattr(exc, "lineno", None)
        raise _error(path, f"the prompt's Jinja2 is invalid: {getattr(exc, 'message', exc)}",
                     body_line + lineno - 1 if lineno else body_line, code="JinjaTemplateError",
                     hint="Fix the template syntax.") from None
    from .._secrets import register

    register(*secrets)
    return PromptyFile(path=path, name=str(data.get("name") or path.stem),
                       description=str(data.get("description") or ""), api=api,
                       configuration=configuration, parameters=parameters, response=response,
                       inputs=inputs, outputs=plain(outputs), sample=plain(sample), body=body,
                       body_line=body_line, secrets=tuple(secrets))


def _inputs(data: Any, path: Path, off: int) -> dict[str, PromptyInput]:
    raw = data.get("inputs") or {}
    if not isinstance(raw, dict):
        raise _error(path, "'inputs' must be a mapping of input names",
                     _line(data, "inputs", off), field_name="inputs")
    result: dict[str, PromptyInput] = {}
    for name, spec in raw.items():
        line = _line(raw, name, off)
        if not isinstance(name, str) or not name.isidentifier():
            raise _error(path, f"input name {name!r} is not a valid name", line,
                         field_name="inputs")
        if not isinstance(spec, dict):  # a bare value is the default (promptflow accepts it)
            result[name] = PromptyInput(name, _type_of(spec), spec, True)
            continue
        value_type = str(spec.get("type", "string"))
        if value_type not in INPUT_TYPES:
            raise _error(path, f"input '{name}' has type {value_type!r}, which is not a type",
                         _line(spec, "type", off) or line,
                         hint="Types: string, int, double, bool, list, object.",
                         field_name=f"inputs.{name}.type")
        has_default = "default" in spec
        result[name] = PromptyInput(name, _normal_type(value_type), spec.get("default"),
                                    has_default)
    return result


def _normal_type(value_type: str) -> str:
    return {"float": "double", "number": "double", "boolean": "bool", "array": "list",
            "integer": "int", "chat_history": "list"}.get(value_type, value_type)


def _type_of(value: Any) -> str:
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int):
        return "int"
    if isinstance(value, float):
        return "double"
    if isinstance(value, list):
        return "list"
    if isinstance(value, dict):
        return "object"
    return "string"
