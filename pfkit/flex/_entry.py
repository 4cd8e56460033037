"""Importing a flex flow's entry (``module:function`` or ``module:Class``) and creating the class
instance with its init values, under the flow's folder and environment (the isolation gate)."""

from __future__ import annotations

import dataclasses
import importlib
import inspect
import sys
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from ..errors import FlowValidationError, Location, UserError
from ._spec import FlexParam, FlexSpec

MODEL_CONFIGS = ("OpenAIModelConfiguration", "AzureOpenAIModelConfiguration")


@dataclass(frozen=True, slots=True)
class Entry:
    func: Callable[..., Any]          # the function, or the instance's __call__
    name: str                         # promptflow's name in messages: qualname
    is_async: bool
    aggregate: Callable[..., Any] | None
    aggregate_param: str | None
    aggregate_async: bool
    params: dict[str, inspect.Parameter]
    accepts_kwargs: bool


def _where(spec: FlexSpec, field_name: str = "entry", line: int | None = None) -> Location:
    return Location(file=str(spec.path), line=line or spec.entry_line, field=field_name)


def _frames(exc: BaseException) -> str:
    import traceback

    frames = [f for f in traceback.extract_tb(exc.__traceback__) if "importlib" not in f.filename
              and "/pfkit/" not in f.filename.replace("\\", "/")]
    return "".join(traceback.format_list(frames[-3:])).rstrip()


def import_entry(spec: FlexSpec) -> Any:
    """The module attribute the entry names (run with the flow's context applied)."""
    module_name, _, attr = spec.entry.partition(":")
    importlib.invalidate_caches()
    stale = sys.modules.get(module_name)
    if stale is not None and not _from_folder(stale, spec):
        sys.modules.pop(module_name, None)  # another flow's (or the process's) module
    try:
        module = importlib.import_module(module_name)
    except SyntaxError as exc:
        raise FlowValidationError(
            f"Failed to load python module for {spec.entry}: syntax error in "
            f"{exc.filename}:{exc.lineno}: {exc.msg}", code="PythonParsingError",
            location=_where(spec), hint=f"Fix {exc.filename}:{exc.lineno}.") from None
    except ModuleNotFoundError as exc:
        missing = exc.name or module_name
        hint = (f"Create {module_name.replace('.', '/')}.py in {spec.code_dir}, or fix the entry."
                if missing.split(".")[0] == module_name.split(".")[0]
                else f"Install the package '{missing}' into this environment.")
        raise FlowValidationError(
            f"Failed to load python module for {spec.entry}: (ModuleNotFoundError) {exc}",
            code="PythonLoadError", location=_where(spec), hint=hint) from None
    except Exception as exc:
        raise FlowValidationError(
            f"Failed to load python module for {spec.entry}: ({type(exc).__name__}) {exc}",
            code="PythonLoadError", location=_where(spec),
            hint=f"The error was raised here:\n{_frames(exc)}") from exc
    target = getattr(module, attr, None)
    if target is None:
        names = sorted(n for n, v in vars(module).items()
                       if not n.startswith("_") and callable(v)
                       and getattr(v, "__module__", None) == module.__name__)
        raise FlowValidationError(
            f"Failed to load python function '{attr}' from file '{module_name}': it has no "
            f"'{attr}'", code="PythonLoadError", location=_where(spec),
            hint=f"Callables defined there: {', '.join(names) or 'none'}.")
    return target


def _from_folder(module: Any, spec: FlexSpec) -> bool:
    import os

    file = getattr(module, "__file__", None)
    root = str(spec.code_dir).rstrip(os.sep) + os.sep
    return isinstance(file, str) and os.path.abspath(file).startswith(root)


def _original(func: Any) -> Any:
    return getattr(func, "__original_function", func)


def _is_async(func: Any) -> bool:
    original = _original(func)
    return (inspect.iscoroutinefunction(original) or inspect.isasyncgenfunction(original)
            or inspect.iscoroutinefunction(func) or inspect.isasyncgenfunction(func))


def make_entry(spec: FlexSpec, target: Any, init: Mapping[str, Any], connections: Any) -> Entry:
    module_name, _, attr = spec.entry.partition(":")
    aggregate = None
    aggregate_param = None
    if inspect.isclass(target):
        if not any("__call__" in vars(k) for k in target.__mro__ if k is not object):
            raise FlowValidationError(
                f"Python class entry '{attr}' does not have __call__ method.",
                code="PythonLoadError", location=_where(spec),
                hint=f"Add  def __call__(self, ...)  to {attr}.")
        instance = create_instance(spec, target, init, connections)
        func = instance.__call__
        name = f"{target.__qualname__}.__call__"
        aggregate = getattr(instance, "__aggregate__", None)
        if aggregate is not None:
            params = list(inspect.signature(aggregate).parameters)
            if len(params) != 1:
                raise FlowValidationError(
                    "The __aggregate__ method should have only one parameter.",
                    code="InvalidAggregationFunction", location=_where(spec),
                    hint="Write  def __aggregate__(self, results: list) -> dict.")
            aggregate_param = params[0]
    elif callable(target) and (inspect.isfunction(target) or inspect.isfunction(_original(target))
                               or inspect.ismethod(target)):
        if init:
            raise UserError(f"init values {sorted(init)} were given, but the entry "
                            f"'{spec.entry}' is a function", code="InvalidInit",
                            location=_where(spec),
                            hint="init values are for class entries (module:Class); remove them.")
        func = target
        name = getattr(_original(target), "__qualname__", attr)
    else:
        raise FlowValidationError(
            f"Failed to load python function '{attr}' from file '{module_name}', got "
            f"{type(target).__name__}.", code="PythonLoadError", location=_where(spec),
            hint="The entry names a function or a class with __call__.")
    sig = inspect.signature(func)
    params = {k: p for k, p in sig.parameters.items()
              if p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL)}
    accepts_kwargs = any(p.kind is p.VAR_KEYWORD for p in sig.parameters.values())
    return Entry(func=func, name=name, is_async=_is_async(func), aggregate=aggregate,
                 aggregate_param=aggregate_param,
                 aggregate_async=aggregate is not None and _is_async(aggregate),
                 params=params, accepts_kwargs=accepts_kwargs)


def create_instance(spec: FlexSpec, cls: type, init: Mapping[str, Any], connections: Any) -> Any:
    """``cls(**init)``: values converted by the YAML's init types or the annotations;
    connection parameters get the named connection, model configurations their object."""
    from ..nodes._python import value_type_of
    from ..spec import parse_value_type

    given = dict(spec.sample_init) if not init else dict(init)
    sig = inspect.signature(cls.__init__)
    params = {k: p for i, (k, p) in enumerate(sig.parameters.items())
              if i > 0 and p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL)}
    accepts_kwargs = any(p.kind is p.VAR_KEYWORD for p in sig.parameters.values())
    unknown = [k for k in given if k not in params and not accepts_kwargs]
    if unknown:
        raise UserError(f"init value '{unknown[0]}' is not a parameter of {cls.__name__}.__init__",
                        code="InvalidInit", location=_where(spec, "init"),
                        hint=f"Its parameters: {', '.join(params) or 'none'}.")
    for name, declared in spec.init.items():
        if name not in given and declared.has_default and declared.default != "":
            given[name] = declared.default
    missing = [k for k, p in params.items() if p.default is p.empty and k not in given]
    if missing:
        raise UserError(f"{cls.__name__} needs init value(s) {missing}", code="InitValueMissing",
                        location=_where(spec, "init"),
                        hint="Give them with  --init " + " ".join(f"{m}=..." for m in missing)
                             + "  (or init: in a run file, or sample.init in the flow file).")
    resolved: dict[str, Any] = {}
    for key, value in given.items():
        param = params.get(key)
        annotation = param.annotation if param is not None else inspect.Parameter.empty
        declared: FlexParam | None = spec.init.get(key)
        anno_name = getattr(annotation, "__name__", "") or ""
        type_name = (declared.type if declared is not None and declared.type else None)
        if anno_name in MODEL_CONFIGS or type_name in MODEL_CONFIGS:
            resolved[key] = model_config(anno_name if anno_name in MODEL_CONFIGS else type_name,
                                         value, spec, key, connections)
            continue
        value_type = type_name or value_type_of(annotation, param.default if param else
                                                inspect.Parameter.empty)
        if value_type == "connection" or (type_name or "").endswith("Connection"):
            if isinstance(value, str):
                try:
                    resolved[key] = connections(value)
                except UserError as exc:
                    raise type(exc)(f"init value '{key}': {exc.message}", code=exc.code,
                                    hint=exc.hint, location=_where(spec, f"init.{key}")) from None
                continue
        if value_type in ("int", "double", "bool", "list", "object", "string") and \
                isinstance(value, str) and value_type != "string":
            try:
                value = parse_value_type(value_type, value)
            except (TypeError, ValueError):
                raise UserError(f"init value '{key}' is {value!r}, which is not of type "
                                f"{value_type}", code="InvalidInit",
                                location=_where(spec, f"init.{key}"),
                                hint=f"Give a {value_type}.") from None
        resolved[key] = value
    try:
        return cls(**resolved)
    except Exception as exc:
        from .._secrets import scrub

        shown = scrub(repr({k: v for k, v in given.items()}))
        raise UserError(
            f"Failed to initialize flow entry with '{shown}', ex:({type(exc).__name__}) "
            f"{scrub(str(exc))}", code="FlowEntryInitializationError",
            location=_where(spec, "init"),
            hint=f"The error was raised here:\n{_frames(exc)}") from exc


def model_config(class_name: str, value: Any, spec: FlexSpec, key: str,
                 connections: Any = None) -> Any:
    from ..prompty import AzureOpenAIModelConfiguration, OpenAIModelConfiguration

    cls = OpenAIModelConfiguration if class_name == "OpenAIModelConfiguration" \
        else AzureOpenAIModelConfiguration
    if isinstance(value, str):
        import json

        try:
            value = json.loads(value)
        except ValueError:
            value = {"connection": value}  # a connection's name
    if isinstance(value, dict):
        try:
            value = cls(**value)
        except TypeError as exc:
            raise UserError(f"init value '{key}' is not a {class_name}: {exc}",
                            code="InvalidModelConfigValueType",
                            location=_where(spec, f"init.{key}")) from None
    if not isinstance(value, cls):
        raise UserError(f"Model config value is not an instance of {class_name}, got "
                        f"{type(value).__name__}", code="InvalidModelConfigValueType",
                        location=_where(spec, f"init.{key}"))
    if value.connection and connections is not None:  # promptflow: filled from the connection
        try:
            conn = connections(value.connection)
        except UserError as exc:
            raise type(exc)(f"init value '{key}': {exc.message}", code=exc.code, hint=exc.hint,
                            location=_where(spec, f"init.{key}")) from None
        if isinstance(value, OpenAIModelConfiguration):
            filled = cls.from_connection(conn, model=value.model)
        else:
            filled = cls.from_connection(conn, azure_deployment=value.azure_deployment)
        filled.connection = value.connection  # prompty calls go through that connection's model
        value = filled
    return value


# --------------------------------------------------------------------------- outputs

def join_iterators(value: Any) -> Any:
    """promptflow's rule for a flex entry's return value: a generator is consumed and joined
    (``"".join(str(chunk))``); so are generator values of a dict or dataclass; a dataclass
    becomes the dict of its fields."""
    if isinstance(value, Iterator) and not isinstance(value, (str, bytes, dict, list)):
        return "".join(str(chunk) for chunk in value)
    if isinstance(value, dict):
        return {k: "".join(str(c) for c in v) if isinstance(v, Iterator) else v
                for k, v in value.items()}
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: join_iterators_field(getattr(value, f.name))
                for f in dataclasses.fields(value)}
    return value


def join_iterators_field(value: Any) -> Any:
    if isinstance(value, Iterator) and not isinstance(value, (str, bytes)):
        return "".join(str(chunk) for chunk in value)
    return value


async def ajoin(value: Any) -> Any:
    if hasattr(value, "__aiter__"):
        return "".join([str(chunk) async for chunk in value])
    return join_iterators(value)


class AttrDict(dict):
    """A line's output dict for ``__aggregate__``: keys also read as attributes."""

    def __getattr__(self, item: str) -> Any:
        try:
            return self[item]
        except KeyError:
            raise AttributeError(item) from None
