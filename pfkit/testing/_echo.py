"""A deterministic in-process model for tests: it answers with what it was asked.

Chat replies are ``{"messages": [...], "params": {...}}`` as JSON (sorted keys, UTF-8 kept), where
``params`` is the request without ``messages`` and ``stream``; completions reply
``{"prompt": ..., "params": {...}}``. The golden fixtures under ``tests/flows`` were produced by
promptflow talking to an HTTP server giving the same answers, so comparing outputs compares the
exact requests both tools send.
"""

from __future__ import annotations

import json
from typing import Any

from ..providers import ChatResponse, CompletionResponse, Usage

ECHO_USAGE = Usage(prompt_tokens=1, completion_tokens=1, total_tokens=2)


def echo_chat_content(request: dict[str, Any]) -> str:
    params = {k: v for k, v in request.items() if k not in ("messages", "stream")}
    return json.dumps({"messages": request["messages"], "params": params},
                      ensure_ascii=False, sort_keys=True)


def echo_completion_text(request: dict[str, Any]) -> str:
    params = {k: v for k, v in request.items() if k not in ("prompt", "stream")}
    return json.dumps({"prompt": request["prompt"], "params": params},
                      ensure_ascii=False, sort_keys=True)


class EchoModel:
    """``ChatModel`` that echoes requests. ``api_style`` as for a real connection."""

    def __init__(self, api_style: str = "openai") -> None:
        self.api_style = api_style
        self.requests: list[dict[str, Any]] = []

    async def chat(self, request: dict[str, Any]) -> ChatResponse:
        self.requests.append(request)
        # The shape openai's client gives for ``choices[0].message.model_dump()``.
        message = {"content": echo_chat_content(request), "refusal": None, "role": "assistant",
                   "annotations": None, "audio": None, "function_call": None, "tool_calls": None}
        return ChatResponse(message=message, usage=ECHO_USAGE, model=request.get("model"))

    async def complete(self, request: dict[str, Any]) -> CompletionResponse:
        self.requests.append(request)
        return CompletionResponse(text=echo_completion_text(request), usage=ECHO_USAGE,
                                  model=request.get("model"))
