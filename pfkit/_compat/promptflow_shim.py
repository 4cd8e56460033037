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


def _connections() -> dict[str, Any]:
    from ..connections import _types

    return dict(_types.CONNECTION_CLASSES)


def _pick(provider: Callable[[], dict[str, Any]], *names: str) -> Callable[[], dict[str, Any]]:
    def subset() -> dict[str, Any]:
        values = provider()
        return {n: values[n] for n in names}

    return subset


_MODULES: dict[str, list[Callable[[], dict[str, Any]]]] = {
    "promptflow": [_pick(_tool_api, "tool", "ToolProvider", "log_metric", "log_flow_metric",
                         "trace", "start_trace")],
    "promptflow.core": [_pick(_tool_api, "tool", "ToolProvider", "log_metric",
                              "log_flow_metric")],
    "promptflow._internal": [_pick(_tool_api, "tool", "ToolProvider")],
    "promptflow.tracing": [_pick(_tool_api, "trace", "start_trace")],
    "promptflow.connections": [_connections],
    "promptflow.contracts": [],
    "promptflow.contracts.types": [_contract_types],
    "promptflow.entities": [_connections],
}


class _ShimLoader(importlib.abc.Loader):
    def create_module(self, spec: importlib.machinery.ModuleSpec) -> types.ModuleType:
        module = types.ModuleType(spec.name)
        module.__pfkit_shim__ = True  # type: ignore[attr-defined]
        return module

    def exec_module(self, module: types.ModuleType) -> None:
        for provider in _MODULES[module.__name__]:
            module.__dict__.update(provider())
        if module.__name__ == "promptflow":
            module.__path__ = []  # a package, so submodules import  # type: ignore[attr-defined]
        elif module.__name__ == "promptflow.contracts":
            module.__path__ = []  # type: ignore[attr-defined]


class _ShimFinder(importlib.abc.MetaPathFinder):
    _loader = _ShimLoader()

    def find_spec(self, fullname: str, path: Any = None, target: Any = None):
        if fullname not in _MODULES:
            return None
        parent = sys.modules.get("promptflow")
        if fullname != "promptflow" and parent is not None and not getattr(parent, "__pfkit_shim__", False):
            return None  # the real promptflow is loaded: never mix in shim submodules
        return importlib.machinery.ModuleSpec(
            fullname, self._loader, is_package=fullname in ("promptflow", "promptflow.contracts")
        )


_installed = False


def install() -> None:
    """Idempotent. Appended last, so an installed promptflow always wins."""
    global _installed
    if _installed:
        return
    sys.meta_path.append(_ShimFinder())
    _installed = True
