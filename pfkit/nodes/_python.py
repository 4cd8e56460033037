"""Python nodes: load the script once, find its one tool, describe its parameters."""

from __future__ import annotations

import enum
import importlib.util
import inspect
import sys
import traceback
import types
import typing
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import FlowValidationError, Location
from ._tool import is_tool, is_tool_provider_class

PF_MAIN_MODULE = "__pf_main__"


@dataclass(frozen=True, slots=True)
class Param:
    """A tool parameter: the value type promptflow derives from its annotation or default."""

    name: str
    value_type: str  # int, double, bool, string, list, object, connection, prompt_template, ...
    has_default: bool
    annotation: Any = None


@dataclass(frozen=True, slots=True)
class LoadedTool:
    func: Callable[..., Any]  # bound method for ToolProvider tools
    params: dict[str, Param]
    accepts_kwargs: bool
    init_params: dict[str, Param]
    provider_class: type | None
    is_async: bool
    is_async_gen: bool
    module: types.ModuleType


def value_type_of(annotation: Any, default: Any) -> str:
    """promptflow's rule: the annotation (``Optional[X]`` is X; a union of several is object); no
    annotation but a default -> the default's type; enums are strings; unknown -> object."""
    from ..connections._types import is_connection_type

    anno = annotation
    if typing.get_origin(anno) is typing.Union or type(anno).__name__ == "UnionType":
        args = [a for a in typing.get_args(anno) if a is not type(None)]
        if len(args) == 1:
            anno = args[0]
        elif args and all(is_connection_type(a) for a in args):
            return "connection"
        else:
            return "object"
    if anno is inspect.Parameter.empty and default is not inspect.Parameter.empty:
        anno = type(default)
    if isinstance(anno, type) and issubclass(anno, enum.Enum):
        return "string"
    if is_connection_type(anno):
        return "connection"
    if anno is bool:
        return "bool"
    if anno is int:
        return "int"
    if anno is float:
        return "double"
    if anno is str:
        return "string"
    if anno is list:
        return "list"
    name = getattr(anno, "__name__", None)
    if name in ("PromptTemplate", "Secret", "FilePath", "Image"):
        return {"PromptTemplate": "prompt_template", "Secret": "string",
                "FilePath": "string", "Image": "image"}[name]
    return "object"


def describe_params(func: Callable, skip_self: bool = False) -> tuple[dict[str, Param], bool]:
    sig = inspect.signature(func)
    params: dict[str, Param] = {}
    accepts_kwargs = False
    for i, (name, p) in enumerate(sig.parameters.items()):
        if skip_self and i == 0:
            continue
        if p.kind is p.VAR_KEYWORD:
            accepts_kwargs = True
            continue
        if p.kind is p.VAR_POSITIONAL:
            continue
        params[name] = Param(name, value_type_of(p.annotation, p.default),
                             p.default is not p.empty, p.annotation)
    return params, accepts_kwargs


def _user_frames(tb: types.TracebackType | None) -> str:
    frames = [f for f in traceback.extract_tb(tb) if "importlib" not in f.filename]
    return "".join(traceback.format_list(frames[-3:])).rstrip()


def load_script(path: Path, *, flow_file: str, node: str, field: str = "source.path",
                line: int | None = None) -> types.ModuleType:
    """Execute a tool script as module ``__pf_main__`` (``__file__`` absolute), like promptflow.

    The module sits in ``sys.modules`` while it executes (so dataclasses and pickling in it work)
    and the previous entry is restored afterwards."""
    path = path.resolve()
    spec = importlib.util.spec_from_file_location(PF_MAIN_MODULE, path)
    if spec is None or spec.loader is None:
        raise FlowValidationError(f"cannot load '{path.name}' as Python", code="PythonLoadError",
                                  location=Location(file=flow_file, line=line, node=node, field=field))
    module = importlib.util.module_from_spec(spec)
    previous = sys.modules.get(PF_MAIN_MODULE)
    sys.modules[PF_MAIN_MODULE] = module
    try:
        spec.loader.exec_module(module)
    except SyntaxError as exc:
        raise FlowValidationError(
            f"syntax error in {path.name} line {exc.lineno}: {exc.msg}", code="PythonParsingError",
            location=Location(file=flow_file, line=line, node=node, field=field),
            hint=f"Fix {path}:{exc.lineno}.",
        ) from None
    except Exception as exc:
        hint = "Install the missing package into this environment." if isinstance(
            exc, ImportError) else f"The error was raised here:\n{_user_frames(exc.__traceback__)}"
        raise FlowValidationError(
            f"importing {path.name} failed: ({type(exc).__name__}) {exc}", code="PythonLoadError",
            location=Location(file=flow_file, line=line, node=node, field=field), hint=hint,
        ) from exc
    finally:
        if previous is None:
            sys.modules.pop(PF_MAIN_MODULE, None)
        else:
            sys.modules[PF_MAIN_MODULE] = previous
    return module


def collect_tools(module: types.ModuleType) -> list[tuple[Callable, type | None]]:
    """Functions marked @tool defined in the module itself, and @tool methods of ToolProvider
    subclasses defined in it (imported ones do not count, as in promptflow)."""
    found: list[tuple[Callable, type | None]] = []
    for _, obj in inspect.getmembers(module):
        if is_tool(obj) and getattr(obj, "__module__", None) == module.__name__:
            found.append((obj, None))
        elif is_tool_provider_class(obj) and obj.__module__ == module.__name__:
            for _, method in inspect.getmembers(obj):
                if is_tool(method):
                    found.append((method, obj))
    return found


def load_python_tool(path: Path, *, flow_file: str, node: str, line: int | None) -> LoadedTool:
    module = load_script(path, flow_file=flow_file, node=node, line=line)
    tools = collect_tools(module)
    where = Location(file=flow_file, line=line, node=node, field="source.path")
    if not tools:
        raise FlowValidationError(
            f"{path.name} defines no tool", code="NoToolDefined", location=where,
            hint="Decorate exactly one function with @tool (from promptflow.core import tool).",
        )
    if len(tools) > 1:
        names = ", ".join(sorted(t[0].__qualname__ for t in tools))
        raise FlowValidationError(
            f"{path.name} defines {len(tools)} tools ({names}); a python node needs exactly one",
            code="MultipleToolsDefined", location=where,
            hint="Keep @tool on one function; move the others to a helper module without @tool.",
        )
    func, provider = tools[0]
    original = getattr(func, "__original_function", func)  # promptflow's traced wrapper
    params, accepts_kwargs = describe_params(func, skip_self=provider is not None)
    init_params: dict[str, Param] = {}
    if provider is not None:
        init_params, _ = describe_params(provider.__init__, skip_self=True)
    return LoadedTool(
        func=func,
        params=params,
        accepts_kwargs=accepts_kwargs,
        init_params=init_params,
        provider_class=provider,
        is_async=inspect.iscoroutinefunction(func) or inspect.iscoroutinefunction(original),
        is_async_gen=inspect.isasyncgenfunction(func) or inspect.isasyncgenfunction(original),
        module=module,
    )
