"""LLM nodes: typed parameters, template -> request, request -> node output.

The parameter tables and request rules reproduce promptflow-tools' ``OpenAI``/``AzureOpenAI``
``chat`` and ``completion`` tools, so a flow sends the same request through pfkit.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..errors import ExecutionError
from ..providers._base import Usage
from ..providers._observed import observed
from ..providers._usage import current_usage, record_response
from ..spec import parse_value_type
from ._templates import as_chat_lists, build_messages, render

_REQUIRED = object()

# name -> (value type, default). Order matters only for readability.
_CHAT_COMMON = {
    "temperature": ("double", 1.0),
    "top_p": ("double", 1.0),
    "stream": ("bool", False),
    "stop": ("list", None),
    "max_tokens": ("int", None),
    "presence_penalty": ("double", None),
    "frequency_penalty": ("double", None),
    "logit_bias": ("object", {}),
    "user": ("string", ""),
    "function_call": ("object", None),
    "functions": ("list", None),
    "tool_choice": ("object", None),
    "tools": ("list", None),
    "response_format": ("object", None),
    "seed": ("int", None),
    # pfkit's addition (promptflow-tools has neither): asked for, the node's output becomes
    # {"content": ..., "logprobs": [...]} (see _with_logprobs)
    "logprobs": ("bool", None),
    "top_logprobs": ("int", None),
}
_COMPLETION_COMMON = {
    "suffix": ("string", None),
    "max_tokens": ("int", 16),
    "temperature": ("double", 1.0),
    "top_p": ("double", 1.0),
    "n": ("int", 1),
    "stream": ("bool", False),
    "logprobs": ("int", None),
    "echo": ("bool", False),
    "stop": ("list", None),
    "presence_penalty": ("double", None),
    "frequency_penalty": ("double", None),
    "best_of": ("int", 1),
    "logit_bias": ("object", {}),
    "user": ("string", ""),
}
PARAMETERS: dict[tuple[str, str], dict[str, tuple[str, Any]]] = {
    ("openai", "chat"): {"model": ("string", ""), **_CHAT_COMMON},
    ("azure_openai", "chat"): {"deployment_name": ("string", _REQUIRED), "n": ("int", 1),
                               **_CHAT_COMMON},
    ("openai", "completion"): {"model": ("string", "text-davinci-003"), **_COMPLETION_COMMON},
    ("azure_openai", "completion"): {"deployment_name": ("string", _REQUIRED),
                                     **_COMPLETION_COMMON},
}


class LLMParameterError(ExecutionError):
    default_code = "LLMParameterError"


def parameter_table(api_style: str, api: str) -> dict[str, tuple[str, Any]]:
    return PARAMETERS[(api_style if api_style == "azure_openai" else "openai", api)]


def convert_literal(table: dict[str, tuple[str, Any]], name: str, value: Any) -> Any:
    """Literal params are converted by the tool's parameter type, as promptflow does."""
    return parse_value_type(table[name][0], value)


def _to_bool(value: Any) -> bool:
    return str(value).lower() == "true"


@dataclass(slots=True)
class LLMCall:
    """Everything an llm node needs per call, prepared once at bind time."""

    model: Any  # ChatModel
    api: str
    api_style: str
    template: Any  # compiled jinja template
    table: dict[str, tuple[str, Any]]
    to_escape: frozenset[str]

    def __post_init__(self) -> None:
        self.model = observed(self.model)  # every call reported to observers, once

    def split(self, kwargs: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
        params: dict[str, Any] = {}
        variables: dict[str, Any] = {}
        for key, value in kwargs.items():
            (params if key in self.table else variables)[key] = value
        for key, (_, default) in self.table.items():
            if key not in params:
                if default is _REQUIRED:
                    raise LLMParameterError(f"the llm node needs the input '{key}'")
                params[key] = default
        return params, variables

    def chat_request(self, params: dict[str, Any], messages: list[dict]) -> dict[str, Any]:
        azure = self.api_style == "azure_openai"
        request: dict[str, Any] = {
            "model": params["deployment_name"] if azure else params["model"],
            "messages": messages,
            "temperature": params["temperature"],
            "top_p": params["top_p"],
        }
        if azure:
            request["n"] = params["n"]
        request["stream"] = _to_bool(params["stream"])
        if params["tools"]:
            request["tools"] = params["tools"]
            tool_choice = params["tool_choice"]
            request["tool_choice"] = "auto" if (azure and tool_choice is None) else tool_choice
        elif params["functions"]:
            request["functions"] = params["functions"]
            call = params["function_call"]
            request["function_call"] = "auto" if call is None else call
        if params["stop"]:
            request["stop"] = params["stop"]
        max_tokens = params["max_tokens"]
        if max_tokens is not None and str(max_tokens).lower() != "inf":
            request["max_tokens"] = int(max_tokens)
        if params["logit_bias"]:
            request["logit_bias"] = params["logit_bias"]
        if params["response_format"]:
            request["response_format"] = params["response_format"]
        if params["seed"] is not None:
            request["seed"] = params["seed"]
        if params["presence_penalty"] is not None:
            request["presence_penalty"] = params["presence_penalty"]
        if params["frequency_penalty"] is not None:
            request["frequency_penalty"] = params["frequency_penalty"]
        if params["user"]:
            request["user"] = params["user"]
        if params.get("logprobs") is not None and _to_bool(params["logprobs"]):
            request["logprobs"] = True
            if params.get("top_logprobs") is not None:
                request["top_logprobs"] = int(params["top_logprobs"])
        return request

    def completion_request(self, params: dict[str, Any], prompt: str) -> dict[str, Any]:
        azure = self.api_style == "azure_openai"

        def opt_float(v: Any) -> float | None:
            return float(v) if v is not None else None

        request: dict[str, Any] = {
            "prompt": prompt,
            "model": params["deployment_name"] if azure else params["model"],
            "suffix": params["suffix"] or None,
            "max_tokens": int(params["max_tokens"]) if params["max_tokens"] is not None else None,
            "temperature": float(params["temperature"]),
            "top_p": float(params["top_p"]),
            "n": int(params["n"]),
            "stream": _to_bool(params["stream"]),
            "logprobs": int(params["logprobs"]) if params["logprobs"] else None,
            "echo": _to_bool(params["echo"]),
            "stop": params["stop"] or None,
        }
        if azure:
            if params["presence_penalty"] is not None:
                request["presence_penalty"] = params["presence_penalty"]
            if params["frequency_penalty"] is not None:
                request["frequency_penalty"] = params["frequency_penalty"]
        else:
            request["presence_penalty"] = opt_float(params["presence_penalty"])
            request["frequency_penalty"] = opt_float(params["frequency_penalty"])
        request["best_of"] = int(params["best_of"])
        request["logit_bias"] = params["logit_bias"] or {}
        request["user"] = params["user"]
        return request

    async def __call__(self, **kwargs: Any) -> Any:
        """The node's output: the reply text, the whole message when tools or functions are
        given, or (``stream: true``) an async generator of text deltas."""
        params, variables = self.split(kwargs)
        template = self.template
        if "prompt" in variables:  # an input named prompt replaces the template (promptflow)
            template = prompt_template(variables.pop("prompt"))
        if self.api == "chat":
            if self.api_style == "azure_openai":
                variables = as_chat_lists(variables)
            messages = build_messages(template, variables, self.to_escape)
            request = self.chat_request(params, messages)
            if request["stream"] and not (request.get("tools") or request.get("functions")):
                return _relay(self.model.chat_stream(request), current_usage.get(),
                              request.get("model"))
            response = await self.model.chat(request)
            record_response(response, request.get("model"))
            if request.get("tools") or request.get("functions"):
                if request.get("logprobs"):
                    return {**response.message, "logprobs": _logprob_items(response.logprobs)}
                return response.message
            if request.get("logprobs"):
                return {"content": response.message.get("content", ""),
                        "logprobs": _logprob_items(response.logprobs)}
            return response.message.get("content", "")
        prompt = render(template, variables)
        request = self.completion_request(params, prompt)
        response = await self.model.complete(request)
        record_response(response, request.get("model"))
        if request["stream"]:
            return _once(response.text)
        return response.text


def _logprob_items(logprobs: Any) -> list[dict[str, Any]]:
    """The per-token list of a choice's ``logprobs`` (``{"content": [{"token", "logprob",
    "bytes", "top_logprobs": [...]}, ...]}`` on the wire); [] when the model gave none."""
    if isinstance(logprobs, dict):
        items = logprobs.get("content")
        return items if isinstance(items, list) else []
    return []


_PROMPT_TEMPLATES: dict[str, Any] = {}


def prompt_template(text: Any) -> Any:
    """The compiled template of a ``prompt`` input's text (cached: upstream prompts repeat)."""
    from ._templates import JinjaTemplateError, compile_template, preprocess_images

    text = str(text)
    template = _PROMPT_TEMPLATES.get(text)
    if template is None:
        try:
            template = compile_template(preprocess_images(text))
        except Exception as exc:  # jinja2.TemplateSyntaxError in the upstream text
            raise JinjaTemplateError(
                f"Failed to render jinja template: {type(exc).__name__}: {exc}. "
                "Please modify your prompt to fix the issue.") from exc
        if len(_PROMPT_TEMPLATES) < 256:
            _PROMPT_TEMPLATES[text] = template
    return template


async def _once(text: str):
    yield text


async def _relay(stream: Any, recorder: Any, model: Any):
    """Pass a model's stream on; a final ``Usage`` item is recorded on the node that made the
    call (the stream may be consumed later, by another node or by the flow output)."""
    async for item in stream:
        if isinstance(item, Usage):
            if recorder is not None:
                recorder.add(item, model)
            continue
        yield item


@dataclass(frozen=True, slots=True)
class PackageTool:
    api: str  # chat, completion, embedding, or from_input (the node's 'api' input)
    provider: str  # the provider the tool was written for


PACKAGE_TOOLS: dict[str, PackageTool] = {
    "promptflow.tools.llm.llm": PackageTool("from_input", "any"),
    "promptflow.tools.aoai.AzureOpenAI.chat": PackageTool("chat", "azure_openai"),
    "promptflow.tools.aoai.AzureOpenAI.completion": PackageTool("completion", "azure_openai"),
    "promptflow.tools.aoai.chat": PackageTool("chat", "azure_openai"),
    "promptflow.tools.aoai.completion": PackageTool("completion", "azure_openai"),
    "promptflow.tools.openai.OpenAI.chat": PackageTool("chat", "openai"),
    "promptflow.tools.openai.OpenAI.completion": PackageTool("completion", "openai"),
    "promptflow.tools.openai.chat": PackageTool("chat", "openai"),
    "promptflow.tools.openai.completion": PackageTool("completion", "openai"),
    "promptflow.tools.embedding.embedding": PackageTool("embedding", "any"),
    "promptflow.tools.openai_gpt4v.OpenAI.chat": PackageTool("vision", "openai"),
    "promptflow.tools.aoai_gpt4v.AzureOpenAI.chat": PackageTool("vision", "azure_openai"),
}


@dataclass(slots=True)
class EmbeddingCall:
    """promptflow-tools' ``embedding`` tool: one text in, its vector out."""

    model: Any

    def __post_init__(self) -> None:
        self.model = observed(self.model)

    async def __call__(self, input: Any, deployment_name: str | None = None,  # noqa: A002
                       model: Any = None, **_: Any) -> Any:
        # promptflow-tools' rules: Azure sends the deployment name; OpenAI and serverless send
        # `model` (text-embedding-ada-002 when not given); serverless sends the input as a
        # list and asks for floats; the others get the openai client's default (base64).
        if self.model.api_style == "azure_openai":
            name = deployment_name or ""
        else:
            name = getattr(model, "value", model) or "text-embedding-ada-002"
        request: dict[str, Any] = {"model": name, "input": input}
        if getattr(self.model, "connection_type", None) == "serverless":
            request = {"model": name, "input": input if isinstance(input, list) else [input],
                       "encoding_format": "float"}
        response = await self.model.embed(request)
        record_response(response, request["model"])
        if isinstance(input, list):
            return response.embeddings
        return response.embeddings[0]
