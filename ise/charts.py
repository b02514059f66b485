"""Small dependency-free SVG charts for the HTML report: bars, histograms and a heatmap.

Every label goes through html.escape, so the returned markup is safe to inline in a page. Charts are sized in
viewBox units and scale with the page.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from html import escape

WIDTH = 480
BAR_COLOR = "#4c78a8"
FONT = 'font-family="system-ui, sans-serif" font-size="11"'


def _svg(title: str, height: float, body: list[str]) -> str:
    return (
        f'<svg class="chart" viewBox="0 0 {WIDTH} {height:.0f}" role="img" aria-label="{escape(title)}" '
        f'xmlns="http://www.w3.org/2000/svg"><title>{escape(title)}</title>'
        f'<text x="0" y="14" {FONT} font-weight="bold">{escape(title)}</text>{"".join(body)}</svg>'
    )


def _number(value: float) -> str:
    return f"{value:.0f}" if float(value).is_integer() else f"{value:.2f}"


def bar_chart(title: str, items: Sequence[tuple[str, float]], *, unit: str = "") -> str:
    """Horizontal bars, one per (label, value), value printed at the bar's end."""
    if not items:
        return _svg(title, 40, [f'<text x="0" y="34" {FONT} fill="#888">no data</text>'])
    label_w, bar_h, gap, top = 180, 16, 6, 24
    top_value = max(value for _, value in items) or 1
    span = WIDTH - label_w - 60
    body = []
    for i, (label, value) in enumerate(items):
        y = top + i * (bar_h + gap)
        width = span * value / top_value
        body.append(
            f'<text x="{label_w - 6}" y="{y + 12}" text-anchor="end" {FONT}>{escape(label)}</text>'
            f'<rect x="{label_w}" y="{y}" width="{width:.1f}" height="{bar_h}" fill="{BAR_COLOR}">'
            f"<title>{escape(label)}: {_number(value)}{escape(unit)}</title></rect>"
            f'<text x="{label_w + width + 4:.1f}" y="{y + 12}" {FONT}>{_number(value)}{escape(unit)}</text>'
        )
    return _svg(title, top + len(items) * (bar_h + gap) + 4, body)


def histogram(title: str, values: Sequence[float], *, bins: int = 12, unit: str = "") -> str:
    """Counts of values in equal-width bins, with the range and median written under the axis."""
    if not values:
        return _svg(title, 40, [f'<text x="0" y="34" {FONT} fill="#888">no data</text>'])
    low, high = min(values), max(values)
    bins = max(1, min(bins, len(set(values))))
    width = (high - low) / bins or 1
    counts = [0] * bins
    for value in values:
        counts[min(bins - 1, int((value - low) / width))] += 1
    top, plot_h = 24, 110
    bar_w = WIDTH / bins
    peak = max(counts)
    body = []
    for i, count in enumerate(counts):
        height = plot_h * count / peak
        start, end = low + i * width, low + (i + 1) * width
        body.append(
            f'<rect x="{i * bar_w + 1:.1f}" y="{top + plot_h - height:.1f}" width="{bar_w - 2:.1f}" '
            f'height="{height:.1f}" fill="{BAR_COLOR}"><title>{_number(start)} to {_number(end)}{escape(unit)}: '
            f"{count}</title></rect>"
        )
    ordered = sorted(values)
    median = ordered[len(ordered) // 2]
    axis = top + plot_h + 14
    body.append(f'<text x="0" y="{axis}" {FONT}>{_number(low)}{escape(unit)}</text>')
    body.append(f'<text x="{WIDTH}" y="{axis}" text-anchor="end" {FONT}>{_number(high)}{escape(unit)}</text>')
    body.append(
        f'<text x="{WIDTH / 2}" y="{axis}" text-anchor="middle" {FONT}>'
        f"n={len(values)} · median {_number(median)}{escape(unit)}</text>"
    )
    return _svg(title, axis + 6, body)


def heatmap(
    title: str,
    rows: Sequence[str],
    columns: Sequence[str],
    values: dict[tuple[str, str], float],
    labels: dict[tuple[str, str], str] | None = None,
) -> str:
    """A rows x columns grid shaded by value (white = 0), each cell labelled with its value or the given text."""
    label_w, cell_h, top = 130, 22, 40
    cell_w = (WIDTH - label_w) / max(1, len(columns))
    peak = max(values.values(), default=0) or 1
    body = [
        f'<text x="{label_w + (j + 0.5) * cell_w:.1f}" y="{top - 6}" text-anchor="middle" {FONT}>{escape(col)}</text>'
        for j, col in enumerate(columns)
    ]
    for i, row in enumerate(rows):
        y = top + i * cell_h
        body.append(f'<text x="{label_w - 6}" y="{y + 15}" text-anchor="end" {FONT}>{escape(row)}</text>')
        for j, col in enumerate(columns):
            value = values.get((row, col), 0)
            shade = math.sqrt(value / peak)  # sqrt so sparse cells stay visible next to full ones
            text = (labels or {}).get((row, col), _number(value))
            body.append(
                f'<rect x="{label_w + j * cell_w:.1f}" y="{y}" width="{cell_w - 1:.1f}" height="{cell_h - 1}" '
                f'fill="rgb({255 - 179 * shade:.0f},{255 - 135 * shade:.0f},{255 - 87 * shade:.0f})" '
                f'data-row="{escape(row)}" data-col="{escape(col)}" data-value="{_number(value)}">'
                f"<title>{escape(row)}, {escape(col)}: {escape(text)}</title></rect>"
                f'<text x="{label_w + (j + 0.5) * cell_w:.1f}" y="{y + 15}" text-anchor="middle" {FONT}'
                f' fill="{"#fff" if shade > 0.6 else "#222"}">{escape(text)}</text>'
            )
    return _svg(title, top + len(rows) * cell_h + 4, body)
