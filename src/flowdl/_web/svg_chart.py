"""Small static SVG charts drawn in Python, for places without scripts (a notebook cell).

One panel per metric, each with its own value axis (a loss on a log scale when all its
values are positive), its lowest and highest value on the axis and its last value in
the corner. Names are escaped; NaN, infinities and ``None`` are gaps.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

from flowdl._format import format_metric
from flowdl._web.assets import html_text, palette

# One panel's size in pixels, and how many panels fit in a row.
PANEL_WIDTH = 260
PANEL_HEIGHT = 110
PER_ROW = 3
_PAD = {"l": 8, "r": 8, "t": 20, "b": 14}

Points = Sequence[tuple[int, float | None]]


def small_multiples_svg(series: Mapping[str, Points], total_epochs: int) -> str:
    """An SVG of one small line chart per series, epochs 1 to `total_epochs` across.

    Args:
        series: ``{name: [(epoch, value or None), ...]}``, in drawing order.
        total_epochs: the run's length (the horizontal axis' end).

    Returns:
        The ``<svg>`` element as text (empty panels say "no values yet").

    Example:
        >>> svg = small_multiples_svg({"loss": [(1, 1.0), (2, 0.1)], "<b>": [(1, 3.0)]}, 10)
        >>> svg.startswith("<svg"), svg.count('class="panel"'), "&lt;b&gt;" in svg
        (True, 2, True)
        >>> 'data-scale="log"' in svg  # losses on a log scale
        True
    """
    names = list(series)
    colours = palette(len(names))
    rows = max(1, math.ceil(len(names) / PER_ROW))
    columns = min(PER_ROW, max(1, len(names)))
    width, height = columns * PANEL_WIDTH, rows * PANEL_HEIGHT
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" font-family="system-ui, sans-serif" font-size="11">'
    ]
    for index, name in enumerate(names):
        x0 = (index % PER_ROW) * PANEL_WIDTH
        y0 = (index // PER_ROW) * PANEL_HEIGHT
        parts.append(
            _panel(name, series[name], total_epochs, x0, y0, colours[index % len(colours)])
        )
    parts.append("</svg>")
    return "".join(parts)


def _panel(name: str, points: Points, total: int, x0: int, y0: int, colour: str) -> str:
    finite = [(e, v) for e, v in points if v is not None and math.isfinite(v)]
    log = "loss" in name.lower() and bool(finite) and all(v > 0 for _, v in finite)
    scale = "log" if log else "linear"
    head = (
        f'<g class="panel" data-metric="{html_text(name)}" data-scale="{scale}" '
        f'transform="translate({x0},{y0})">'
        f'<rect x="2" y="2" width="{PANEL_WIDTH - 4}" height="{PANEL_HEIGHT - 4}" rx="6" '
        'fill="#fff" stroke="#e5e7eb"/>'
        f'<text x="{_PAD["l"]}" y="14" fill="#374151" font-weight="600">{html_text(name)}'
        f"{' (log)' if log else ''}</text>"
    )
    if not finite:
        return head + f'<text x="{_PAD["l"]}" y="50" fill="#9ca3af">no values yet</text></g>'
    values = [math.log10(v) if log else v for _, v in finite]
    low, high = min(values), max(values)
    if high == low:
        low, high = low - 0.5, high + 0.5
    left, right = _PAD["l"] + 40, PANEL_WIDTH - _PAD["r"]
    top, bottom = _PAD["t"] + 4, PANEL_HEIGHT - _PAD["b"]
    span = max(1, total - 1)

    def x(epoch: int) -> float:
        return left + (min(epoch, total) - 1) / span * (right - left)

    def y(value: float) -> float:
        v = math.log10(value) if log else value
        return bottom - (v - low) / (high - low) * (bottom - top)

    path, pen = [], False
    for epoch, value in points:
        if value is None or not math.isfinite(value) or (log and value <= 0):
            pen = False
            continue
        path.append(f"{'L' if pen else 'M'}{x(epoch):.1f} {y(value):.1f}")
        pen = True
    lowest = min(v for _, v in finite)
    highest = max(v for _, v in finite)
    last_epoch, last = finite[-1]
    return (
        head + f'<text x="{left - 4}" y="{top + 8}" text-anchor="end" fill="#6b7280">'
        f"{format_metric(highest)}</text>"
        f'<text x="{left - 4}" y="{bottom}" text-anchor="end" fill="#6b7280">'
        f"{format_metric(lowest)}</text>"
        f'<line x1="{left}" x2="{left}" y1="{top}" y2="{bottom}" stroke="#d1d5db"/>'
        f'<path d="{" ".join(path)}" fill="none" stroke="{colour}" stroke-width="2"/>'
        f'<circle cx="{x(last_epoch):.1f}" cy="{y(last):.1f}" r="2.5" fill="{colour}"/>'
        f'<text x="{right}" y="14" text-anchor="end" fill="{colour}">'
        f"epoch {last_epoch}: {format_metric(last)}</text></g>"
    )
