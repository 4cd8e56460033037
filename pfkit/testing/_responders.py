"""Who answers the test server's chat and completion requests.

A responder is a callable ``(kind, body) -> reply`` with ``kind`` ``"chat"`` or
``"completion"`` and ``body`` the parsed JSON request; it may be ``async``. A reply is a string
(the content), a dict with ``content`` and/or ``tool_calls`` (and optionally
``finish_reason``), a :class:`Reply`, a :class:`~pfkit.testing.Fault` (returned or raised), or
a list of those (one per choice when ``n`` > 1). Built in: :func:`echo_responder` (the default;
identical to :class:`~pfkit.testing.EchoModel`), :class:`ScriptedResponder` (a queue) and
:class:`RuleResponder` (regex -> reply, also from a rules file).
"""

from __future__ import annotations

import json
import re
import zlib
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from ._echo import echo_chat_content, echo_completion_text
from ._faults import Fault
from ._openai_api import last_user_text, prompt_text

Responder = Callable[[str, dict[str, Any]], Any]


@dataclass(frozen=True)
class Reply:
    """One answer: text ``content`` and/or OpenAI-shaped ``tool_calls``."""

    content: str | None = None
    tool_calls: tuple[dict[str, Any], ...] = ()
    finish_reason: str | None = None

    @property
    def text(self) -> str:
        return self.content or ""


def to_reply(value: Any) -> Reply:
    """Normalise one responder answer (not a list, not a fault) to a :class:`Reply`."""
    if isinstance(value, Reply):
        return value
    if value is None:
        return Reply(content="")
    if isinstance(value, str):
        return Reply(content=value)
    if isinstance(value, Mapping):
        calls = tuple(tool_call(spec) for spec in value.get("tool_calls") or ())
        content = value.get("content")
        return Reply(content=None if content is None and calls else str(content or ""),
                     tool_calls=calls, finish_reason=value.get("finish_reason"))
    raise TypeError(f"a responder returned {type(value).__name__}; expected str, dict or Reply")


def to_replies(answer: Any, n: int) -> list[Reply]:
    """One :class:`Reply` per choice: a list answer is cycled through, one answer repeated."""
    if isinstance(answer, list):
        if not answer:
            raise ValueError("empty list of replies")
        return [to_reply(answer[i % len(answer)]) for i in range(n)]
    reply = to_reply(answer)
    return [reply] * n


def tool_call(spec: Mapping[str, Any]) -> dict[str, Any]:
    """``{"name", "arguments"[, "id"]}`` or OpenAI's ``{"id", "type", "function": {...}}``."""
    function = spec.get("function", spec)
    arguments = function.get("arguments", {})
    if not isinstance(arguments, str):
        arguments = json.dumps(arguments, ensure_ascii=False)
    call_id = spec.get("id") or f"call_{zlib.crc32(repr(spec).encode()):08x}"
    return {"id": call_id, "type": "function",
            "function": {"name": function["name"], "arguments": arguments}}


def echo_responder(kind: str, body: dict[str, Any]) -> str:
    """The default: answer with the request itself, exactly as :class:`EchoModel` does."""
    return echo_chat_content(body) if kind == "chat" else echo_completion_text(body)


class ScriptedResponder:
    """Replies from a queue, in order: ``ScriptedResponder(["first", {"tool_calls": [...]},
    Fault.rate_limit(), "after the retry"])``.

    When the queue is empty it asks ``default`` (if given) or answers with a 500 whose message
    says the script ran out. ``add()`` appends more replies, also from another thread.
    """

    def __init__(self, replies: Iterable[Any] = (), *, default: Responder | None = None) -> None:
        self._replies: deque[Any] = deque(replies)
        self.default = default

    def add(self, *replies: Any) -> None:
        self._replies.extend(replies)

    @property
    def remaining(self) -> int:
        return len(self._replies)

    def __call__(self, kind: str, body: dict[str, Any]) -> Any:
        try:
            return self._replies.popleft()
        except IndexError:
            if self.default is not None:
                return self.default(kind, body)
            return Fault.error(500, "ScriptedResponder has no replies left", code="script_exhausted")


class RuleResponder:
    """The first rule whose regex matches (``re.search``) the last user message (chat) or the
    prompt (completion) gives the reply; otherwise ``default`` answers (echo by default).

    ``RuleResponder([(r"weather", "Sunny."), (r"(?i)^call", {"tool_calls": [...]})])``.
    A rule's reply is anything a responder may return, or a callable ``(kind, body)``.
    """

    def __init__(self, rules: Iterable[tuple[str | re.Pattern[str], Any]] = (), *,
                 default: Any = echo_responder) -> None:
        self.rules = [(re.compile(pattern), reply) for pattern, reply in rules]
        self.default = default

    @classmethod
    def from_config(cls, data: Any) -> RuleResponder:
        """Build from parsed JSON/YAML: a list of rules, or ``{"rules": [...], "default": ...}``.
        A rule is ``{"pattern": REGEX, "reply": TEXT_OR_DICT}`` or ``{"pattern", "fault":
        {"status": 503}}`` (any form :meth:`Fault.from_config` takes, e.g. ``{"cut": 2}``);
        without ``default`` unmatched requests are echoed."""
        if isinstance(data, list):
            data = {"rules": data}
        if not isinstance(data, Mapping):
            raise ValueError("rules must be a list of rules or a mapping with 'rules'")
        rules = [_rule_from_config(rule, i) for i, rule in enumerate(data.get("rules") or [])]
        default = _reply_from_config(data["default"]) if "default" in data else echo_responder
        return cls(rules, default=default)

    def __call__(self, kind: str, body: dict[str, Any]) -> Any:
        text = last_user_text(body) if kind == "chat" else prompt_text(body.get("prompt"))
        for pattern, reply in self.rules:
            if pattern.search(text):
                return reply(kind, body) if callable(reply) else reply
        return self.default(kind, body) if callable(self.default) else self.default


def _rule_from_config(rule: Any, index: int) -> tuple[str, Any]:
    if not isinstance(rule, Mapping) or "pattern" not in rule:
        raise ValueError(f"rule {index + 1} needs a 'pattern'")
    pattern = str(rule["pattern"])
    try:
        re.compile(pattern)
    except re.error as exc:
        raise ValueError(f"rule {index + 1}: bad pattern {pattern!r}: {exc}") from None
    if "fault" in rule:
        try:
            return pattern, Fault.from_config(rule["fault"])
        except ValueError as exc:
            raise ValueError(f"rule {index + 1}: {exc}") from None
    if "reply" not in rule:
        raise ValueError(f"rule {index + 1} needs a 'reply' or a 'fault'")
    return pattern, _reply_from_config(rule["reply"])


def _reply_from_config(reply: Any) -> Any:
    if isinstance(reply, Mapping) and "fault" in reply:
        return Fault.from_config(reply["fault"])
    return reply
