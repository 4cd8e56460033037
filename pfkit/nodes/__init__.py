"""Node kinds: python tools, prompt templates, llm calls.

Public helpers are loaded on first use (the node modules import jinja2 and the provider types).
"""

from __future__ import annotations

from typing import Any

_LAZY = {
    "tool": "pfkit.nodes._tool",
    "ToolProvider": "pfkit.nodes._tool",
    "log_metric": "pfkit.nodes._tool",
    "flow_test_outputs": "pfkit.nodes._images",
    "to_image": "pfkit.nodes._images",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'pfkit.nodes' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


__all__ = sorted(_LAZY)
