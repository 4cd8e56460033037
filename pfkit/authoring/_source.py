"""A tool script from a Python function: its source, the imports and helpers it uses, under
promptflow's ``@tool`` decorator, so that the saved file runs on its own (in pfkit and in
promptflow)."""

from __future__ import annotations

import ast
import builtins
import inspect
import re
import textwrap
import types
from collections.abc import Callable
from typing import Any

from ..errors import UserError

_TOOL_IMPORT = "from promptflow.core import tool"
_LITERALS = (int, float, str, bytes, bool, type(None))


def _is_literal(value: Any, depth: int = 0) -> bool:
    if depth > 4:
        return False
    if isinstance(value, _LITERALS):
        return not (isinstance(value, float) and value != value)  # NaN has no literal
    if isinstance(value, (tuple, list, frozenset, set)):
        return len(value) <= 1000 and all(_is_literal(v, depth + 1) for v in value)
    if isinstance(value, dict):
        return len(value) <= 1000 and all(_is_literal(k, depth + 1) and _is_literal(v, depth + 1)
                                          for k, v in value.items())
    return False


_SECRET_NAME = re.compile(r"(API_?KEY|ACCESS_?KEY|SECRET|TOKEN|PASSWORD|PASSWD|CREDENTIAL)",
                          re.IGNORECASE)


def _looks_secret(name: str, value: Any) -> bool:
    """A constant a script must not carry: a value registered as a connection secret, or text
    under a name like API_KEY / TOKEN / PASSWORD, or an OpenAI-style key."""
    from .. import _secrets

    texts = [value] if isinstance(value, str) else [v for v in _flatten(value) if isinstance(v, str)]
    for text in texts:
        if _secrets.scrub(text) != text or text.startswith(("sk-", "sk_")) and len(text) > 20:
            return True
    return bool(_SECRET_NAME.search(name)) and any(t.strip() for t in texts)


def _flatten(value: Any) -> list[Any]:
    if isinstance(value, dict):
        return [x for k, v in value.items() for x in (*_flatten(k), *_flatten(v))]
    if isinstance(value, (list, tuple, set, frozenset)):
        return [x for v in value for x in _flatten(v)]
    return [value]


def _function_source(fn: Callable, what: str) -> tuple[str, ast.FunctionDef]:
    try:
        text = textwrap.dedent(inspect.getsource(fn))
    except (OSError, TypeError) as exc:
        raise UserError(f"the source of {what} cannot be read ({exc})", code="ToolSourceNotFound",
                        hint="Define the function in a file or a notebook cell (not with exec or "
                             "in the interactive prompt), or write the script yourself and use "
                             "flow.python_file(...).") from None
    tree = ast.parse(text)
    defs = [n for n in tree.body if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))]
    if not defs or defs[0].name != fn.__name__:
        raise UserError(f"{what} is not a plain 'def' function", code="ToolSourceNotFound",
                        hint="Tools are module-level functions written with def (not lambdas).")
    return text, defs[0]


def _without_decorators(text: str, node: ast.FunctionDef) -> str:
    lines = text.splitlines()
    return "\n".join(lines[node.lineno - 1:node.end_lineno]).rstrip() + "\n"


def _free_names(node: ast.AST) -> list[str]:
    """Names a function reads that it does not bind itself (parameters, assignments, imports,
    nested defs), in order of first use; decorators are not looked at."""
    bound: set[str] = set()
    used: list[str] = []

    def visit(n: ast.AST) -> None:
        if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
            args = n.args
            for a in [*args.posonlyargs, *args.args, *args.kwonlyargs,
                      *([args.vararg] if args.vararg else []),
                      *([args.kwarg] if args.kwarg else [])]:
                bound.add(a.arg)
                if a.annotation is not None:
                    visit(a.annotation)
            for d in [*args.defaults, *[d for d in args.kw_defaults if d is not None]]:
                visit(d)
            if not isinstance(n, ast.Lambda):
                bound.add(n.name)
                if n.returns is not None:
                    visit(n.returns)
                for stmt in n.body:
                    visit(stmt)
            else:
                visit(n.body)
            return
        if isinstance(n, ast.Name):
            if isinstance(n.ctx, ast.Load):
                if n.id not in used:
                    used.append(n.id)
            else:
                bound.add(n.id)
            return
        if isinstance(n, (ast.Import, ast.ImportFrom)):
            for alias in n.names:
                bound.add((alias.asname or alias.name).split(".")[0])
            return
        if isinstance(n, ast.ClassDef):
            bound.add(n.name)
        if isinstance(n, ast.ExceptHandler) and n.name:
            bound.add(n.name)
        for child in ast.iter_child_nodes(n):
            visit(child)

    if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
        node = type(node)(**{**{f: getattr(node, f) for f in node._fields}, "decorator_list": []})
    visit(node)
    return [name for name in used if name not in bound]


def _pfkit_name(value: Any) -> str | None:
    """promptflow's name for what pfkit offers to tool scripts (``tool``, ``log_metric`` ...)."""
    from ..nodes import _tool as pf_tool

    for name in ("tool", "log_metric", "ToolProvider", "trace"):
        if getattr(pf_tool, name, None) is value:
            return name
    return None


class _Script:
    def __init__(self, tool: Callable) -> None:
        self.tool = tool
        self.imports: set[str] = set()
        self.constants: dict[str, str] = {}
        self.helpers: list[str] = []
        self.seen: set[int] = set()
        self.rewritten: set[str] = set()  # pfkit.X written as X (imported from promptflow.core)

    def add_function(self, fn: Callable, *, is_tool: bool) -> str:
        what = f"tool '{fn.__name__}'" if is_tool else (
            f"function '{fn.__name__}' (used by tool '{self.tool.__name__}')")
        if isinstance(fn, types.FunctionType) and fn.__closure__:
            free = ", ".join(fn.__code__.co_freevars)
            raise UserError(f"{what} uses variables of the function it is defined in ({free})",
                            code="ToolNotSelfContained",
                            hint="Define it at the top level of a cell or module, or pass those "
                                 "values as node inputs.")
        text, node = _function_source(fn, what)
        text, node = self.promptflow_names(text, node, fn)
        body = _without_decorators(text, node)
        for name in _free_names(node):
            self.resolve(name, fn)
        return body

    def promptflow_names(self, text: str, node: ast.FunctionDef,
                         fn: Callable) -> tuple[str, ast.FunctionDef]:
        """``pfkit.log_metric(...)`` -> ``log_metric(...)`` imported from promptflow.core, so
        the script runs where only promptflow is installed."""
        import pfkit

        scope = getattr(fn, "__globals__", {})
        spans = []
        for item in ast.walk(node):
            if (isinstance(item, ast.Attribute) and isinstance(item.value, ast.Name)
                    and scope.get(item.value.id) is pfkit
                    and item.attr in ("tool", "log_metric", "ToolProvider", "trace")
                    and item.lineno == item.end_lineno and item not in node.decorator_list):
                spans.append((item.lineno, item.col_offset, item.end_col_offset, item.attr))
        if not spans:
            return text, node
        lines = text.splitlines(keepends=True)
        for lineno, start, end, attr in sorted(spans, reverse=True):
            line = lines[lineno - 1].encode("utf-8")
            lines[lineno - 1] = (line[:start] + attr.encode() + line[end:]).decode("utf-8")
            self.imports.add(f"from promptflow.core import {attr}")
            self.rewritten.add(attr)
        text = "".join(lines)
        tree = ast.parse(text)
        return text, next(n for n in tree.body if isinstance(n, (ast.FunctionDef,
                                                                 ast.AsyncFunctionDef)))

    def resolve(self, name: str, fn: Callable) -> None:
        scope = getattr(fn, "__globals__", {})
        if name in self.rewritten and scope.get(name) is None:
            return
        if name not in scope:
            if hasattr(builtins, name):
                return
            raise UserError(f"tool '{self.tool.__name__}' uses '{name}', which is not defined",
                            code="ToolNotSelfContained",
                            hint="Import or define it before the function (at the top level).")
        value = scope[name]
        promptflow_name = _pfkit_name(value)
        if promptflow_name:
            self.imports.add(f"from promptflow.core import {promptflow_name}"
                             + (f" as {name}" if name != promptflow_name else ""))
            return
        if isinstance(value, types.ModuleType):
            if value.__name__ == "pfkit" or value.__name__.startswith("pfkit."):
                self.imports.add(f"import {value.__name__}" if value.__name__ == name
                                 else f"import {value.__name__} as {name}")
                return
            self.imports.add(f"import {value.__name__}" if value.__name__ == name
                             else f"import {value.__name__} as {name}")
            return
        module = getattr(value, "__module__", None)
        home = getattr(fn, "__module__", None)
        if inspect.isfunction(value) and module in (home, "__main__"):
            if id(value) not in self.seen:
                self.seen.add(id(value))
                self.helpers.append(self.add_function(value, is_tool=False))
            return
        if (inspect.isclass(value) or inspect.isfunction(value) or inspect.isbuiltin(value)) \
                and module not in (None, home, "__main__") and getattr(value, "__qualname__", "") \
                and "." not in value.__qualname__ and "<" not in value.__qualname__:
            real = value.__qualname__
            self.imports.add(f"from {module} import {real}" + (f" as {name}" if name != real else ""))
            return
        if _is_literal(value):
            if _looks_secret(name, value):
                raise UserError(
                    f"tool '{self.tool.__name__}' uses '{name}', which looks like a secret; it "
                    "would be written into the tool's script", code="SecretInToolScript",
                    hint="Keep secrets out of flow folders: put it in a connection "
                         "(pfkit connection create) and pass the connection as an input, or "
                         "read it from an environment variable inside the function.")
            text = repr(value)
            try:
                if ast.literal_eval(text) != value:
                    raise ValueError
            except (ValueError, SyntaxError):
                pass
            else:
                self.constants[name] = text
                return
        kind = "class" if inspect.isclass(value) else type(value).__name__
        raise UserError(
            f"tool '{self.tool.__name__}' uses '{name}' (a {kind} defined in the notebook or "
            "script), which cannot be written into the tool's script", code="ToolNotSelfContained",
            hint="Move it into a module the script can import, define it inside the function, or "
                 "pass it as a node input.")

    def render(self, tool_body: str) -> str:
        names = sorted({"tool"} | {i.rsplit(" ", 1)[1] for i in self.imports
                                   if i.startswith("from promptflow.core import ")
                                   and " as " not in i})
        parts = [f"from promptflow.core import {', '.join(names)}"]
        imports = sorted(i for i in self.imports if not (
            i.startswith("from promptflow.core import ") and " as " not in i))
        plain = [i for i in imports if i.startswith("import ")]
        froms = [i for i in imports if i.startswith("from ")]
        parts.extend(plain + froms)
        text = "\n".join(parts) + "\n"
        if self.constants:
            text += "\n" + "".join(f"{k} = {v}\n" for k, v in sorted(self.constants.items()))
        for helper in self.helpers:
            text += "\n\n" + helper
        text += "\n\n@tool\n" + tool_body
        return text


def tool_script(fn: Callable) -> str:
    """The text of a script whose one ``@tool`` is ``fn``."""
    if not callable(fn) or not inspect.isfunction(fn):
        raise UserError(f"{fn!r} is not a function", code="InvalidTool",
                        hint="Pass a function written with def (decorated with @pfkit.tool or "
                             "not).")
    if fn.__name__ == "<lambda>":
        raise UserError("a lambda cannot be a tool", code="InvalidTool",
                        hint="Write the tool with def so that its source can be saved.")
    script = _Script(fn)
    body = script.add_function(fn, is_tool=True)
    return script.render(body)
