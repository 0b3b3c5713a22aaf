"""Drawings of a lifecycle's transitions table: Mermaid, Graphviz dot, and an SVG for the dashboard.

The SVG is drawn here (no JavaScript library, no network) so the dashboard shows the lifecycle the
workers really run, even on a machine without internet access.
"""

from __future__ import annotations

from html import escape

from streams.lifecycle import Lifecycle, StatusTimeout

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


def _columns(lifecycle: Lifecycle) -> list[list[str]]:
    """Statuses by their shortest distance from a new order (breadth first)."""
    depth: dict[str, int] = {START: 0}
    frontier = [START]
    while frontier:
        following = []
        for status in frontier:
            for row in lifecycle.transitions:
                source = START if row.source is None else row.source
                if source == status and row.target not in depth:
                    depth[row.target] = depth[status] + 1
                    following.append(row.target)
        frontier = following
    columns: list[list[str]] = [[] for _ in range(max(depth.values()) + 1)]
    for status, d in depth.items():
        columns[d].append(status)
    return [sorted(c) for c in columns]


def svg(lifecycle: Lifecycle, box_w: int = 110, box_h: int = 30, gap_x: int = 70,
        gap_y: int = 36) -> str:
    """Statuses as boxes in columns, transitions as labelled arrows (finals with a double border)."""
    columns = _columns(lifecycle)
    where: dict[str, tuple[int, int]] = {}
    for c, column in enumerate(columns):
        for r, status in enumerate(column):
            where[status] = (20 + c * (box_w + gap_x), 20 + r * (box_h + gap_y))
    width = 40 + len(columns) * (box_w + gap_x) - gap_x
    height = 40 + max(len(c) for c in columns) * (box_h + gap_y) - gap_y + 20
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" class="lifecycle" width="{width}" '
             f'height="{height}" viewBox="0 0 {width} {height}" font-family="sans-serif" font-size="11">',
             '<defs><marker id="arrow" viewBox="0 0 10 10" refX="10" refY="5" markerWidth="7" '
             'markerHeight="7" orient="auto"><path d="M0,0 L10,5 L0,10 z" fill="#555"/></marker></defs>']
    for row in lifecycle.transitions:
        sx, sy = where[START if row.source is None else row.source]
        tx, ty = where[row.target]
        x1: float = sx + box_w
        y1: float = sy + box_h / 2
        x2, y2 = (tx, ty + box_h / 2) if tx > sx else (tx + box_w / 2, ty + (0 if ty > sy else box_h))
        if tx <= sx:
            x1, y1 = sx + box_w / 2, sy + (box_h if ty > sy else 0)
        parts.append(f'<line x1="{x1:.0f}" y1="{y1:.0f}" x2="{x2:.0f}" y2="{y2:.0f}" stroke="#555" '
                     'marker-end="url(#arrow)"/>')
        label = escape(row.event + (" ⚡" if row.effects else ""))
        parts.append(f'<text x="{(x1 + x2) / 2:.0f}" y="{(y1 + y2) / 2 - 3:.0f}" text-anchor="middle" '
                     f'fill="#333">{label}</text>')
    for status, (x, y) in where.items():
        if status == START:
            parts.append(f'<circle cx="{x + box_w - 8}" cy="{y + box_h / 2:.0f}" r="6" fill="#333"/>')
            continue
        final = status in lifecycle.final
        parts.append(f'<rect x="{x}" y="{y}" width="{box_w}" height="{box_h}" rx="8" fill="#eef4ff" '
                     f'stroke="#335" stroke-width="{3 if final else 1}"/>')
        parts.append(f'<text x="{x + box_w / 2:.0f}" y="{y + box_h / 2 + 4:.0f}" text-anchor="middle" '
                     f'data-status="{escape(status)}">{escape(status)}</text>')
        timeout = lifecycle.timeouts.get(status)
        if timeout is not None:
            parts.append(f'<text x="{x + box_w / 2:.0f}" y="{y + box_h + 12}" text-anchor="middle" '
                         f'fill="#a50" font-size="10">⏱ {escape(_timeout_label(timeout))}</text>')
    parts.append(f'<text x="20" y="{height - 6}" fill="#666">⚡ calls an HTTP effect; '
                 'thick border: final status</text></svg>')
    return "".join(parts)
