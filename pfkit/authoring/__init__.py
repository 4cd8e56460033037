"""Writing flows in Python (and in notebooks): build a DAG flow in code, save it as a folder
promptflow runs, and show flows, runs and metrics in Jupyter.

``FlowBuilder`` makes the flow (inputs, outputs, python nodes from functions, prompt and llm
nodes from templates, activate conditions, aggregation nodes, variants) and checks it with the
flow loader's own validation; ``flow.save(folder)`` writes ``flow.dag.yaml``, the scripts and the
templates; ``FlowBuilder.from_folder(folder)`` reads one back. ``init_flow`` writes a starter
flow (``pfkit flow init``). Names load on first use (``Run.metrics()`` imports only the
display helpers).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

_LAZY = {
    "FlowBuilder": "_builder", "Inputs": "_builder", "Node": "_builder",
    "Metrics": "_display", "TqdmProgress": "_display", "html_table": "_display",
    "run_html": "_display",
    "FLOW_TYPES": "_init", "init_flow": "_init", "init_command": "_init",
    "InputRef": "_refs", "OutputRef": "_refs", "Ref": "_refs",
    "tool_script": "_source",
    "FlowGraphView": "_svg", "render_svg": "_svg",
}

if TYPE_CHECKING:  # pragma: no cover
    from ._builder import FlowBuilder, Inputs, Node
    from ._display import Metrics, TqdmProgress, html_table, run_html
    from ._init import FLOW_TYPES, init_command, init_flow
    from ._refs import InputRef, OutputRef, Ref
    from ._source import tool_script
    from ._svg import FlowGraphView, render_svg


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'pfkit.authoring' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value
    return value


__all__ = ["FLOW_TYPES", "FlowBuilder", "FlowGraphView", "InputRef", "Inputs", "Metrics", "Node",
           "OutputRef", "Ref", "TqdmProgress", "html_table", "init_command", "init_flow", "render_svg",
           "run_html", "tool_script"]
