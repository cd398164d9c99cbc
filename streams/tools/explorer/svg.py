"""The explorer's plots as inline SVG, drawn here: nothing to download, build or run in the
browser. Each drawn point carries its value in ``data-`` attributes, so a test (or a curious
reader of the page source) can check a plot against Redis.

>>> chart = line_chart([Series("vip", [(0.0, 1.0), (60.0, 3.0)], "#1f77b4")])
>>> chart.count('class="point"'), 'data-value="3"' in chart
(2, True)
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass
from html import escape

#: Colours told apart by most readers, colour-blind ones included (Okabe-Ito, then Tableau).
PALETTE = ("#0072B2", "#E69F00", "#009E73", "#D55E00", "#CC79A7", "#56B4E9", "#F0E442",
           "#000000", "#8c564b", "#7f7f7f", "#bcbd22", "#17becf")
LEFT, RIGHT, TOP, BOTTOM = 56, 12, 10, 26


@dataclass(frozen=True, slots=True)
class Series:
    """One line of a chart: (unix time, value) points, oldest first."""

    name: str
    points: list[tuple[float, float]]
    colour: str


def colour(index: int) -> str:
    return PALETTE[index % len(PALETTE)]


def line_chart(series: Sequence[Series], width: int = 640, height: int = 220,
               label: str = "members") -> str:
    """Lines over wall-clock time, from a zero baseline; one circle per point."""
    points = [p for s in series for p in s.points]
    if not points:
        return _empty(width, height, "no history yet: the workers sample it every minute")
    frame = _Frame(points, width, height, baseline=0.0)
    parts = [frame.axes(label)]
    for line in series:
        coords = [(frame.x(t), frame.y(v)) for t, v in line.points]
        path = " ".join(f"{x:.1f},{y:.1f}" for x, y in coords)
        name = escape(line.name)
        parts.append(f'<polyline class="line" data-series="{name}" points="{path}" fill="none" '
                     f'stroke="{line.colour}" stroke-width="2"/>')
        radius = 2.5 if len(coords) <= 120 else 0.0  # too many points: the line says it all
        parts += [f'<circle class="point" data-series="{name}" data-t="{t:.0f}" '
                  f'data-value="{v:g}" cx="{x:.1f}" cy="{y:.1f}" r="{radius}" '
                  f'fill="{line.colour}"><title>{name}: {v:g} at {_clock(t)}</title></circle>'
                  for (t, v), (x, y) in zip(line.points, coords, strict=True)]
    return _svg(width, height, "".join(parts), "size over time")


def flow_chart(entries: list[tuple[float, float]], exits: list[tuple[float, float]],
               width: int = 640, height: int = 180) -> str:
    """Entries (up, green) and exits (down, red) per sampling interval, as bars."""
    if not entries:
        return _empty(width, height, "no entries or exits yet (two samples are needed)")
    points = entries + [(t, -v) for t, v in exits]
    interval = (entries[-1][0] - entries[0][0]) / max(1, len(entries) - 1)
    frame = _Frame(points, width, height, baseline=0.0, pad_t=max(0.5, interval / 2))
    step = (frame.x(entries[-1][0]) - frame.x(entries[0][0])) / max(1, len(entries) - 1)
    bar = max(1.0, min(14.0, step * 0.8))
    zero = frame.y(0.0)
    parts = [frame.axes("per interval")]
    for kind, sign, fill, values in (("entries", 1, "#2e8b57", entries),
                                     ("exits", -1, "#c0392b", exits)):
        for t, v in values:
            top = frame.y(sign * v)
            y, h = min(top, zero), abs(zero - top)
            parts.append(f'<rect class="bar" data-kind="{kind}" data-t="{t:.0f}" '
                         f'data-value="{v:g}" x="{frame.x(t) - bar / 2:.1f}" y="{y:.1f}" '
                         f'width="{bar:.1f}" height="{h:.1f}" fill="{fill}">'
                         f'<title>{kind}: {v:g} by {_clock(t)}</title></rect>')
    return _svg(width, height, "".join(parts), "entries and exits")


def heatmap(rows: Sequence[tuple[str, str]], columns: Sequence[str],
            z: Sequence[Sequence[float]], shown: Sequence[Sequence[str]]) -> str:
    """Rows (segment id, label) x columns, each cell coloured by its z-score (blue: below the
    other rows, red: above; full colour at 2 standard deviations) and labelled ``shown``."""
    cell_w, cell_h, label_w, head_h = 78, 30, 330, 92
    # room on the right for the last column's slanted name
    width, height = label_w + cell_w * len(columns) + 110, head_h + cell_h * len(rows) + 4
    parts = []
    for j, column in enumerate(columns):
        x = label_w + cell_w * j + cell_w / 2
        parts.append(f'<text x="{x:.0f}" y="{head_h - 6}" transform="rotate(-35 {x:.0f} '
                     f'{head_h - 6})" font-size="11">{escape(column.replace("_", " "))}</text>')
    for i, (segment, label) in enumerate(rows):
        y = head_h + cell_h * i
        parts.append(f'<text x="4" y="{y + cell_h / 2 + 4:.0f}" font-size="12">'
                     f'<tspan font-weight="bold">{escape(segment)}</tspan> '
                     f'{escape(_shorten(label, 44))}</text>')
        for j, column in enumerate(columns):
            value, x = z[i][j], label_w + cell_w * j
            ink = "#fff" if abs(value) > 1.3 else "#222"
            parts.append(
                f'<rect class="cell" data-segment="{escape(segment)}" '
                f'data-feature="{escape(column)}" data-z="{value:.2f}" x="{x}" y="{y}" '
                f'width="{cell_w - 2}" height="{cell_h - 2}" fill="{_diverging(value)}">'
                f'<title>{escape(segment)} {escape(column)}: {escape(shown[i][j])} '
                f'(z {value:+.1f})</title></rect>'
                f'<text x="{x + cell_w / 2 - 1:.0f}" y="{y + cell_h / 2 + 3:.0f}" '
                f'text-anchor="middle" font-size="11" fill="{ink}">{escape(shown[i][j])}</text>')
    return _svg(width, height, "".join(parts), "behaviour profiles")


class _Frame:
    """Maps time and value onto the plot area, and draws its axes."""

    def __init__(self, points: list[tuple[float, float]], width: int, height: int,
                 baseline: float, pad_t: float = 0.0) -> None:
        """``pad_t``: room left and right of the first and last times (for bars)."""
        times = [t for t, _ in points]
        values = [v for _, v in points] + [baseline]
        self.t0, self.t1 = min(times) - pad_t, max(times) + pad_t
        if self.t1 - self.t0 < 1:
            self.t0, self.t1 = self.t0 - 30, self.t1 + 30
        self.v0, self.v1 = min(values), _nice_top(max(values))
        if self.v1 <= self.v0:
            self.v1 = self.v0 + 1
        self.width, self.height = width, height

    def x(self, t: float) -> float:
        span = self.width - LEFT - RIGHT
        return LEFT + span * (t - self.t0) / (self.t1 - self.t0)

    def y(self, v: float) -> float:
        span = self.height - TOP - BOTTOM
        return TOP + span * (1 - (v - self.v0) / (self.v1 - self.v0))

    def axes(self, label: str) -> str:
        parts = []
        for k in range(5):
            v = self.v0 + (self.v1 - self.v0) * k / 4
            y = self.y(v)
            parts.append(f'<line x1="{LEFT}" x2="{self.width - RIGHT}" y1="{y:.1f}" '
                         f'y2="{y:.1f}" stroke="#e3e3e3"/><text x="{LEFT - 6}" y="{y + 4:.1f}" '
                         f'text-anchor="end" font-size="11" fill="#555">{_number(v)}</text>')
        for k in range(4):
            t = self.t0 + (self.t1 - self.t0) * k / 3
            anchor = ("start", "middle", "middle", "end")[k]
            parts.append(f'<text x="{self.x(t):.1f}" y="{self.height - 6}" font-size="11" '
                         f'text-anchor="{anchor}" fill="#555">{_clock(t)}</text>')
        parts.append(f'<text x="4" y="{TOP + 2}" font-size="10" fill="#888" '
                     f'transform="rotate(90 4 {TOP + 2})">{escape(label)}</text>')
        return "".join(parts)


def _svg(width: int, height: int, body: str, title: str) -> str:
    return (f'<svg xmlns="http://www.w3.org/2000/svg" role="img" width="{width}" '
            f'height="{height}" viewBox="0 0 {width} {height}" aria-label="{escape(title)}" '
            f'font-family="system-ui, sans-serif">{body}</svg>')


def _empty(width: int, height: int, message: str) -> str:
    body = (f'<rect width="{width}" height="{height}" fill="#fafafa" stroke="#ddd"/>'
            f'<text x="{width / 2}" y="{height / 2}" text-anchor="middle" font-size="13" '
            f'fill="#777">{escape(message)}</text>')
    return _svg(width, height, body, message)


def _diverging(z: float) -> str:
    """White at 0, to blue below and red above, saturated at |z| = 2."""
    share = min(1.0, abs(z) / 2)
    end = (33, 102, 172) if z < 0 else (178, 24, 43)
    red, green, blue = (round(255 + (c - 255) * share) for c in end)
    return f"#{red:02x}{green:02x}{blue:02x}"


def _nice_top(value: float) -> float:
    """The smallest 1, 2, 2.5 or 5 times a power of ten at or above ``value``."""
    if value <= 0:
        return 0.0
    power = 10 ** math.floor(math.log10(value))
    return next(power * m for m in (1, 2, 2.5, 5, 10) if power * m >= value)


def _number(value: float) -> str:
    if abs(value) >= 10_000:
        return f"{value / 1000:g}k"
    return f"{value:g}"


def _clock(t: float) -> str:
    return time.strftime("%H:%M:%S", time.gmtime(t)) if t else ""


def _shorten(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[:limit - 1] + "…"
