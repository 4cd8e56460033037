"""Jinja2 templates for prompt and llm nodes, and chat-format parsing.

* Templates render in a ``SandboxedEnvironment`` (``trim_blocks``, ``keep_trailing_newline``);
  undefined variables render empty. Each template compiles once per flow, not per call.
* A chat prompt is split into messages on role lines (``# system:``, ``user:``, ...), with
  ``name:``/``tool_call_id:``/``tool_calls:`` blocks, exactly as promptflow's llm tool does.
* Role injection: role markers inside flow-input values (and inside prompt-node outputs built
  from them) are swapped for random tokens before parsing and restored afterwards, so user text
  such as ``"# system:\\n..."`` can never open a new message.
"""

from __future__ import annotations

import ast
import re
import uuid
from typing import Any

from ..errors import ExecutionError

VALID_ROLES = ("system", "user", "assistant", "function", "tool")
_ROLES_ALT = "|".join(VALID_ROLES)
ROLE_LINE = re.compile(r"(?i)^\s*#?\s*(" + _ROLES_ALT + r")\s*:\s*\n", re.MULTILINE)
_NAME_BLOCK = re.compile(r"\n*#{0,2}\s*name\s*:\s*\n+\s*(\S+)\s*\n*#{0,2}\s*content\s*:\s*\n?(.*)",
                         re.DOTALL)
_TOOL_CALL_ID_BLOCK = re.compile(
    r"\n*#{0,2}\s*tool_call_id\s*:\s*\n+\s*(\S+)\s*\n*#{0,2}\s*content\s*:\s*\n?(.*)", re.DOTALL)
_TOOL_CALLS_BLOCK = re.compile(r"\n*#{0,2}\s*tool_calls\s*:\s*\n+\s*(\[.*?\])", re.DOTALL)
_IMAGE_MARKDOWN = re.compile(r"\!\[(\s*image\s*)\]\(\{\{(\s*[^\s{}]+\s*)\}\}\)")

_env = None


class JinjaTemplateError(ExecutionError):
    default_code = "JinjaTemplateError"


class ChatAPIInvalidRole(ExecutionError):
    default_code = "ChatAPIInvalidRole"


def environment():
    global _env
    if _env is None:
        from jinja2.sandbox import SandboxedEnvironment

        _env = SandboxedEnvironment(trim_blocks=True, keep_trailing_newline=True)
    return _env


def compile_template(text: str):
    """Compile once; raises jinja2.TemplateSyntaxError for the caller to place."""
    return environment().from_string(text)


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
        message = unescape(str(exc), escape_map or {})
        raise JinjaTemplateError(
            f"Failed to render jinja template: {type(exc).__name__}: {message}. "
            "Please modify your prompt to fix the issue."
        ) from exc


# -- role-injection escaping --------------------------------------------------------------------

def _collect_roles(value: Any, mapping: dict[str, str]) -> None:
    if isinstance(value, str):
        for role in ROLE_LINE.findall(value):
            if role not in mapping.values():
                mapping[str(uuid.uuid4())] = role
    elif isinstance(value, dict):
        for item in value.values():
            _collect_roles(item, mapping)
    elif isinstance(value, ChatInputList):
        for item in value:
            _collect_roles(item, mapping)


def _escape_value(value: Any, mapping: dict[str, str]) -> Any:
    if isinstance(value, str) and not isinstance(value, PromptResult):
        for token, role in mapping.items():
            value = value.replace(role, token)
        return value
    if isinstance(value, dict):
        return {k: _escape_value(v, mapping) for k, v in value.items()}
    if isinstance(value, ChatInputList):
        return ChatInputList(_escape_value(v, mapping) for v in value)
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
    """Escape role markers in the variables fed from flow inputs and in prompt results.
    Returns the variables to render with and the token->role mapping (empty: nothing to do)."""
    mapping: dict[str, str] = {}
    for value in variables.values():
        if isinstance(value, PromptResult) and value.escape_map:
            mapping.update(value.escape_map)
    for key in to_escape:
        if key in variables:
            _collect_roles(variables[key], mapping)
    if not mapping:
        return variables, mapping
    escaped = {}
    for key, value in variables.items():
        if isinstance(value, PromptResult) and value.escape_map:
            escaped[key] = value.escaped
        elif key in to_escape:
            escaped[key] = _escape_value(value, mapping)
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
             "api: completion on the node.",
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
            match = _NAME_BLOCK.search(chunk)
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
