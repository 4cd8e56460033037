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

from ..providers import ChatResponse, CompletionResponse, EmbeddingResponse, Usage

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
        self.identity = {"provider": "echo"}
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

    async def chat_stream(self, request: dict[str, Any]):
        self.requests.append(request)
        text = echo_chat_content(request)
        for i in range(0, len(text), 16):
            yield text[i:i + 16]

    async def embed(self, request: dict[str, Any]) -> EmbeddingResponse:
        self.requests.append(request)
        inputs = request["input"] if isinstance(request["input"], list) else [request["input"]]
        return EmbeddingResponse([hash_embedding(str(text)) for text in inputs], ECHO_USAGE,
                                 request.get("model"))


def hash_embedding(text: str, dimensions: int = 8) -> list[float]:
    """A deterministic unit vector derived from the text (no model involved), any dimension."""
    import hashlib
    import math

    data = b""
    block = 0
    while len(data) < dimensions:
        data += hashlib.sha256(f"{block}:{text}".encode() if block else text.encode()).digest()
        block += 1
    raw = [(data[i] - 127.5) / 127.5 for i in range(dimensions)]
    norm = math.sqrt(sum(v * v for v in raw)) or 1.0
    return [round(v / norm, 6) for v in raw]
