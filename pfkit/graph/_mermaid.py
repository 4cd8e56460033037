"""Render a planned flow as a Mermaid flowchart."""

from __future__ import annotations

import re
import zlib

from ..spec import FlowInputRef, NodeRef
from ._plan import FlowGraph

_SAFE = re.compile(r"[^A-Za-z0-9_]")


def _id(prefix: str, name: str) -> str:
    """A Mermaid id for a name: distinct names get distinct ids ('a-b' and 'a_b' too)."""
    safe = _SAFE.sub("_", name)
    if safe != name:
        safe += f"_{zlib.crc32(name.encode('utf-8')):08x}"
    return f"{prefix}_{safe}"


def _label(text: str) -> str:
    return (text.replace('"', "#quot;").replace("<", "#lt;").replace(">", "#gt;")
            .replace("\r", " ").replace("\n", " "))


def to_mermaid(graph: FlowGraph) -> str:
    """Flow inputs, nodes (by kind) and outputs, with an edge for every reference.
    Dotted edges are activate conditions; aggregation nodes are drawn as subroutines."""
    spec = graph.spec
    lines = ["flowchart TD"]
    for name in spec.inputs:
        lines.append(f'    {_id("in", name)}[/"input: {_label(name)}"/]')
    for node in graph.nodes:
        label = _label(f"{node.name} ({node.type})")
        if node.aggregation:
            lines.append(f'    {_id("n", node.name)}[["{label}"]]')
        elif node.type in ("llm", "custom_llm"):
            lines.append(f'    {_id("n", node.name)}(["{label}"])')
        else:
            lines.append(f'    {_id("n", node.name)}["{label}"]')
    for name in spec.outputs:
        lines.append(f'    {_id("out", name)}[\\"output: {_label(name)}"\\]')

    def source(ref) -> str | None:
        if isinstance(ref, NodeRef):
            return _id("n", ref.node)
        if isinstance(ref, FlowInputRef):
            return _id("in", ref.name)
        return None

    for node in graph.nodes:
        seen = set()
        for ref in node.inputs.values():
            src = source(ref)
            if src and src not in seen:
                seen.add(src)
                lines.append(f"    {src} --> {_id('n', node.name)}")
        if node.activate:
            src = source(node.activate.when)
            if src:
                lines.append(f'    {src} -. "activate is {_label(repr(node.activate.is_value))}" .-> '
                             f"{_id('n', node.name)}")
    for out in spec.outputs.values():
        src = source(out.reference)
        if src:
            lines.append(f"    {src} --> {_id('out', out.name)}")
    return "\n".join(lines) + "\n"
