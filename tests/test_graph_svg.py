"""The flow graph as SVG (pfkit.authoring): well-formed, self-contained (no script, no network),
every input, node and output drawn, activate and aggregation marked, names escaped."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

import pfkit
from pfkit.authoring import FlowGraphView
from pfkit.testing import EchoModel

ROOT = Path(__file__).resolve().parent.parent
NS = {"s": "http://www.w3.org/2000/svg"}

FLOW = """
inputs:
  text: {type: string}
  "a<b&c": {type: string, default: x}
outputs:
  out: {type: string, reference: "${join.output}"}
nodes:
- name: upper
  type: python
  source: {type: code, path: t.py}
  inputs: {text: "${inputs.text}"}
- name: lower
  type: python
  source: {type: code, path: t.py}
  inputs: {text: "${inputs.a<b&c}"}
  activate: {when: "${upper.output}", is: "HI"}
- name: join
  type: python
  source: {type: code, path: t.py}
  inputs: {text: "${lower.output}"}
- name: total
  type: python
  source: {type: code, path: t.py}
  inputs: {text: "${upper.output}"}
  aggregation: true
"""
TOOL = "from promptflow.core import tool\n\n@tool\ndef t(text: str) -> str:\n    return text\n"


def _parse(svg: str) -> ET.Element:
    return ET.fromstring(svg)


def test_every_input_node_and_output_is_a_box_and_every_reference_an_edge(make_flow):
    view = FlowGraphView.of(make_flow({"flow.dag.yaml": FLOW, "t.py": TOOL}))
    root = _parse(view.svg)
    groups = root.findall("s:g", NS)
    titles = sorted(g.find("s:title", NS).text for g in groups)
    assert titles == sorted(["text: string", "a<b&c: string", "upper (python)", "lower (python)",
                             "join (python)", "total (python)", "output: out"])
    edges = root.findall("s:path[@class='edge']", NS)
    activate = root.findall("s:path[@class='activate']", NS)
    # text->upper, a<b&c->lower, lower->join, upper->total, join->out; upper -activate-> lower
    assert len(edges) == 5 and len(activate) == 1
    assert activate[0].get("stroke-dasharray")
    assert any("activate is 'HI'" in (t.text or "") for t in root.iter(f"{{{NS['s']}}}text"))
    aggregation = [g for g in groups if "aggregation" in g.get("class")]
    assert len(aggregation) == 1 and len(aggregation[0].findall("s:rect", NS)) == 2


def test_rows_follow_dependencies(make_flow):
    view = FlowGraphView.of(make_flow({"flow.dag.yaml": FLOW, "t.py": TOOL}))
    root = _parse(view.svg)
    y = {g.find("s:title", NS).text: float(g.find("s:rect", NS).get("y"))
         for g in root.findall("s:g", NS)}
    assert y["text: string"] < y["upper (python)"] < y["lower (python)"] < y["join (python)"]
    assert y["join (python)"] < y["output: out"]


def test_svg_is_self_contained_and_escapes_names(make_flow):
    svg = FlowGraphView.of(make_flow({"flow.dag.yaml": FLOW, "t.py": TOOL})).svg
    assert "<script" not in svg and "a<b&c" not in svg and "a&lt;b&amp;c" in svg
    assert "http" not in svg.replace('xmlns="http://www.w3.org/2000/svg"', "")
    assert "<foreignObject" not in svg


def test_loaded_flow_graph_shows_the_chosen_variant():
    flow = pfkit.load_flow(ROOT / "flows" / "review_sentiment", variant="${classify.few_shot}",
                           models={"*": EchoModel()})
    view = flow.graph()
    assert "classify (llm) [few_shot]" in view.svg
    assert view._repr_html_().startswith('<div class="pfkit-flow-graph"><svg')
    assert "flowchart TD" in str(view)


def test_graph_saves_svg_or_mermaid(tmp_path, make_flow):
    view = FlowGraphView.of(make_flow({"flow.dag.yaml": FLOW, "t.py": TOOL}))
    assert view.save(tmp_path / "g.svg").read_text().startswith("<svg")
    assert view.save(tmp_path / "g.mmd").read_text().startswith("flowchart TD")


def test_cli_prints_the_svg(make_flow):
    import subprocess
    import sys

    folder = make_flow({"flow.dag.yaml": FLOW, "t.py": TOOL})
    done = subprocess.run([sys.executable, "-m", "pfkit", "flow", "graph", "--flow", str(folder),
                           "--format", "svg"], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert _parse(done.stdout).tag == "{http://www.w3.org/2000/svg}svg"
    mermaid = subprocess.run([sys.executable, "-m", "pfkit", "flow", "graph", "--flow",
                              str(folder)], capture_output=True, text=True, timeout=60)
    assert mermaid.stdout.startswith("flowchart TD")
