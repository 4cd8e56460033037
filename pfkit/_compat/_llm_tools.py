"""promptflow-tools' public LLM functions, run by pfkit's providers.

Tool scripts call ``promptflow.tools.openai.chat(connection=conn, prompt=..., **vars)``,
``AzureOpenAI(conn).completion(...)``, ``promptflow.tools.common.render_jinja_template(...)`` and
friends directly. With promptflow-tools absent, the shim serves these names from here, with the
same signatures, requests and results: request building is the llm node's own
(:class:`pfkit.nodes._llm.LLMCall`), templates and chat parsing are pfkit's templates module.

The model for a connection object comes from the provider registry
(:func:`pfkit.providers._registry.model_from_connection`). The calls are sync, as in
promptflow-tools; inside a running event loop (pfkit runs quick sync tools on its loop) the
request runs on a helper loop in another thread, so it never deadlocks.
"""

from __future__ import annotations

import contextvars
import functools
from collections.abc import Callable
from enum import Enum
from typing import Any

from ..nodes import _images, _llm, _templates
from ..nodes._tool import ToolProvider

INPUTS_TO_ESCAPE_PARAM_KEY = "_inputs_to_escape"
VALID_ROLES = list(_templates.VALID_ROLES)
ChatInputList = _templates.ChatInputList
PromptResult = _templates.PromptResult


class Engine(str, Enum):
    TEXT_DAVINCI_003 = "text-davinci-003"


class EmbeddingModel(str, Enum):
    TEXT_EMBEDDING_ADA_002 = "text-embedding-ada-002"
    TEXT_SEARCH_ADA_DOC_001 = "text-search-ada-doc-001"
    TEXT_SEARCH_ADA_QUERY_001 = "text-search-ada-query-001"


# -- common helpers (promptflow.tools.common) ------------------------------------------------------


def to_bool(value: Any) -> bool:
    return str(value).lower() == "true"


def _compiled(template: str, trim_blocks: bool = True, keep_trailing_newline: bool = True) -> Any:
    """The compiled template; a syntax error is promptflow's ``JinjaTemplateError``."""
    try:
        return _compile(template, trim_blocks, keep_trailing_newline)
    except Exception as exc:  # jinja2.TemplateSyntaxError
        raise _templates.JinjaTemplateError(
            f"Failed to render jinja template: {type(exc).__name__}: {exc}. "
            "Please modify your prompt to fix the issue.") from exc


@functools.lru_cache(maxsize=256)
def _compile(template: str, trim_blocks: bool, keep_trailing_newline: bool) -> Any:
    # the bounded sandbox (step budget, size limits) whatever the options
    return _templates.compile_template(template, trim_blocks=trim_blocks,
                                       keep_trailing_newline=keep_trailing_newline)


def render_jinja_template(template_content: str, trim_blocks: bool = True,
                          keep_trailing_newline: bool = True, escape_dict: dict | None = None,
                          **kwargs: Any) -> str:
    """Render in a sandbox; a failure is a ``JinjaTemplateError`` with promptflow's message."""
    template = _compiled(str(template_content), trim_blocks, keep_trailing_newline)
    return _templates.render(template, kwargs, escape_map=escape_dict or {})


def parse_chat(chat_str: str, images: list | None = None, valid_roles: list[str] | None = None,
               image_detail: str = "auto", escape_dict: dict | None = None) -> list[dict]:
    """Rendered chat text -> messages (promptflow-tools' ``parse_chat``)."""
    if valid_roles and set(valid_roles) != set(_templates.VALID_ROLES):
        raise NotImplementedError("pfkit's parse_chat supports promptflow's default roles only")
    hash2images = {str(image): image for image in images or []}
    return _with_detail(_templates.parse_chat(chat_str, escape_dict or {}, hash2images or None),
                        image_detail)


def _with_detail(messages: list[dict], detail: str) -> list[dict]:
    if detail != "auto":
        for message in messages:
            for part in message.get("content") if isinstance(message.get("content"), list) else ():
                if isinstance(part, dict) and part.get("type") == "image_url":
                    part["image_url"]["detail"] = detail
    return messages


def preprocess_template_string(template_string: str) -> str:
    return _templates.preprocess_images(template_string)


def convert_to_chat_list(obj: Any) -> Any:
    return _templates.as_chat_lists(obj)


def find_referenced_image_set(kwargs: dict) -> set:
    return set(_images.find_images(kwargs).values())


def build_messages(prompt: str, images: list | None = None, image_detail: str = "auto",
                   **kwargs: Any) -> list[dict]:
    """Render a chat template with role-injection escaping and parse it into messages."""
    to_escape = frozenset(kwargs.pop(INPUTS_TO_ESCAPE_PARAM_KEY, None) or ())
    template = _compiled(str(prompt))
    escaped, mapping = _templates.escape_variables(kwargs, to_escape)
    text = _templates.render(template, escaped, escape_map=mapping)
    found = {str(i): i for i in images or []} or _images.find_images(kwargs)
    messages = _with_detail(_templates.parse_chat(text, mapping, found or None), image_detail)
    if mapping:
        for message in messages:
            for key, value in message.items():
                message[key] = _templates.unescape(value, mapping)
    return messages


def validate_functions(functions: Any) -> None:
    if not isinstance(functions, list) or not functions:
        raise _llm.LLMParameterError("functions must be a non-empty list of function definitions")
    for i, function in enumerate(functions):
        if not isinstance(function, dict) or "name" not in function or "parameters" not in function:
            raise _llm.LLMParameterError(
                f"function {i} must be a dict with 'name' and 'parameters' keys")


def process_function_call(function_call: Any) -> Any:
    if function_call is None:
        return "auto"
    if function_call in ("auto", "none"):
        return function_call
    if not isinstance(function_call, dict) or "name" not in function_call:
        raise _llm.LLMParameterError(
            f"function_call parameter {function_call!r} must be 'auto', 'none' or a dict with "
            "a 'name'")
    return function_call


def handle_openai_error(tries: int = 100, unprocessable_entity_error_tries: int = 3):
    """promptflow-tools' retry decorator: pfkit's providers retry themselves, so it only passes
    the call through."""

    def decorator(func):
        return func

    return decorator


def _client_kwargs(connection: Any) -> dict[str, Any]:
    def get(key: str) -> Any:
        return getattr(connection, key, None)

    return {k: v for k, v in (("api_key", get("api_key")), ("organization", get("organization")),
                              ("base_url", get("base_url") or get("api_base"))) if v}


def init_openai_client(connection: Any) -> Any:
    """An ``openai.OpenAI`` client for the connection (the real client, as promptflow-tools)."""
    import openai

    kwargs = _client_kwargs(connection)
    if getattr(connection, "TYPE", "") == "serverless":
        base = kwargs.get("base_url", "").rstrip("/")
        kwargs["base_url"] = base if base.endswith("/v1") else base + "/v1"
    return openai.OpenAI(**kwargs)


def init_azure_openai_client(connection: Any) -> Any:
    import openai

    return openai.AzureOpenAI(api_key=connection.api_key, azure_endpoint=connection.api_base,
                              api_version=getattr(connection, "api_version", None) or "2024-02-01")


# -- running a call ------------------------------------------------------------------------------


# ``(connection name, connection) -> model or None``: lets the running flow (or a test) give the
# models it already has, e.g. an EchoModel, a cached or rate-limited model, for direct calls.
connection_models: contextvars.ContextVar[Callable[[str, Any], Any] | None] = \
    contextvars.ContextVar("pfkit_connection_models", default=None)


def _call(coro: Any) -> Any:
    """Run a coroutine from sync tool code: ``asyncio.run`` in a worker thread, a helper loop in
    another thread when called on a running loop (pfkit._aio.run_sync). Models are safe to use
    from any loop (per-loop clients, loop-independent limits)."""
    from .._aio import run_sync

    return run_sync(coro)


def _model(connection: Any) -> Any:
    from ..providers._registry import model_from_connection

    if connection is None:
        raise _llm.LLMParameterError("the call needs a connection")
    name = str(getattr(connection, "name", None) or type(connection).__name__)
    resolver = connection_models.get()
    if resolver is None:  # the models of the flow whose tool is calling (engine isolation gate)
        from ..engine._isolation import GATE

        resolver = GATE.current_models()
    if resolver is not None:
        model = resolver(name, connection)
        if model is not None:
            return model
    return model_from_connection(name, connection)


def _collect(value: Any) -> Any:
    """An async generator result (a stream) becomes a list of its items, so it can leave the
    helper loop; other results are returned as they are."""
    if hasattr(value, "__aiter__"):
        async def drain() -> list:
            return [item async for item in value]

        return drain()
    return None


def _run(model: Any, api: str, prompt: Any, params: dict[str, Any], variables: dict[str, Any],
         *, vision: bool = False) -> Any:
    text = _templates.preprocess_images(str(prompt)) if vision else str(prompt)
    api_style = getattr(model, "api_style", "openai")
    table = _llm.parameter_table(api_style, api)
    if api_style == "azure_openai" and "model" in params and "deployment_name" not in params:
        params["deployment_name"] = params.pop("model")
    elif api_style != "azure_openai" and "deployment_name" in params:
        params.setdefault("model", params.pop("deployment_name"))
    to_escape = frozenset(variables.pop(INPUTS_TO_ESCAPE_PARAM_KEY, None) or ())
    call = _llm.LLMCall(model=model, api=api, api_style=api_style, template=_compiled(text),
                        table=table, to_escape=to_escape)
    kwargs = {k: v for k, v in params.items() if k in table}
    kwargs.update(variables)

    async def go() -> Any:
        result = await call(**kwargs)
        drained = _collect(result)
        if drained is not None:
            return ("stream", await drained)
        return ("value", result)

    kind, value = _call(go())
    if kind == "stream":
        return iter(value)
    return value


def _chat_params(local: dict[str, Any]) -> dict[str, Any]:
    names = ("model", "deployment_name", "temperature", "top_p", "n", "stream", "stop",
             "max_tokens", "presence_penalty", "frequency_penalty", "logit_bias", "user",
             "function_call", "functions", "tool_choice", "tools", "response_format", "seed")
    return {k: local[k] for k in names if k in local}


def _completion_params(local: dict[str, Any]) -> dict[str, Any]:
    names = ("model", "deployment_name", "suffix", "max_tokens", "temperature", "top_p", "n",
             "stream", "logprobs", "echo", "stop", "presence_penalty", "frequency_penalty",
             "best_of", "logit_bias", "user")
    params = {k: local[k] for k in names if k in local}
    if isinstance(params.get("model"), Enum):
        params["model"] = params["model"].value
    return params


class _ToolProviderBase(ToolProvider):
    """Like promptflow-tools' providers: the tool object holds its connection's model."""

    def __init__(self, connection: Any) -> None:
        super().__init__()
        self.connection = connection
        self._model = _model(connection)


class OpenAI(_ToolProviderBase):
    """``promptflow.tools.openai.OpenAI``."""

    def completion(self, prompt: str, model: Any = Engine.TEXT_DAVINCI_003, suffix: str | None = None,
                   max_tokens: int = 16, temperature: float = 1.0, top_p: float = 1.0, n: int = 1,
                   stream: bool = False, logprobs: int | None = None, echo: bool = False,
                   stop: list | None = None, presence_penalty: float | None = None,
                   frequency_penalty: float | None = None, best_of: int = 1,
                   logit_bias: dict | None = None, user: str = "", **kwargs: Any) -> Any:
        local = dict(locals())
        local["logit_bias"] = logit_bias or {}
        return _run(self._model, "completion", prompt, _completion_params(local), kwargs)

    def chat(self, prompt: str, model: str = "", temperature: float = 1.0, top_p: float = 1.0,
             stream: bool = False, stop: list | None = None, max_tokens: int | None = None,
             presence_penalty: float | None = None, frequency_penalty: float | None = None,
             logit_bias: dict | None = None, user: str = "", function_call: Any = None,
             functions: list | None = None, tool_choice: Any = None, tools: list | None = None,
             response_format: Any = None, seed: int | None = None, **kwargs: Any) -> Any:
        local = dict(locals())
        local["logit_bias"] = logit_bias or {}
        if functions and not tools:
            validate_functions(functions)
        return _run(self._model, "chat", prompt, _chat_params(local), kwargs)


class AzureOpenAI(_ToolProviderBase):
    """``promptflow.tools.aoai.AzureOpenAI``."""

    def completion(self, prompt: str, deployment_name: str, suffix: str | None = None,
                   max_tokens: int = 16, temperature: float = 1.0, top_p: float = 1.0, n: int = 1,
                   stream: bool = False, logprobs: int | None = None, echo: bool = False,
                   stop: list | None = None, presence_penalty: float | None = None,
                   frequency_penalty: float | None = None, best_of: int = 1,
                   logit_bias: dict | None = None, user: str = "", **kwargs: Any) -> Any:
        local = dict(locals())
        local["logit_bias"] = logit_bias or {}
        return _run(self._model, "completion", prompt, _completion_params(local), kwargs)

    def chat(self, prompt: str, deployment_name: str, temperature: float = 1.0, top_p: float = 1.0,
             n: int = 1, stream: bool = False, stop: list | None = None,
             max_tokens: int | None = None, presence_penalty: float | None = None,
             frequency_penalty: float | None = None, logit_bias: dict | None = None, user: str = "",
             function_call: Any = None, functions: list | None = None, tool_choice: Any = None,
             tools: list | None = None, response_format: Any = None, seed: int | None = None,
             **kwargs: Any) -> Any:
        local = dict(locals())
        local["logit_bias"] = logit_bias or {}
        if functions and not tools:
            validate_functions(functions)
        return _run(self._model, "chat", prompt, _chat_params(local),
                    _templates.as_chat_lists(kwargs))


def _named(local: dict[str, Any]) -> dict[str, Any]:
    """A module-level tool function's own parameters (not the connection, not **kwargs)."""
    return {k: v for k, v in local.items() if k not in ("connection", "kwargs")}


def _openai_chat(connection: Any, prompt: str, model: str = "", temperature: float = 1,
                 top_p: float = 1, stream: bool = False, stop: list | None = None,
                 max_tokens: int | None = None, presence_penalty: float | None = None,
                 frequency_penalty: float | None = None, logit_bias: dict | None = None,
                 user: str = "", function_call: Any = None, functions: list | None = None,
                 tool_choice: Any = None, tools: list | None = None, response_format: Any = None,
                 seed: int | None = None, **kwargs: Any) -> Any:
    return OpenAI(connection).chat(**_named(locals()), **kwargs)


def _openai_completion(connection: Any, prompt: str, model: Any = Engine.TEXT_DAVINCI_003,
                       suffix: str | None = None, max_tokens: int = 16, temperature: float = 1.0,
                       top_p: float = 1, n: int = 1, stream: bool = False,
                       logprobs: int | None = None, echo: bool = False, stop: list | None = None,
                       presence_penalty: float | None = None,
                       frequency_penalty: float | None = None, best_of: int = 1,
                       logit_bias: dict | None = None, user: str = "", **kwargs: Any) -> Any:
    return OpenAI(connection).completion(**_named(locals()), **kwargs)


def _aoai_chat(connection: Any, prompt: str, deployment_name: str, temperature: float = 1,
               top_p: float = 1, n: int = 1, stream: bool = False, stop: list | None = None,
               max_tokens: int | None = None, presence_penalty: float | None = None,
               frequency_penalty: float | None = None, logit_bias: dict | None = None,
               user: str = "", function_call: Any = None, functions: list | None = None,
               tool_choice: Any = None, tools: list | None = None, response_format: Any = None,
               seed: int | None = None, **kwargs: Any) -> Any:
    return AzureOpenAI(connection).chat(**_named(locals()), **kwargs)


def _aoai_completion(connection: Any, prompt: str, deployment_name: str, suffix: str | None = None,
                     max_tokens: int = 16, temperature: float = 1.0, top_p: float = 1.0,
                     n: int = 1, stream: bool = False, logprobs: int | None = None,
                     echo: bool = False, stop: list | None = None,
                     presence_penalty: float | None = None,
                     frequency_penalty: float | None = None, best_of: int = 1,
                     logit_bias: dict | None = None, user: str = "", **kwargs: Any) -> Any:
    return AzureOpenAI(connection).completion(**_named(locals()), **kwargs)


_VISION_TYPES = {"model": "string", "deployment_name": "string", "temperature": "double",
                 "top_p": "double", "stream": "bool", "stop": "list", "max_tokens": "int",
                 "presence_penalty": "double", "frequency_penalty": "double", "seed": "int",
                 "detail": "string"}


async def vision_chat(model: Any, prompt: str, model_name: str, temperature: float = 1.0,
                      top_p: float = 1.0, stream: bool = False, stop: list | None = None,
                      max_tokens: int | None = None, presence_penalty: float = 0,
                      frequency_penalty: float = 0, seed: int | None = None,
                      detail: str = "auto", **kwargs: Any) -> Any:
    """The gpt4v tools' chat: images from the inputs become ``image_url`` parts; ``n: 1`` and
    both penalties are always sent. (promptflow-tools passes ``detail`` on as a template
    variable, so the parts keep ``detail: auto``; so does pfkit.)"""
    from ..providers._usage import current_usage, record_response

    text = _templates.preprocess_images(str(prompt))
    variables = _templates.as_chat_lists(dict(kwargs, detail=detail))
    to_escape = frozenset(variables.pop(INPUTS_TO_ESCAPE_PARAM_KEY, None) or ())
    messages = _templates.build_messages(_compiled(text), variables, to_escape)
    request: dict[str, Any] = {"model": model_name, "messages": messages,
                               "temperature": temperature, "top_p": top_p, "n": 1,
                               "stream": to_bool(stream), "presence_penalty": presence_penalty,
                               "frequency_penalty": frequency_penalty}
    if stop:
        request["stop"] = stop
    if max_tokens is not None:
        request["max_tokens"] = max_tokens
    if seed is not None:
        request["seed"] = seed
    if request["stream"]:
        return _llm._relay(model.chat_stream(request), current_usage.get(), model_name)
    response = await model.chat(request)
    record_response(response, model_name)
    return response.message.get("content", "")


class VisionCall:
    """A gpt4v package tool node (``promptflow.tools.openai_gpt4v.OpenAI.chat`` and the Azure
    one): the template text, the node's model; called with the node's inputs."""

    types = _VISION_TYPES

    def __init__(self, model: Any, text: str, azure: bool) -> None:
        from ..providers._observed import observed

        self.model = observed(model)
        self.text = text
        self.azure = azure

    async def __call__(self, **kwargs: Any) -> Any:
        name = kwargs.pop("deployment_name", None) if self.azure else None
        name = name or kwargs.pop("model", None) or ("" if self.azure else "gpt-4-vision-preview")
        kwargs.pop("deployment_name", None)
        return await vision_chat(self.model, self.text, name, **kwargs)


def _run_vision(model: Any, **kwargs: Any) -> Any:

    async def go() -> Any:
        result = await vision_chat(model, **kwargs)
        drained = _collect(result)
        return ("stream", await drained) if drained is not None else ("value", result)

    kind, value = _call(go())
    return iter(value) if kind == "stream" else value


class OpenAIVision(_ToolProviderBase):
    """``promptflow.tools.openai_gpt4v.OpenAI``."""

    def chat(self, prompt: str, model: str = "gpt-4-vision-preview", temperature: float = 1.0,
             top_p: float = 1.0, stream: bool = False, stop: list | None = None,
             max_tokens: int | None = None, presence_penalty: float = 0,
             frequency_penalty: float = 0, seed: int | None = None, detail: str = "auto",
             **kwargs: Any) -> Any:
        return _run_vision(self._model, prompt=prompt, model_name=model, temperature=temperature,
                           top_p=top_p, stream=stream, stop=stop, max_tokens=max_tokens,
                           presence_penalty=presence_penalty, frequency_penalty=frequency_penalty,
                           seed=seed, detail=detail, **kwargs)


class AzureOpenAIVision(_ToolProviderBase):
    """``promptflow.tools.aoai_gpt4v.AzureOpenAI``."""

    def chat(self, prompt: str, deployment_name: str, temperature: float = 1.0, top_p: float = 1.0,
             stream: bool = False, stop: list | None = None, max_tokens: int | None = None,
             presence_penalty: float = 0, frequency_penalty: float = 0, seed: int | None = None,
             detail: str = "auto", **kwargs: Any) -> Any:
        return _run_vision(self._model, prompt=prompt, model_name=deployment_name,
                           temperature=temperature, top_p=top_p, stream=stream, stop=stop,
                           max_tokens=max_tokens, presence_penalty=presence_penalty,
                           frequency_penalty=frequency_penalty, seed=seed, detail=detail, **kwargs)


def embedding(connection: Any, input: str, deployment_name: str = "",  # noqa: A002
              model: Any = EmbeddingModel.TEXT_EMBEDDING_ADA_002) -> list[float]:
    """``promptflow.tools.embedding.embedding``: the vector of one text."""

    ctype = getattr(connection, "TYPE", "")
    if ctype not in ("open_ai", "azure_open_ai", "serverless"):
        raise _llm.LLMParameterError(
            f"Not Support connection type '{type(connection).__name__}' for embedding api. "
            "Connection type should be in [AzureOpenAIConnection, OpenAIConnection].")
    name = model.value if isinstance(model, Enum) else model
    call = _llm.EmbeddingCall(model=_model(connection))
    if ctype == "azure_open_ai":
        return _call(call(input=input, deployment_name=deployment_name))
    return _call(call(input=input, model=name))
