"""What user scripts import: ``tool``, ``ToolProvider``, ``log_metric``, ``trace``.

These are also what ``from promptflow.core import tool, log_metric, ToolProvider`` gives a script
when promptflow itself is not installed (see :mod:`pfkit._compat.promptflow_shim`). A function
decorated here carries the same ``__tool`` marker promptflow's decorator sets, so pfkit finds
tools written against either package.
"""

from __future__ import annotations

import contextvars
import inspect
from collections.abc import Callable
from typing import Any

TOOL_MARKER = "__tool"
STREAMING_OPTION_ATTR = "_streaming_option_parameter"

# Where log_metric writes. Set by the engine only while aggregation nodes run; outside of that
# log_metric is a silent no-op, as in promptflow.
metric_sink: contextvars.ContextVar[dict[str, Any] | None] = contextvars.ContextVar(
    "pfkit_metric_sink", default=None
)


def tool(
    func: Callable | None = None,
    *,
    name: str | None = None,
    description: str | None = None,
    type: str | None = None,  # noqa: A002 - promptflow's keyword
    input_settings: Any = None,
    streaming_option_parameter: str | None = None,
    **kwargs: Any,
) -> Callable:
    """Mark a function (or a ``ToolProvider`` method) as the tool of a python node.

    Usable bare (``@tool``) or with promptflow's keywords, which are metadata only: the call is
    not wrapped, so a tool costs nothing extra to call."""

    def decorate(f: Callable) -> Callable:
        setattr(f, TOOL_MARKER, None)
        setattr(f, "__name", name)
        setattr(f, "__description", description)
        setattr(f, "__type", type)
        setattr(f, "__input_settings", input_settings)
        setattr(f, "__extra_info", kwargs)
        if streaming_option_parameter:
            setattr(f, STREAMING_OPTION_ATTR, streaming_option_parameter)
        return f

    return decorate(func) if func is not None else decorate


def is_tool(obj: Any) -> bool:
    return inspect.isfunction(obj) and hasattr(obj, TOOL_MARKER)


class ToolProvider:
    """Base class for class-based tools: ``__init__`` parameters come from the node's inputs
    and the instance is created once per flow; the ``@tool`` method is called for each line."""

    def __init__(self) -> None:  # subclasses may skip super().__init__()
        pass

    @classmethod
    def get_initialize_inputs(cls) -> dict[str, inspect.Parameter]:
        return {k: v for k, v in inspect.signature(cls.__init__).parameters.items() if k != "self"}


def is_tool_provider_class(obj: Any) -> bool:
    """A subclass of pfkit's or promptflow's ``ToolProvider`` (found by name in the MRO)."""
    return inspect.isclass(obj) and any(
        base.__name__ == "ToolProvider" for base in obj.__mro__[1:]
    )


def log_metric(key: str, value: Any, variant_id: str | None = None) -> None:
    """Record a run metric from an aggregation node; the last value logged for a key wins."""
    sink = metric_sink.get()
    if sink is not None:
        # a numpy scalar (np.mean's float64, a sum's int64) is recorded as the plain number
        numpy_scalar = type(value).__module__ == "numpy" and getattr(value, "ndim", None) == 0
        sink[key] = value.item() if numpy_scalar else value


def trace(func: Callable | None = None, **_: Any) -> Callable:
    """promptflow's ``@trace``: accepted and a no-op here (pfkit records node runs itself)."""
    if func is None:
        return lambda f: f
    return func


def start_trace(*_: Any, **__: Any) -> None:
    """promptflow's ``start_trace``: accepted and a no-op."""

