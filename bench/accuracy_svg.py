"""A line chart as hand-written SVG (no plotting library): shares 0-100% against pool size.

The x axis is linear from 0 to the largest pool; solid lines are tracked shares, dashed lines
correct shares; a legend sits inside the plot's lower right corner.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from xml.sax.saxutils import escape

WIDTH, HEIGHT = 720, 420
LEFT, RIGHT, TOP, BOTTOM = 60, 20, 40, 50


@dataclass(frozen=True, slots=True)
class Series:
    label: str
    points: list[tuple[int, float]]  # (pool size, share 0..1)
    color: str
    dashed: bool


def chart(series: Sequence[Series], title: str = "Calls tracked and correct per pool size") -> str:
    x_max = max((x for s in series for x, _ in s.points), default=1) or 1
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM

    def px(x: float) -> float:
        return LEFT + plot_w * x / x_max

    def py(share: float) -> float:
        return TOP + plot_h * (1 - share)

    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{HEIGHT}" '
        f'viewBox="0 0 {WIDTH} {HEIGHT}" font-family="sans-serif" font-size="12">',
        f'<rect width="{WIDTH}" height="{HEIGHT}" fill="white"/>',
        f'<text x="{WIDTH / 2}" y="22" text-anchor="middle" font-size="15">{escape(title)}</text>',
    ]
    parts += _y_grid(py, plot_w)
    for tick in _x_ticks(x_max):
        x, bottom = px(tick), TOP + plot_h
        parts.append(f'<line x1="{x:.1f}" y1="{TOP}" x2="{x:.1f}" y2="{bottom}" stroke="#eee"/>')
        parts.append(f'<text x="{x:.1f}" y="{bottom + 16}" text-anchor="middle">{tick}</text>')
    parts.append(
        f'<rect x="{LEFT}" y="{TOP}" width="{plot_w}" height="{plot_h}" fill="none" stroke="#333"/>'
    )
    parts.append(
        f'<text x="{LEFT + plot_w / 2}" y="{HEIGHT - 12}" text-anchor="middle">'
        "numbers in the pool</text>"
    )
    for s in series:
        points = " ".join(f"{px(x):.1f},{py(y):.1f}" for x, y in s.points)
        dash = ' stroke-dasharray="6 4"' if s.dashed else ""
        parts.append(
            f'<polyline points="{points}" fill="none" stroke="{s.color}" stroke-width="2"{dash}/>'
        )
        for x, y in s.points:
            parts.append(f'<circle cx="{px(x):.1f}" cy="{py(y):.1f}" r="2.5" fill="{s.color}"/>')
    parts += _legend(series, LEFT + plot_w - 170, TOP + plot_h - 20 * len(series) - 10)
    parts.append("</svg>")
    return "\n".join(parts) + "\n"


def _y_grid(py: Callable[[float], float], plot_w: int) -> list[str]:
    out = []
    for tick in range(0, 101, 10):
        y = py(tick / 100)
        out.append(
            f'<line x1="{LEFT}" y1="{y:.1f}" x2="{LEFT + plot_w}" y2="{y:.1f}" stroke="#ddd"/>'
        )
        out.append(f'<text x="{LEFT - 6}" y="{y + 4:.1f}" text-anchor="end">{tick}%</text>')
    return out


def _x_ticks(x_max: int) -> list[int]:
    step = 25 if x_max > 100 else 10
    return list(range(0, x_max + 1, step))


def _legend(series: Sequence[Series], x: float, y: float) -> list[str]:
    out = [
        f'<rect x="{x - 8}" y="{y - 14}" width="170" height="{20 * len(series) + 8}" '
        'fill="white" stroke="#999"/>'
    ]
    for i, s in enumerate(series):
        row = y + 20 * i
        dash = ' stroke-dasharray="6 4"' if s.dashed else ""
        out.append(
            f'<line x1="{x}" y1="{row - 4}" x2="{x + 30}" y2="{row - 4}" stroke="{s.color}" '
            f'stroke-width="2"{dash}/>'
        )
        out.append(f'<text x="{x + 38}" y="{row}">{escape(s.label)}</text>')
    return out
