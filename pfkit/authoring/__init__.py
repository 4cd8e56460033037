"""Writing flows in Python (and in notebooks): build a DAG flow in code, save it as a folder
promptflow runs, and show flows, runs and metrics in Jupyter.

``FlowBuilder`` makes the flow (inputs, outputs, python nodes from functions, prompt and llm
nodes from templates, activate conditions, aggregation nodes, variants) and checks it with the
flow loader's own validation; ``flow.save(folder)`` writes ``flow.dag.yaml``, the scripts and the
templates; ``FlowBuilder.from_folder(folder)`` reads one back. ``init_flow`` writes a starter
flow (``pfkit flow init``).
"""

from ._builder import FlowBuilder, Inputs, Node
from ._display import Metrics, TqdmProgress, html_table, run_html
from ._init import FLOW_TYPES, init_flow
from ._refs import InputRef, OutputRef, Ref
from ._source import tool_script
from ._svg import FlowGraphView, render_svg

__all__ = ["FLOW_TYPES", "FlowBuilder", "FlowGraphView", "InputRef", "Inputs", "Metrics", "Node",
           "OutputRef", "Ref", "TqdmProgress", "html_table", "init_flow", "render_svg",
           "run_html", "tool_script"]
