"""pfkit: run, evaluate and deploy Prompt flow (``flow.dag.yaml``) LLM flows.

``import pfkit`` is instant: everything below loads on first use.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ._version import __version__

_LAZY = {
    "Flow": ("pfkit.flows", "Flow"),
    "FlowBuilder": ("pfkit.authoring", "FlowBuilder"),  # a flow written in Python
    "load_flow": ("pfkit.flows", "load_flow"),
    "Session": ("pfkit.session", "Session"),
    "tool": ("pfkit.nodes._tool", "tool"),
    "ToolProvider": ("pfkit.nodes._tool", "ToolProvider"),
    "log_metric": ("pfkit.nodes._tool", "log_metric"),
    "run": ("pfkit.runs._api", "run"),
    "arun": ("pfkit.session", "arun"),
    "get_run": ("pfkit.runs._api", "get_run"),
    "Run": ("pfkit.runs._api", "Run"),
    "compare": ("pfkit.compare", None),  # a callable module: pfkit.compare([...])
    "evaluate": ("pfkit.evaluate", None),  # a callable module: pfkit.evaluate(...)
}

if TYPE_CHECKING:  # pragma: no cover
    from .authoring import FlowBuilder
    from .flows import Flow, load_flow
    from .nodes._tool import ToolProvider, log_metric, tool
    from .runs._api import Run, get_run, run
    from .session import Session, arun


def __getattr__(name: str) -> Any:
    target = _LAZY.get(name)
    if target is None:
        raise AttributeError(f"module 'pfkit' has no attribute {name!r}")
    import importlib

    module = importlib.import_module(target[0])
    value = module if target[1] is None else getattr(module, target[1])
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_LAZY])


__all__ = ["Flow", "FlowBuilder", "Run", "Session", "ToolProvider", "__version__", "arun", "compare", "evaluate", "get_run", "load_flow",
           "log_metric", "run", "tool"]
