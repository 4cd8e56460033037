"""``Prompty.load(path)(question=...)``: a prompty file as a callable, through pfkit's providers.

The body is rendered with pfkit's sandboxed Jinja2; every input is untrusted text, so role
markers in input values are escaped (they can never start a new message)."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ..errors import ExecutionError, InputError, Location, UserError
from ._file import PromptyFile, load_prompty_file
from ._model import model_name, resolve_model


class PromptyOutputError(ExecutionError):
    default_code = "InvalidPromptyOutput"


class _Call:
    """Rendering and one model call, prepared once. The request is promptflow's: the file's
    ``parameters`` as written, ``model`` (the deployment on Azure), and the messages (chat) or
    prompt (completion)."""

    def __init__(self, file: PromptyFile, model: Any) -> None:
        from ..nodes import _templates

        self.file = file
        self.model = model
        self.api_style = getattr(model, "api_style", "openai")
        self.template = _templates.compile_template(
            _templates.preprocess_images(file.body), file=str(file.path), node=file.name)
        self.model_name = model_name(file.configuration)

    def signature(self) -> dict[str, Any]:
        """The inputs: declared ones, else the sample's keys (promptflow's rule)."""
        if self.file.inputs:
            return {n: (i.has_default, i.default) for n, i in self.file.inputs.items()}
        return {n: (False, None) for n in self.file.sample}

    def inputs(self, given: Mapping[str, Any]) -> dict[str, Any]:
        """The sample when nothing is given; declared defaults for missing inputs; inputs the
        file does not declare are left out."""
        values = dict(given)
        if not values and self.file.sample:
            values = dict(self.file.sample)
        resolved: dict[str, Any] = {}
        missing = []
        for name, (has_default, default) in self.signature().items():
            if name in values:
                resolved[name] = values[name]
            elif has_default:
                resolved[name] = default
            else:
                missing.append(name)
        if missing:
            raise InputError(f"Missing required inputs: {missing}", code="MissingRequiredInputs",
                             location=Location(file=str(self.file.path),
                                               field=f"inputs.{missing[0]}"),
                             hint="Pass " + ", ".join(f"{m}=..." for m in missing) + ".")
        return resolved

    def request(self, variables: dict[str, Any]) -> dict[str, Any]:
        from ..nodes import _templates

        request: dict[str, Any] = dict(self.file.parameters)
        if self.model_name:
            request["model"] = self.model_name
        if self.file.api == "chat":
            if self.api_style == "azure_openai":
                variables = _templates.as_chat_lists(variables)
            request["messages"] = _templates.build_messages(
                self.template, variables, _templates.EscapeSet(variables))
        else:
            request["prompt"] = _templates.render(self.template, variables)
        return request

    async def __call__(self, **given: Any) -> Any:
        from ..providers._usage import record_response

        request = self.request(self.inputs(given))
        fmt = request.get("response_format")
        is_json = isinstance(fmt, dict) and fmt.get("type") == "json_object"
        first = self.file.response != "all"
        if self.file.api == "chat":
            if request.get("stream") and first:
                from ..nodes._llm import _relay
                from ..providers._usage import current_usage

                stream = _relay(self.model.chat_stream(request), current_usage.get(),
                                request.get("model"))
                if not is_json:
                    return stream
                return self.parse_json("".join([chunk async for chunk in stream]))
            if not first:
                request.pop("stream", None)  # the whole response, not a stream
            response = await self.model.chat(request)
            record_response(response, request.get("model"))
            message = response.message
            if not first:
                return {"model": response.model or request.get("model"),
                        "object": "chat.completion",
                        "choices": [{"index": 0, "message": message,
                                     "finish_reason": "tool_calls" if message.get("tool_calls")
                                     else "stop"}],
                        "usage": response.usage.to_dict()}
            if message.get("tool_calls") or message.get("function_call"):
                return message
            content = message.get("content") or ""
            return self.parse_json(content) if is_json else content
        request.pop("stream", None)
        response = await self.model.complete(request)
        record_response(response, request.get("model"))
        if not first:
            return {"model": response.model or request.get("model"), "object": "text_completion",
                    "choices": [{"index": 0, "text": response.text, "finish_reason": "stop"}],
                    "usage": response.usage.to_dict()}
        return self.parse_json(response.text) if is_json else response.text

    def parse_json(self, content: str) -> Any:
        try:
            parsed = json.loads(content)
        except ValueError as exc:
            raise PromptyOutputError(f"the model's reply is not JSON ({exc}) although "
                                     "response_format is json_object",
                                     location=Location(file=str(self.file.path))) from None
        if not self.file.outputs:
            return parsed
        missing = [k for k in self.file.outputs if not isinstance(parsed, dict) or k not in parsed]
        if missing:
            keys = list(parsed) if isinstance(parsed, dict) else []
            raise PromptyOutputError(f"Cannot find {missing[0]} in response {keys}",
                                     location=Location(file=str(self.file.path), field="outputs"))
        return {k: parsed[k] for k in self.file.outputs}


def _configuration(value: Any) -> dict[str, Any]:
    """A configuration mapping, or a model configuration object (pfkit's or promptflow's)."""
    if value is None:
        return {}
    if isinstance(value, Mapping):
        return dict(value)
    to_configuration = getattr(value, "to_configuration", None)
    if callable(to_configuration):
        return to_configuration()
    import dataclasses

    if dataclasses.is_dataclass(value):
        data = {k: v for k, v in dataclasses.asdict(value).items() if v is not None}
        data.setdefault("type", "azure_openai" if "azure_endpoint" in data else "openai")
        return data
    raise TypeError(f"model configuration must be a mapping or a model configuration object, "
                    f"got {type(value).__name__}")


class AsyncPrompty:
    """``await AsyncPrompty.load(path)(question=...)``."""

    def __init__(self, path: str | Path, model: Mapping[str, Any] | None = None,
                 *, resolver: Any = None, file: PromptyFile | None = None) -> None:
        self.file = file or load_prompty_file(path)
        if model:  # an override of the front matter's model section
            merged = {**self.file.configuration, **_configuration(model.get("configuration"))}
            params = {**self.file.parameters, **(model.get("parameters") or {})}
            from dataclasses import replace

            self.file = replace(self.file, configuration=merged, parameters=params,
                                api=model.get("api", self.file.api),
                                response=model.get("response", self.file.response))
        self._resolver = resolver
        self._call: _Call | None = None

    @classmethod
    def load(cls, source: str | Path, model: Mapping[str, Any] | None = None, **kwargs: Any):
        return cls(source, model, **kwargs)

    @property
    def path(self) -> Path:
        return self.file.path

    def _ready(self) -> _Call:
        if self._call is None:
            from ..engine import GATE

            resolver = self._resolver
            current = GATE.current_models()  # inside a flow's code: that flow's models
            if resolver is None and current is not None:
                def resolver(name: str, node: Any = None, _models: Any = current) -> Any:
                    model = _models(name, None)
                    if model is None:
                        from ..session import Session

                        return Session.default().model_layer()(name, node)
                    return model
            model = resolve_model(self.file.configuration, resolver,
                                  where=f"{self.file.path.name}: ")
            self._call = _Call(self.file, model)
        return self._call

    def render(self, **inputs: Any) -> Any:
        """The messages (chat) or prompt (completion) the model would get."""

        call = self._ready()
        request = call.request(call.inputs(inputs))
        return request["messages"] if self.file.api == "chat" else request["prompt"]

    def estimate_token_count(self, **inputs: Any) -> int:
        """Roughly (4 characters a token) the prompt's tokens plus ``max_tokens``."""
        rendered = self.render(**inputs)
        text = json.dumps(rendered) if not isinstance(rendered, str) else rendered
        return len(text) // 4 + int(self.file.parameters.get("max_tokens") or 0)

    async def __call__(self, *args: Any, **inputs: Any) -> Any:
        if args:
            raise UserError("Prompty can only be called with keyword arguments.",
                            code="InvalidPromptyCall", hint="Pass the inputs by name: p(question=...).")
        return await self._ready()(**inputs)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({str(self.file.path)!r})"


class Prompty(AsyncPrompty):
    """``Prompty.load(path)(question=...)``: the first choice's text, the parsed JSON
    (``response_format: json_object``), the whole response (``response: all``) or, with
    ``stream: true``, an iterator of text chunks."""

    def __call__(self, *args: Any, **inputs: Any) -> Any:  # type: ignore[override]
        if args:
            raise UserError("Prompty can only be called with keyword arguments.",
                            code="InvalidPromptyCall", hint="Pass the inputs by name: p(question=...).")
        from ..session import Session

        async def once() -> Any:
            result = await self._ready()(**inputs)
            if hasattr(result, "__aiter__"):
                return iter([chunk async for chunk in result])
            return result

        return Session.default().run_sync(once())
