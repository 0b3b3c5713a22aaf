"""Drawings of a lifecycle's transitions table: Mermaid, Graphviz dot, and an SVG for the dashboard.

The SVG is drawn here (no JavaScript library, no network) so the dashboard shows the lifecycle the
workers really run, even on a machine without internet access; grandalf lays it out.
"""

from __future__ import annotations

from html import escape

from grandalf.graphs import Edge, Graph, Vertex
from grandalf.layouts import SugiyamaLayout
from grandalf.routing import route_with_lines

from streams.core.lifecycle import Lifecycle, StatusTimeout, Transition

START = "(new)"


def _label(event: str, effects: tuple[str, ...]) -> str:
    return event + (f" / POST {', '.join('/' + e for e in effects)}" if effects else "")


def _after(seconds: float) -> str:
    for unit, size in (("d", 86_400), ("h", 3_600), ("m", 60)):
        if seconds >= size and seconds % size == 0:
            return f"{seconds / size:g}{unit}"
    return f"{seconds:g}s"


def _timeout_label(timeout: StatusTimeout) -> str:
    return f"after {_after(timeout.after_s)}: " + ("stuck" if timeout.stuck else str(timeout.event))


def mermaid(lifecycle: Lifecycle) -> str:
    lines = ["stateDiagram-v2"]
    for row in lifecycle.transitions:
        source = "[*]" if row.source is None else row.source
        lines.append(f"    {source} --> {row.target}: {_label(row.event, row.effects)}")
    lines.extend(f"    {status} --> [*]" for status in sorted(lifecycle.final))
    for t in lifecycle.timeouts.values():  # Mermaid has no dashed edges: a note per timeout
        lines.append(f"    note right of {t.status}: {_timeout_label(t)}")
    return "\n".join(lines) + "\n"


def dot(lifecycle: Lifecycle) -> str:
    lines = ["digraph lifecycle {", "    rankdir=LR;", '    node [shape=box, style=rounded];',
             f'    "{START}" [shape=point];']
    lines.extend(f'    "{status}" [peripheries=2];' for status in sorted(lifecycle.final))
    for row in lifecycle.transitions:
        source = START if row.source is None else row.source
        lines.append(f'    "{source}" -> "{row.target}" [label="{_label(row.event, row.effects)}"];')
    for t in lifecycle.timeouts.values():
        taken = lifecycle.step(t.status, t.event) if t.event is not None else None
        target = taken.target if taken is not None else t.status  # stuck: a loop on the status
        lines.append(f'    "{t.status}" -> "{target}" [style=dashed, label="{_timeout_label(t)}"];')
    lines.append("}")
    return "\n".join(lines) + "\n"


class _Box:
    """grandalf's view of a vertex: its size in the layout's axes (layers run top-down there; the
    drawing turns them left to right, so the layout's width is the box's height)."""

    def __init__(self, across: float, along: float) -> None:
        self.w, self.h = across, along
        self.xy = (0.0, 0.0)


Point = tuple[float, float]


class _Path:
    """grandalf's view of an edge: the points it routes the edge through."""

    def __init__(self) -> None:
        self.points: list[Point] = []
        self.head_angle = 0.0

    def setpath(self, points: list[Point]) -> None:
        self.points = points


def _layout(lifecycle: Lifecycle, box_w: int, box_h: int, gap_x: int,
            gap_y: int) -> tuple[dict[str, Point], list[tuple[Transition, list[Point]]]]:
    """Box centres and edge paths, left to right: grandalf's layered (Sugiyama) layout, which
    orders statuses to cross edges as little as possible and routes long edges around boxes."""
    names = sorted({START, *(r.target for r in lifecycle.transitions)})
    vertices = {name: Vertex(name) for name in names}
    for vertex in vertices.values():
        vertex.view = _Box(box_h, box_w)
    edges = []
    for row in lifecycle.transitions:
        edge = Edge(vertices[START if row.source is None else row.source], vertices[row.target], data=row)
        edge.view = _Path()
        edges.append(edge)
    graph = Graph(list(vertices.values()), edges)
    for component in graph.C:
        layout = SugiyamaLayout(component)
        layout.xspace, layout.yspace = gap_y, gap_x
        layout.route_edge = route_with_lines
        layout.init_all()
        layout.draw()
    centres = {name: (v.view.xy[1], v.view.xy[0]) for name, v in vertices.items()}
    paths = [(edge.data, [(y, x) for x, y in edge.view.points]) for edge in edges]
    return centres, paths


def svg(lifecycle: Lifecycle, box_w: int = 110, box_h: int = 30, gap_x: int = 80,
        gap_y: int = 40) -> str:
    """Statuses as boxes, transitions as labelled arrows laid out by grandalf (finals with a
    double border, timeouts under their status)."""
    centres, paths = _layout(lifecycle, box_w, box_h, gap_x, gap_y)
    xs = [x for x, _ in centres.values()] + [x for _, pts in paths for x, _ in pts]
    ys = [y for _, y in centres.values()] + [y for _, pts in paths for _, y in pts]
    left, top = min(xs) - box_w / 2 - 20, min(ys) - box_h / 2 - 20
    width = int(max(xs) + box_w / 2 + 20 - left)
    height = int(max(ys) + box_h / 2 + 40 - top)

    def at(x: float, y: float) -> str:
        return f"{x - left:.0f},{y - top:.0f}"

    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" class="lifecycle" width="{width}" '
             f'height="{height}" viewBox="0 0 {width} {height}" font-family="sans-serif" font-size="11">',
             '<defs><marker id="arrow" viewBox="0 0 10 10" refX="10" refY="5" markerWidth="7" '
             'markerHeight="7" orient="auto"><path d="M0,0 L10,5 L0,10 z" fill="#555"/></marker></defs>']
    labels = []
    for row, points in paths:
        parts.append(f'<polyline points="{" ".join(at(x, y) for x, y in points)}" fill="none" '
                     'stroke="#555" marker-end="url(#arrow)"/>')
        middle = len(points) // 2
        (x1, y1), (x2, y2) = points[max(0, middle - 1)], points[middle]
        label = escape(row.event + (" ⚡" if row.effects else ""))
        labels.append(f'<text x="{(x1 + x2) / 2 - left:.0f}" y="{(y1 + y2) / 2 - top - 3:.0f}" '
                      f'text-anchor="middle" fill="#333" stroke="#fafafa" stroke-width="3" '
                      f'paint-order="stroke">{label}</text>')
    for status, (cx, cy) in centres.items():
        x, y = cx - box_w / 2 - left, cy - box_h / 2 - top
        if status == START:
            parts.append(f'<circle cx="{x + box_w - 8:.0f}" cy="{y + box_h / 2:.0f}" r="6" fill="#333"/>')
            continue
        final = status in lifecycle.final
        parts.append(f'<rect x="{x:.0f}" y="{y:.0f}" width="{box_w}" height="{box_h}" rx="8" fill="#eef4ff" '
                     f'stroke="#335" stroke-width="{3 if final else 1}"/>')
        parts.append(f'<text x="{x + box_w / 2:.0f}" y="{y + box_h / 2 + 4:.0f}" text-anchor="middle" '
                     f'data-status="{escape(status)}">{escape(status)}</text>')
        timeout = lifecycle.timeouts.get(status)
        if timeout is not None:
            parts.append(f'<text x="{x + box_w / 2:.0f}" y="{y + box_h + 12:.0f}" text-anchor="middle" '
                         f'fill="#a50" font-size="10">⏱ {escape(_timeout_label(timeout))}</text>')
    parts.extend(labels)  # over the lines, each with a halo, so a crossing line does not hide it
    parts.append(f'<text x="20" y="{height - 6}" fill="#666">⚡ calls an HTTP effect; '
                 'thick border: final status</text></svg>')
    return "".join(parts)
