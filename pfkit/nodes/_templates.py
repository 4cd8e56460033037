"""Jinja2 templates for prompt and llm nodes, and chat-format parsing.

* Templates render in a ``SandboxedEnvironment`` (``trim_blocks``, ``keep_trailing_newline``);
  undefined variables render empty. Each template compiles once per flow, not per call.
* A chat prompt is split into messages on role lines (``# system:``, ``user:``, ...), with
  ``name:``/``tool_call_id:``/``tool_calls:`` blocks, exactly as promptflow's llm tool does.
* Role injection: role markers in untrusted text (flow inputs, chat history, python and llm
  node outputs, at any depth of dicts and lists) are swapped for random tokens before parsing
  and restored afterwards, so text such as ``"# system:\\n..."`` can never open a new message.
  A role marker at the end of a value is escaped too (the template's newline would complete
  its line). Prompt-node outputs keep their roles (they are the author's template) and carry
  the escaping of what they rendered. A role line made of two untrusted values side by side
  ("...\nsystem" + ":\nevil") is escaped too; one that splits the role word itself across
  values ("sys" + "tem:") is not detected. promptflow 1.18.5 escapes only flow-input strings (and dicts of them);
  a node with ``role_escaping: promptflow`` (a key promptflow ignores), or named in
  ``PFKIT_ROLE_ESCAPING_PROMPTFLOW`` (comma-separated, ``*`` for all), gets exactly that rule.
* A render is bounded: loop iterations and calls count against a budget
  (``PFKIT_TEMPLATE_MAX_STEPS``, default 1,000,000), and text or lists built by ``*``, ``**``,
  ``~``, padding and joining (``center``, ``indent``, ``join``, ``replace``, ``format``,
  ``str.format``, ...) stay under ``PFKIT_TEMPLATE_MAX_CHARS`` (default 10,000,000), so a
  runaway template stops with an error naming the node, the template file and the line.
"""

from __future__ import annotations

import ast
import contextvars
import os
import re
import uuid
from typing import Any

from ..errors import ExecutionError, Location, UserError

VALID_ROLES = ("system", "user", "assistant", "function", "tool")
_ROLES_ALT = "|".join(VALID_ROLES)
ROLE_LINE = re.compile(r"(?i)^\s*#?\s*(" + _ROLES_ALT + r")\s*:\s*\n", re.MULTILINE)
# A role marker at the very end of an untrusted value ("...\nsystem:"): the template's own
# newline after it ("{{q}}\n") would complete the role line. promptflow misses these; pfkit
# escapes them too. (A bare role word is left alone: "user" is common data, e.g. a message's
# role compared in the template.)
_ROLE_AT_END = re.compile(r"(?i)^[ \t]*#?[ \t]*(" + _ROLES_ALT + r")\s*:\s*\Z", re.MULTILINE)
# Two untrusted values side by side ("...\nsystem" then ":\nevil", e.g. items of a list in a loop)
# can form a role line: when some value starts with a colon, bare role words that end values
# are escaped too.
_BARE_ROLE_AT_END = re.compile(r"(?i)^[ \t]*#?[ \t]*(" + _ROLES_ALT + r")\s*\Z", re.MULTILINE)
_COLON_AT_START = re.compile(r"\A\s*:")
_NAME_BLOCK = re.compile(r"\n*#{0,2}\s*name\s*:\s*\n+\s*(\S+)\s*\n*#{0,2}\s*content\s*:\s*\n?(.*)",
                         re.DOTALL)
_TOOL_CALL_ID_BLOCK = re.compile(
    r"\n*#{0,2}\s*tool_call_id\s*:\s*\n+\s*(\S+)\s*\n*#{0,2}\s*content\s*:\s*\n?(.*)", re.DOTALL)
_TOOL_CALLS_BLOCK = re.compile(r"\n*#{0,2}\s*tool_calls\s*:\s*\n+\s*(\[.*?\])", re.DOTALL)
_IMAGE_MARKDOWN = re.compile(r"\!\[(\s*image\s*)\]\(\{\{(\s*[^\s{}]+\s*)\}\}\)")

_env = None

DEFAULT_MAX_STEPS = 1_000_000
DEFAULT_MAX_CHARS = 10_000_000
MAX_STEPS_VAR = "PFKIT_TEMPLATE_MAX_STEPS"
MAX_CHARS_VAR = "PFKIT_TEMPLATE_MAX_CHARS"
ROLE_ESCAPING_VAR = "PFKIT_ROLE_ESCAPING_PROMPTFLOW"
_MAX_DEPTH = 200  # how deep escaping walks into nested dicts and lists


class JinjaTemplateError(ExecutionError):
    default_code = "JinjaTemplateError"


class TemplateBudgetExceeded(JinjaTemplateError):
    default_code = "TemplateBudgetExceeded"


class ChatAPIInvalidRole(ExecutionError):
    default_code = "ChatAPIInvalidRole"


class _Budget:
    __slots__ = ("steps", "max_steps", "max_chars")

    def __init__(self, max_steps: int, max_chars: int) -> None:
        self.steps = 0
        self.max_steps = max_steps
        self.max_chars = max_chars


_budget: contextvars.ContextVar[_Budget | None] = contextvars.ContextVar(
    "pfkit_template_budget", default=None)


def _limit(var: str, default: int) -> int:
    text = os.environ.get(var)
    if text is None or not text.strip():
        return default
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value <= 0:
        raise UserError(f"{var} must be a positive whole number, got {text!r}",
                        code="InvalidEnvironment", location=Location(field=var),
                        hint=f"Unset it for the default ({default:,}), or give e.g. {default}.")
    return value


def _step() -> None:
    budget = _budget.get()
    if budget is None:
        return
    budget.steps += 1
    if budget.steps > budget.max_steps:
        raise TemplateBudgetExceeded(
            f"ran more than {budget.max_steps:,} loop iterations and calls and was stopped (a "
            "runaway loop?)",
            hint=f"Loop over less data, or raise the budget with {MAX_STEPS_VAR}=N.")


def _counted(iterable: Any):
    """What ``{% for %}`` loops iterate over: the iterable, one budget step per item."""
    budget = _budget.get()
    if budget is None:
        yield from iterable
        return
    for item in iterable:
        budget.steps += 1
        if budget.steps > budget.max_steps:
            _step()  # raises
        yield item


def _too_big(size: int) -> None:
    budget = _budget.get()
    limit = budget.max_chars if budget is not None else _limit(MAX_CHARS_VAR, DEFAULT_MAX_CHARS)
    if size > limit:
        raise TemplateBudgetExceeded(
            f"built a value of {size:,} characters or items (at most {limit:,}) "
            "and was stopped",
            hint=f"Build smaller text, or raise the limit with {MAX_CHARS_VAR}=N.")


def _sized(value: Any) -> Any:
    """What ``a ~ b`` yields: the joined text, checked against the size limit."""
    if isinstance(value, (str, list, tuple)):
        _too_big(len(value))
    return value


_PERCENT_WIDTH = re.compile(r"%[-+ #0]*(\d+)")
_FORMAT_WIDTH = re.compile(r"\{[^{}]*:[^{}\d]*(\d+)[^{}]*\}")
_PADDING_METHODS = frozenset({"center", "ljust", "rjust", "zfill"})


def _check_widths(fmt: Any, args: tuple[Any, ...], pattern: re.Pattern[str]) -> None:
    if isinstance(fmt, str):
        for width in pattern.findall(fmt):
            if len(width) > 12:
                _too_big(10 ** len(width))
            _too_big(int(width))
    for arg in args:
        if isinstance(arg, int) and not isinstance(arg, bool):
            _too_big(abs(arg))


def _check_str_method(method: Any, args: tuple[Any, ...]) -> None:
    """``'x'.center(10**10)``, ``sep.join(items)``, ``'{:>9999999999}'.format(1)``: refused
    before the text is built when it would pass the size limit."""
    # jinja2 hands str.format out wrapped (functools.wraps: the bound method is __wrapped__)
    text = getattr(getattr(method, "__wrapped__", method), "__self__", None)
    if not isinstance(text, str):
        return
    name = getattr(method, "__name__", "")
    if name in _PADDING_METHODS and args and isinstance(args[0], int):
        _too_big(args[0])
    elif name == "join" and args and hasattr(args[0], "__len__"):
        _too_big(len(text) * len(args[0]))
    elif name in ("format", "format_map"):
        _check_widths(text, (), _FORMAT_WIDTH)
    elif name == "expandtabs":
        size = args[0] if args and isinstance(args[0], int) else 8
        _too_big(len(text) + text.count("\t") * size)


def _guarded_filters(filters: dict[str, Any]) -> dict[str, Any]:
    """The filters that can build text far larger than their input, with a size check first.
    (``join`` and ``replace`` take the eval context as their first argument.)"""
    import functools

    def guard(func: Any, check: Any) -> Any:
        @functools.wraps(func)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            args = check(*args, **kwargs) or args
            return func(*args, **kwargs)
        return wrapper

    def center(value: Any, width: Any = 80, *rest: Any, **kw: Any) -> None:
        if isinstance(width, int):
            _too_big(width)

    def indent(value: Any, width: Any = 4, *rest: Any, **kw: Any) -> None:
        text = str(value)
        step = width if isinstance(width, int) else len(str(width))
        _too_big(len(text) + (text.count("\n") + 1) * max(step, 0))

    def join(ctx: Any, value: Any, d: Any = "", *rest: Any, **kw: Any) -> Any:
        items = value if hasattr(value, "__len__") else list(value)
        _too_big(len(str(d)) * len(items))
        return (ctx, items, d, *rest) if items is not value else None

    def replace(ctx: Any, value: Any, old: Any = "", new: Any = "", count: Any = None,
                *rest: Any, **kw: Any) -> None:
        text, old, new = str(value), str(old), str(new)
        times = text.count(old) if old else len(text) + 1
        if isinstance(count, int) and count >= 0:
            times = min(times, count)
        _too_big(len(text) + times * max(0, len(new) - len(old)))

    def format_(value: Any, *args: Any, **kw: Any) -> None:
        _check_widths(value, args, _PERCENT_WIDTH)

    checks = {"center": center, "indent": indent, "join": join, "replace": replace,
              "format": format_}
    return {name: guard(func, checks[name]) if name in checks else func
            for name, func in filters.items()}


def _build_environment(trim_blocks: bool = True, keep_trailing_newline: bool = True):
    from jinja2 import nodes
    from jinja2.environment import Template
    from jinja2.sandbox import SandboxedEnvironment
    from jinja2.visitor import NodeTransformer

    def helper(name: str, arg: Any, lineno: int) -> Any:
        call = nodes.Call(nodes.Name(name, "load"), [arg], [], None, None)
        call.set_lineno(lineno)
        return call

    class Instrument(NodeTransformer):
        """Every ``{% for %}`` iterates through the budget; every ``~`` is size-checked."""

        def visit_For(self, node: Any) -> Any:  # noqa: N802 - jinja's visitor naming
            node = self.generic_visit(node)
            node.iter = helper("__pfkit_counted", node.iter, node.lineno)
            return node

        def visit_Concat(self, node: Any) -> Any:  # noqa: N802
            node = self.generic_visit(node)
            return helper("__pfkit_sized", node, node.lineno)

    class BoundedTemplate(Template):
        def render(self, *args: Any, **kwargs: Any) -> str:
            token = _budget.set(_Budget(_limit(MAX_STEPS_VAR, DEFAULT_MAX_STEPS),
                                        _limit(MAX_CHARS_VAR, DEFAULT_MAX_CHARS)))
            try:
                return super().render(*args, **kwargs)
            finally:
                _budget.reset(token)

    class BoundedSandbox(SandboxedEnvironment):
        intercepted_binops = frozenset({"*", "**"})

        def call(__self, __context: Any, __obj: Any, *args: Any, **kwargs: Any) -> Any:  # noqa: N805
            _step()
            _check_str_method(__obj, args)
            return super().call(__context, __obj, *args, **kwargs)

        def call_binop(self, context: Any, operator: str, left: Any, right: Any) -> Any:
            if operator == "*":
                for seq, times in ((left, right), (right, left)):
                    if isinstance(seq, (str, list, tuple)) and isinstance(times, int):
                        _too_big(len(seq) * max(times, 0))
            elif (operator == "**" and isinstance(left, int) and isinstance(right, int)
                  and abs(left) > 1 and right > 0):
                _too_big(int(right * abs(left).bit_length() * 0.302) + 1)  # ~ decimal digits
            return super().call_binop(context, operator, left, right)

        def _generate(self, source: Any, name: Any, filename: Any, defer_init: bool = False) -> str:
            return super()._generate(Instrument().visit(source), name, filename,
                                     defer_init=defer_init)

    # optimized=False: no constant folding at compile time, where a filter such as
    # '%9999999999s'|format('x') would run outside any render's budget.
    env = BoundedSandbox(trim_blocks=trim_blocks, keep_trailing_newline=keep_trailing_newline,
                         optimized=False)
    env.filters = _guarded_filters(env.filters)
    env.template_class = BoundedTemplate
    env.globals["__pfkit_counted"] = _counted
    env.globals["__pfkit_sized"] = _sized
    return env


_other_envs: dict[tuple[bool, bool], Any] = {}


def environment(trim_blocks: bool = True, keep_trailing_newline: bool = True):
    """The bounded sandbox (promptflow's options by default; others for promptflow-tools'
    ``render_jinja_template(trim_blocks=..., keep_trailing_newline=...)``)."""
    global _env
    if trim_blocks and keep_trailing_newline:
        if _env is None:
            _env = _build_environment()
        return _env
    key = (trim_blocks, keep_trailing_newline)
    if key not in _other_envs:
        _other_envs[key] = _build_environment(trim_blocks, keep_trailing_newline)
    return _other_envs[key]


def compile_template(text: str, *, file: str | None = None, node: str | None = None,
                     trim_blocks: bool = True, keep_trailing_newline: bool = True):
    """Compile once; raises jinja2.TemplateSyntaxError for the caller to place. ``file`` and
    ``node`` are remembered, so that a failure while rendering can name them."""
    template = environment(trim_blocks, keep_trailing_newline).from_string(text)
    template.pfkit_file = file
    template.pfkit_node = node
    return template


def template_variables(text: str) -> set[str]:
    from jinja2 import meta

    return meta.find_undeclared_variables(environment().parse(text))


def preprocess_images(text: str) -> str:
    """``![image]({{img}})`` -> the placeholder on a line of its own."""
    for match in _IMAGE_MARKDOWN.findall(text):
        text = text.replace(f"![{match[0]}]({{{{{match[1]}}}}})", f"\n{{{{{match[1]}}}}}\n")
    return text


class ChatInputList(list):
    """A list that renders in a template as its items joined by newlines."""

    def __str__(self) -> str:
        return "\n".join(map(str, self))


def as_chat_lists(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: as_chat_lists(v) for k, v in value.items()}
    if isinstance(value, list):
        return ChatInputList(as_chat_lists(v) for v in value)
    return value


class PromptResult(str):
    """A prompt node's output: the rendered text, plus the escaped rendering and the token->role
    mapping when flow-input text contained role markers."""

    __slots__ = ("escaped", "escape_map")

    def __new__(cls, text: str, escaped: str = "", escape_map: dict[str, str] | None = None):
        obj = super().__new__(cls, text)
        obj.escaped = escaped
        obj.escape_map = escape_map or {}
        return obj


def render(template, variables: dict[str, Any], *, escape_map: dict[str, str] | None = None) -> str:
    try:
        return template.render(**variables)
    except Exception as exc:
        raise template_error(template, exc, escape_map or {}) from exc


def _template_line(exc: BaseException) -> int | None:
    """The template line Jinja2 put in the traceback (its frames are named ``<template>``)."""
    line = getattr(exc, "lineno", None)
    tb = exc.__traceback__
    while tb is not None:
        if tb.tb_frame.f_code.co_filename == "<template>":
            line = tb.tb_lineno
        tb = tb.tb_next
    return line


def template_error(template: Any, exc: BaseException, escape_map: dict[str, str]
                   ) -> JinjaTemplateError:
    """A render failure, with promptflow's message, placed at the node, the template file and
    the template line."""
    from ..observe import current_node

    file = getattr(template, "pfkit_file", None)
    node = getattr(template, "pfkit_node", None) or current_node.get((None, None))[0]
    line = _template_line(exc)
    where = " ".join(part for part in (
        f"line {line} of" if line else None, file and os.path.basename(file) or "the template",
        f"(node '{node}')" if node else None) if part)
    if isinstance(exc, TemplateBudgetExceeded):
        return TemplateBudgetExceeded(
            f"Template {where} {exc.message}", hint=exc.hint,
            location=Location(file=file, line=line, node=node))
    if isinstance(exc, UserError):
        exc.location = Location(file=file, line=line, node=node, field=exc.location.field)
        return exc  # type: ignore[return-value]
    message = unescape(str(exc), escape_map)
    kind = type(exc).__name__
    hint = f"Fix {where}."
    if kind == "SecurityError":
        hint += " The template runs in a sandbox: it may not reach Python internals."
    return JinjaTemplateError(
        f"Failed to render jinja template: {kind}: {message}. "
        "Please modify your prompt to fix the issue.",
        hint=hint, location=Location(file=file, line=line, node=node),
    )


# -- role-injection escaping --------------------------------------------------------------------

class EscapeSet(frozenset):
    """The names of a node's template variables whose values are untrusted text. ``promptflow``
    selects promptflow 1.18.5's narrower rule (flow-input strings and dicts, no lists)."""

    promptflow: bool

    def __new__(cls, names: Any = (), *, promptflow: bool = False):
        obj = super().__new__(cls, names)
        obj.promptflow = promptflow
        return obj


ROLE_ESCAPING_MODES = ("all", "promptflow")


def role_escaping_mode(node: Any) -> str:
    """``promptflow`` when the node opts out (``role_escaping: promptflow`` in the flow file, or
    named in PFKIT_ROLE_ESCAPING_PROMPTFLOW), else ``all``."""
    names = {n.strip() for n in os.environ.get(ROLE_ESCAPING_VAR, "").split(",") if n.strip()}
    if "*" in names or node.name in names:
        return "promptflow"
    return getattr(node, "role_escaping", None) or "all"


def escaped_input_names(node: Any) -> EscapeSet:
    """Which of a node's inputs are untrusted text: every input that is not a literal of the flow
    file (flow inputs, chat history, other nodes' outputs; a prompt node's output keeps its
    roles by its own type). Under the promptflow rule: only inputs bound to flow inputs."""
    from ..spec import FlowInputRef, Literal

    if role_escaping_mode(node) == "promptflow":
        return EscapeSet((k for k, v in node.inputs.items() if isinstance(v, FlowInputRef)),
                         promptflow=True)
    return EscapeSet(k for k, v in node.inputs.items() if not isinstance(v, Literal))


def _too_deep() -> JinjaTemplateError:
    return JinjaTemplateError(
        f"a template input is nested more than {_MAX_DEPTH} levels deep; its text cannot be "
        "checked for chat role markers", code="InputTooDeep",
        hint="Flatten the value before it reaches the template.")


class _Scan:
    """What collecting found besides complete markers (deep mode only)."""

    __slots__ = ("bare_roles", "colon_start")

    def __init__(self) -> None:
        self.bare_roles: list[str] = []
        self.colon_start = False


def _add_roles(roles: list[str], mapping: dict[str, str]) -> None:
    for role in roles:
        if role not in mapping.values():
            mapping[str(uuid.uuid4())] = role


def _collect_roles(value: Any, mapping: dict[str, str], deep: bool, depth: int = 0,
                   scan: _Scan | None = None) -> None:
    if isinstance(value, str):
        if isinstance(value, PromptResult):
            return
        _add_roles(ROLE_LINE.findall(value), mapping)
        if deep:
            _add_roles(_ROLE_AT_END.findall(value), mapping)
            if scan is not None:
                scan.bare_roles += _BARE_ROLE_AT_END.findall(value)
                scan.colon_start = scan.colon_start or _COLON_AT_START.match(value) is not None
        return
    if depth > _MAX_DEPTH:
        raise _too_deep()
    if isinstance(value, dict):
        for key, item in value.items():
            if deep:
                _collect_roles(key, mapping, deep, depth + 1, scan)
            _collect_roles(item, mapping, deep, depth + 1, scan)
    elif isinstance(value, ChatInputList) or (deep and isinstance(value, (list, tuple, set,
                                                                          frozenset))):
        for item in value:
            _collect_roles(item, mapping, deep, depth + 1, scan)


def _escape_value(value: Any, mapping: dict[str, str], deep: bool, depth: int = 0) -> Any:
    if isinstance(value, str):
        if isinstance(value, PromptResult):
            return value
        for token, role in mapping.items():
            value = value.replace(role, token)
        return value
    if depth > _MAX_DEPTH:
        raise _too_deep()
    if isinstance(value, dict):
        return {(_escape_value(k, mapping, deep, depth + 1) if deep else k):
                _escape_value(v, mapping, deep, depth + 1) for k, v in value.items()}
    if isinstance(value, ChatInputList):
        return ChatInputList(_escape_value(v, mapping, deep, depth + 1) for v in value)
    if deep and isinstance(value, (list, tuple, set, frozenset)):
        items = [_escape_value(v, mapping, deep, depth + 1) for v in value]
        return type(value)(items) if type(value) in (list, tuple, set, frozenset) else items
    return value


def unescape(value: Any, mapping: dict[str, str]) -> Any:
    if not mapping:
        return value
    if isinstance(value, str):
        for token, role in mapping.items():
            value = value.replace(token, role)
        return value
    if isinstance(value, list):
        for part in value:
            if isinstance(part, dict) and "text" in part:
                for token, role in mapping.items():
                    part["text"] = part["text"].replace(token, role)
    return value


def escape_variables(variables: dict[str, Any], to_escape: frozenset[str]
                     ) -> tuple[dict[str, Any], dict[str, str]]:
    """Escape role markers in the untrusted variables (``to_escape``) and use the escaped
    rendering of prompt results. Returns the variables to render with and the token->role
    mapping (empty: nothing to do)."""
    deep = not getattr(to_escape, "promptflow", False)
    mapping: dict[str, str] = {}
    for value in variables.values():
        if isinstance(value, PromptResult) and value.escape_map:
            mapping.update(value.escape_map)
    scan = _Scan() if deep else None
    for key in to_escape:
        if key in variables:
            _collect_roles(variables[key], mapping, deep, scan=scan)
    if scan is not None and scan.colon_start:
        _add_roles(scan.bare_roles, mapping)
    if not mapping:
        return variables, mapping
    escaped = {}
    for key, value in variables.items():
        if isinstance(value, PromptResult) and value.escape_map:
            escaped[key] = value.escaped
        elif key in to_escape:
            escaped[key] = _escape_value(value, mapping, deep)
        else:
            escaped[key] = value
    return escaped, mapping


def render_prompt(template, variables: dict[str, Any], to_escape: frozenset[str]) -> PromptResult:
    """A prompt node: the plain rendering, carrying an escaped rendering when needed."""
    text = render(template, variables)
    escaped_vars, mapping = escape_variables(variables, to_escape)
    if not mapping:
        return PromptResult(text)
    return PromptResult(text, render(template, escaped_vars, escape_map=mapping), mapping)


# -- chat parsing -----------------------------------------------------------------------------

def _content(text: str, images: dict[str, Any] | None = None, detail: str = "auto") -> Any:
    """A message's content: the stripped text, or text and image parts when a line of it is an
    image placeholder."""
    text = text.strip()
    if not images or not any(token in text for token in images):
        return text
    parts: list[dict[str, Any]] = []
    for line in text.split("\n"):
        key = line.strip()
        if key in images:
            parts.append({"type": "image_url",
                          "image_url": {"url": images[key].url, "detail": detail}})
        elif key:
            parts.append({"type": "text", "text": line})
    return parts


def _invalid_role(role: str, mapping: dict[str, str]) -> ChatAPIInvalidRole:
    valid = ",".join(f"'{r}:\\n'" for r in VALID_ROLES)
    return ChatAPIInvalidRole(
        "The Chat API requires a specific format for prompt definition, and the prompt should "
        f"include separate lines as role delimiters: {valid}. Current parsed role "
        f"'{unescape(role, mapping)}' does not meet the requirement. If you intend to use the "
        "Completion API, please select the appropriate API type and deployment name. If you do "
        "intend to use the Chat API, please refer to the guideline at "
        "https://aka.ms/pfdoc/chat-prompt or view the samples in our gallery that contain 'Chat' "
        "in the name.",
        hint="Start the template with a role line such as '# system:' or '# user:', or set "
             "api: completion on the node. Role lines inside flow inputs and node outputs are "
             "escaped; a node whose inputs build messages on purpose can set  role_escaping: "
             "promptflow  (promptflow's rule: only flow inputs are escaped).",
    )


def parse_chat(text: str, mapping: dict[str, str] | None = None,
               images: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    """Split rendered chat text into OpenAI messages (promptflow's ``parse_chat`` rules)."""
    mapping = mapping or {}
    chunks = ROLE_LINE.split(text)
    messages: list[dict[str, Any]] = []
    for chunk in chunks:
        last = messages[-1] if messages else None
        if last is not None and last["role"] == "tool" and "content" not in last:
            match = _TOOL_CALL_ID_BLOCK.search(chunk)
            if match is None:
                raise ChatAPIInvalidRole(
                    "Failed to parse tool role prompt. Please make sure the prompt follows the "
                    "format: 'tool_call_id:\\ntool_call_id\\ncontent:\\ntool_content'.",
                    code="ChatAPIToolRoleInvalidFormat",
                )
            last["tool_call_id"] = match.group(1)
            last["content"] = _content(match.group(2), images)
            continue
        if last is not None and last["role"] == "assistant" and "content" not in last:
            match = _TOOL_CALLS_BLOCK.search(chunk)
            if match is not None:
                try:
                    last["tool_calls"] = ast.literal_eval(match.group(1))
                    continue
                except (ValueError, SyntaxError):
                    pass
        if last is not None and "content" not in last and "tool_calls" not in last:
            # the regex can only match where "name" occurs (a plain substring test first: the
            # search tries every position of what may be a long message)
            match = _NAME_BLOCK.search(chunk) if "name" in chunk else None
            if match is None:
                if last["role"] == "function":
                    raise ChatAPIInvalidRole(
                        "Failed to parse function role prompt. Please make sure the prompt "
                        "follows the format: 'name:\\nfunction_name\\ncontent:\\nfunction_content'.",
                        code="ChatAPIFunctionRoleInvalidFormat",
                    )
                last["content"] = _content(chunk, images)
            else:
                last["name"] = match.group(1)
                last["content"] = _content(match.group(2), images)
            continue
        if chunk.strip() == "":
            continue
        role = chunk.strip().lower()
        if role not in VALID_ROLES:
            raise _invalid_role(role, mapping)
        messages.append({"role": role})
    return messages


def build_messages(template, variables: dict[str, Any], to_escape: frozenset[str]
                   ) -> list[dict[str, Any]]:
    """Render a chat template and parse it into messages, with role-injection escaping and
    image inputs turned into ``image_url`` parts."""
    from ._images import find_images

    escaped_vars, mapping = escape_variables(variables, to_escape)
    text = render(template, escaped_vars, escape_map=mapping)
    messages = parse_chat(text, mapping, find_images(variables) or None)
    if mapping:
        for message in messages:
            for key, value in message.items():
                message[key] = unescape(value, mapping)
    return messages
