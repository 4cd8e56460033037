"""Let user scripts ``from promptflow.core import tool`` without promptflow installed.

A finder placed at the *end* of ``sys.meta_path`` answers imports of ``promptflow`` and the few
submodules flow scripts use, but only when no other finder found them: if promptflow is
installed, its real modules load and nothing here interferes.
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import sys
import types
from collections.abc import Callable
from typing import Any


def _contract_types() -> dict[str, Any]:
    class PromptTemplate(str):
        """A Jinja2 template string (promptflow.contracts.types.PromptTemplate)."""

    class Secret(str):
        """A secret string (promptflow.contracts.types.Secret)."""

    class FilePath(str):
        """A file path string (promptflow.contracts.types.FilePath)."""

    for cls in (PromptTemplate, Secret, FilePath):
        cls.__module__ = "promptflow.contracts.types"
    return {"PromptTemplate": PromptTemplate, "Secret": Secret, "FilePath": FilePath}


def _tool_api() -> dict[str, Any]:
    from ..nodes import _tool

    return {
        "tool": _tool.tool,
        "ToolProvider": _tool.ToolProvider,
        "log_metric": _tool.log_metric,
        "log_flow_metric": _tool.log_metric,
        "trace": _tool.trace,
        "start_trace": _tool.start_trace,
    }


def _prompty_api() -> dict[str, Any]:
    from .. import prompty

    return {"Prompty": prompty.Prompty, "AsyncPrompty": prompty.AsyncPrompty,
            "OpenAIModelConfiguration": prompty.OpenAIModelConfiguration,
            "AzureOpenAIModelConfiguration": prompty.AzureOpenAIModelConfiguration}


def _connections() -> dict[str, Any]:
    from ..connections import _types

    return dict(_types.CONNECTION_CLASSES)


def _multimedia() -> dict[str, Any]:
    from ..nodes import _images

    class Text(str):
        """Text with annotations (promptflow.contracts.multimedia.Text)."""

        def __new__(cls, value: str, annotations: list | None = None) -> Text:
            obj = str.__new__(cls, value)
            obj._annotations = annotations
            return obj

        def serialize(self) -> dict[str, Any]:
            if self._annotations is None:
                return {"type": "text", "text": str(self)}
            return {"type": "text", "text": {"value": str(self), "annotations": self._annotations}}

    Text.__module__ = "promptflow.contracts.multimedia"
    return {"Image": _images.Image, "PFBytes": _images.PFBytes, "Text": Text}


def _internal_api() -> dict[str, Any]:
    def register_apis(cls: Any) -> None:
        """promptflow's tool registration: nothing to do in pfkit."""

    def enable_cache(_cache_string: Any) -> Callable:
        def decorator(func: Callable) -> Callable:
            return func

        return decorator

    return {**_pick(_tool_api, "tool", "ToolProvider")(), "register_apis": register_apis,
            "enable_cache": enable_cache}


def _tools(kind: str) -> Callable[[], dict[str, Any]]:
    def provider() -> dict[str, Any]:
        from . import _llm_tools as t

        pt = {"PromptTemplate": _contract_types()["PromptTemplate"], "tool": _tool_api()["tool"],
              "ToolProvider": _tool_api()["ToolProvider"]}
        if kind == "openai":
            return {**pt, "OpenAI": t.OpenAI, "chat": t._openai_chat,
                    "completion": t._openai_completion, "Engine": t.Engine}
        if kind == "aoai":
            return {**pt, "AzureOpenAI": t.AzureOpenAI, "chat": t._aoai_chat,
                    "completion": t._aoai_completion}
        if kind == "openai_gpt4v":
            return {**pt, "OpenAI": t.OpenAIVision}
        if kind == "aoai_gpt4v":
            return {**pt, "AzureOpenAI": t.AzureOpenAIVision}
        if kind == "embedding":
            return {**pt, "embedding": t.embedding, "EmbeddingModel": t.EmbeddingModel}
        names = ("render_jinja_template", "parse_chat", "build_messages", "to_bool",
                 "preprocess_template_string", "convert_to_chat_list", "find_referenced_image_set",
                 "validate_functions", "process_function_call", "handle_openai_error",
                 "init_openai_client", "init_azure_openai_client", "ChatInputList",
                 "PromptResult", "VALID_ROLES", "INPUTS_TO_ESCAPE_PARAM_KEY")
        from . import _exceptions

        return {**pt, **{n: getattr(t, n) for n in names}, **_exceptions.tool_exceptions()}

    return provider


def _exception_names() -> dict[str, Any]:
    from . import _exceptions

    return _exceptions.public_names()


def _tool_exception_names() -> dict[str, Any]:
    from . import _exceptions

    return _exceptions.tool_exceptions()


def _pick(provider: Callable[[], dict[str, Any]], *names: str) -> Callable[[], dict[str, Any]]:
    def subset() -> dict[str, Any]:
        values = provider()
        return {n: values[n] for n in names}

    return subset


_MODULES: dict[str, list[Callable[[], dict[str, Any]]]] = {
    "promptflow": [_pick(_tool_api, "tool", "ToolProvider", "log_metric", "log_flow_metric",
                         "trace", "start_trace")],
    "promptflow.core": [_pick(_tool_api, "tool", "ToolProvider", "log_metric",
                              "log_flow_metric"), _prompty_api],
    "promptflow._internal": [_internal_api],
    "promptflow.tracing": [_pick(_tool_api, "trace", "start_trace")],
    "promptflow.connections": [_connections],
    "promptflow.contracts": [],
    "promptflow.contracts.types": [_contract_types],
    "promptflow.contracts.multimedia": [_multimedia],
    "promptflow.entities": [_connections],
    "promptflow.exceptions": [_exception_names],
    "promptflow.tools": [],
    "promptflow.tools.common": [_tools("common")],
    "promptflow.tools.openai": [_tools("openai")],
    "promptflow.tools.aoai": [_tools("aoai")],
    "promptflow.tools.openai_gpt4v": [_tools("openai_gpt4v")],
    "promptflow.tools.aoai_gpt4v": [_tools("aoai_gpt4v")],
    "promptflow.tools.embedding": [_tools("embedding")],
    "promptflow.tools.exception": [_tool_exception_names],
}
_PACKAGES = ("promptflow", "promptflow.contracts", "promptflow.tools")


class _ShimLoader(importlib.abc.Loader):
    def create_module(self, spec: importlib.machinery.ModuleSpec) -> types.ModuleType:
        module = types.ModuleType(spec.name)
        module.__pfkit_shim__ = True  # type: ignore[attr-defined]
        return module

    def exec_module(self, module: types.ModuleType) -> None:
        for provider in _MODULES[module.__name__]:
            module.__dict__.update(provider())
        if module.__name__ in _PACKAGES:
            module.__path__ = []  # a package, so submodules import  # type: ignore[attr-defined]


class _ShimFinder(importlib.abc.MetaPathFinder):
    _loader = _ShimLoader()

    def find_spec(self, fullname: str, path: Any = None, target: Any = None):
        if fullname not in _MODULES:
            return None
        parent = sys.modules.get("promptflow")
        if fullname != "promptflow" and parent is not None and not getattr(parent, "__pfkit_shim__", False):
            return None  # the real promptflow is loaded: never mix in shim submodules
        return importlib.machinery.ModuleSpec(
            fullname, self._loader, is_package=fullname in _PACKAGES
        )


_installed = False


def install() -> None:
    """Idempotent. Appended last, so an installed promptflow always wins."""
    global _installed
    if _installed:
        return
    sys.meta_path.append(_ShimFinder())
    _installed = True
