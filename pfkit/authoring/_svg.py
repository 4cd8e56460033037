"""A flow's DAG as a self-contained SVG: layered layout, boxes and paths, no script, no network.

Flow inputs on the top row, each node one row below the lowest thing it reads, flow outputs at
the bottom. llm nodes are rounded, aggregation nodes drawn with a double border and the word
"aggregation", activate conditions as dashed edges labelled with their value.
"""

from __future__ import annotations

from dataclasses import dataclass
from html import escape
from pathlib import Path
from typing import Any

from ..spec import FlowInputRef, NodeRef

_CHAR = 7.0  # px per character at 12px sans-serif (an estimate is enough for box widths)
_BOX_H = 34
_ROW_GAP = 56
_COL_GAP = 24
_PAD = 16
_COLORS = {"input": "#e8f1fb", "output": "#eaf7ea", "python": "#fff7e6", "prompt": "#f3ecfb",
           "llm": "#fdecef", "custom_llm": "#fdecef", "aggregation": "#ececec"}


@dataclass(slots=True)
class _Box:
    key: str
    label: str
    kind: str
    row: int = 0
    x: float = 0.0
    width: float = 0.0
    aggregation: bool = False

    @property
    def center(self) -> float:
        return self.x + self.width / 2


@dataclass(frozen=True, slots=True)
class _Edge:
    source: str
    target: str
    activate: str | None = None  # the value of `is`, for activate edges


def _layout(graph: Any) -> tuple[dict[str, _Box], list[_Edge], dict[int, list[str]]]:
    spec = graph.spec
    boxes: dict[str, _Box] = {}
    edges: list[_Edge] = []
    for name, definition in spec.inputs.items():
        boxes[f"in:{name}"] = _Box(f"in:{name}", f"{name}: {definition.type}", "input")

    def source(ref: Any) -> str | None:
        if isinstance(ref, NodeRef):
            return f"n:{ref.node}"
        if isinstance(ref, FlowInputRef):
            return f"in:{ref.name}" if ref.name in spec.inputs else None
        return None

    for node in graph.nodes:
        key = f"n:{node.name}"
        kind = "aggregation" if node.aggregation else node.type
        label = f"{node.name} ({node.type})"
        if node.name in graph.variants_used:
            label += f" [{graph.variants_used[node.name]}]"
        boxes[key] = _Box(key, label, kind, aggregation=node.aggregation)
        seen: set[str] = set()
        for ref in node.inputs.values():
            src = source(ref)
            if src and src not in seen:
                seen.add(src)
                edges.append(_Edge(src, key))
        if node.activate:
            src = source(node.activate.when)
            if src:
                edges.append(_Edge(src, key, repr(node.activate.is_value)))
    for name, out in spec.outputs.items():
        key = f"out:{name}"
        boxes[key] = _Box(key, f"output: {name}", "output")
        src = source(out.reference)
        if src:
            edges.append(_Edge(src, key))

    parents: dict[str, list[str]] = {k: [] for k in boxes}
    for edge in edges:
        parents[edge.target].append(edge.source)
    for key in boxes:  # nodes come in topological order, inputs first, outputs last
        box = boxes[key]
        if box.kind == "input":
            box.row = 0
        else:
            box.row = 1 + max((boxes[p].row for p in parents[key]), default=0)
    last = max((b.row for b in boxes.values() if b.kind != "output"), default=0)
    for box in boxes.values():
        if box.kind == "output":
            box.row = max(box.row, last + 1)
        box.width = max(90.0, _CHAR * len(_text_of(box)) + 24)
    # an edge that spans rows passes through a small invisible box on each row between, so
    # that it is routed around the boxes of those rows (the layered-layout way)
    routes: dict[int, list[str]] = {}
    for number, edge in enumerate(edges):
        top, bottom = boxes[edge.source].row, boxes[edge.target].row
        chain = [edge.source]
        for row in range(top + 1, bottom):
            key = f"via:{number}:{row}"
            boxes[key] = _Box(key, "", "via", row=row, width=_VIA)
            parents[key] = [chain[-1]]
            chain.append(key)
        if len(chain) > 1:
            into = parents[edge.target]
            into[into.index(edge.source)] = chain[-1]
        routes[number] = chain + [edge.target]
    rows: dict[int, list[_Box]] = {}
    for box in boxes.values():
        rows.setdefault(box.row, []).append(box)
    # order each row by where its parents are (one barycenter pass keeps edges short)
    position: dict[str, float] = {}
    for row in sorted(rows):
        items = rows[row]
        if row > 0:
            def weight(b: _Box, items=items) -> float:
                xs = [position[p] for p in parents[b.key] if p in position]
                return sum(xs) / len(xs) if xs else float(items.index(b))
            items.sort(key=weight)
        x = 0.0
        for box in items:
            box.x = x
            position[box.key] = x + box.width / 2
            x += box.width + _COL_GAP
    width = max(sum(b.width for b in items) + _COL_GAP * (len(items) - 1)
                for items in rows.values())
    for items in rows.values():  # centre every row
        used = sum(b.width for b in items) + _COL_GAP * (len(items) - 1)
        shift = (width - used) / 2
        for box in items:
            box.x += shift + _PAD
    return boxes, edges, routes


_VIA = 10.0


def _text_of(box: _Box) -> str:
    return box.label + ("  \u00b7 aggregation" if box.aggregation else "")


def _y(row: int) -> float:
    return _PAD + row * (_BOX_H + _ROW_GAP)


def _ports(boxes: dict[str, _Box], routes: dict[int, list[str]]) -> dict[tuple[int, str], float]:
    """Where each edge leaves and enters a box: spread along its bottom and top edges."""
    out: dict[str, list[tuple[float, int]]] = {}
    into: dict[str, list[tuple[float, int]]] = {}
    for number, chain in routes.items():
        out.setdefault(chain[0], []).append((boxes[chain[1]].center, number))
        into.setdefault(chain[-1], []).append((boxes[chain[-2]].center, number))
    ports: dict[tuple[int, str], float] = {}
    for side, table in (("out", out), ("in", into)):
        for key, items in table.items():
            box = boxes[key]
            items.sort()
            for i, (_, number) in enumerate(items):
                ports[(number, side)] = box.x + box.width * (i + 1) / (len(items) + 1)
    return ports


def render_svg(graph: Any) -> str:
    """The planned flow (:class:`pfkit.graph.FlowGraph`) as SVG text."""
    boxes, edges, routes = _layout(graph)
    shown = [b for b in boxes.values() if b.kind != "via"]
    if not shown:
        return ('<svg xmlns="http://www.w3.org/2000/svg" width="200" height="40">'
                '<text x="10" y="24" font-family="sans-serif" font-size="12">(empty flow)</text>'
                "</svg>")
    width = max(b.x + b.width for b in boxes.values()) + _PAD
    height = _y(max(b.row for b in boxes.values())) + _BOX_H + _PAD
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" class="pfkit-graph" width="{width:.0f}" '
           f'height="{height:.0f}" viewBox="0 0 {width:.0f} {height:.0f}" '
           'font-family="sans-serif" font-size="12">',
           '<defs><marker id="pfkit-arrow" viewBox="0 0 10 10" refX="9" refY="5" '
           'markerWidth="7" markerHeight="7" orient="auto-start-reverse">'
           '<path d="M 0 0 L 10 5 L 0 10 z" fill="#555"/></marker></defs>']
    ports = _ports(boxes, routes)
    for number, edge in enumerate(edges):
        chain = routes[number]
        points = [(ports[(number, "out")], _y(boxes[chain[0]].row) + _BOX_H)]
        for key in chain[1:-1]:  # through each row between: top and bottom of the via box
            via = boxes[key]
            points.append((via.center, _y(via.row)))
            points.append((via.center, _y(via.row) + _BOX_H))
        points.append((ports[(number, "in")], _y(boxes[chain[-1]].row) - 2))
        d = f"M {points[0][0]:.1f} {points[0][1]:.1f}"
        for (x1, y1), (x2, y2) in zip(points, points[1:], strict=False):
            if x1 == x2 and y2 - y1 <= _BOX_H:
                d += f" L {x2:.1f} {y2:.1f}"
            else:
                mid = (y1 + y2) / 2
                d += f" C {x1:.1f} {mid:.1f}, {x2:.1f} {mid:.1f}, {x2:.1f} {y2:.1f}"
        dash = ' stroke-dasharray="5 4"' if edge.activate else ""
        cls = "activate" if edge.activate else "edge"
        out.append(f'<path class="{cls}" d="{d}" fill="none" stroke="#555" '
                   f'stroke-width="1.2"{dash} marker-end="url(#pfkit-arrow)"/>')
        if edge.activate:
            (xa, ya), (xb, yb) = points[-2], points[-1]
            out.append(f'<text x="{xa * 0.35 + xb * 0.65 + 4:.1f}" y="{ya * 0.35 + yb * 0.65:.1f}" '
                       f'font-size="10" fill="#555">activate is {escape(edge.activate)}</text>')
    for box in shown:
        y = _y(box.row)
        rx = 16 if box.kind in ("llm", "custom_llm") else 4
        fill = _COLORS.get(box.kind, "#ffffff")
        out.append(f'<g class="node {escape(box.kind)}"><title>{escape(box.label)}</title>')
        out.append(f'<rect x="{box.x:.1f}" y="{y:.1f}" width="{box.width:.1f}" '
                   f'height="{_BOX_H}" rx="{rx}" fill="{fill}" stroke="#333" stroke-width="1"/>')
        if box.aggregation:
            out.append(f'<rect x="{box.x + 3:.1f}" y="{y + 3:.1f}" width="{box.width - 6:.1f}" '
                       f'height="{_BOX_H - 6}" rx="{max(rx - 2, 1)}" fill="none" stroke="#333" '
                       'stroke-width="0.8"/>')
        label = _text_of(box)
        out.append(f'<text x="{box.center:.1f}" y="{y + _BOX_H / 2 + 4:.1f}" '
                   f'text-anchor="middle">{escape(label)}</text></g>')
    out.append("</svg>")
    return "\n".join(out) + "\n"


class FlowGraphView:
    """What ``flow.graph()`` returns: shown as SVG in Jupyter; ``.svg``, ``.mermaid`` as text,
    ``.save("graph.svg")``."""

    def __init__(self, graph: Any) -> None:
        self.graph = graph

    @classmethod
    def of(cls, path: str | Path, variant: Any = None) -> FlowGraphView:
        import warnings

        from ..graph import plan
        from ..spec import load_flow_spec

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            spec = load_flow_spec(path)
        return cls(plan(spec, variant))

    @property
    def svg(self) -> str:
        return render_svg(self.graph)

    @property
    def mermaid(self) -> str:
        from ..graph import to_mermaid

        return to_mermaid(self.graph)

    def save(self, path: str | Path) -> Path:
        target = Path(path)
        target.write_text(self.svg if target.suffix != ".mmd" else self.mermaid, encoding="utf-8")
        return target

    def _repr_svg_(self) -> str:
        return self.svg

    def _repr_html_(self) -> str:
        return f'<div class="pfkit-flow-graph">{self.svg}</div>'

    def __str__(self) -> str:
        return self.mermaid

    def __repr__(self) -> str:
        return f"FlowGraphView({len(self.graph.nodes)} nodes)"
