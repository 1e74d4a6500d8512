"""The score-over-time chart, drawn on the server as SVG geometry from the log's data.

No script draws it: the template writes these numbers into an inline
``<svg>``, so the picture is there with scripts off, prints, and needs no
charting library. The x axis is the time each event was stored (the
evidence, its assessment and a decision share one clock); the y axis is the
score, 0 to 1, over bands coloured by the level its thresholds give.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Sequence
    from datetime import datetime

__all__ = ["WIDTH", "Chart", "Marker", "Point", "chart", "contribution_bars"]

WIDTH = 720
HEIGHT = 240
_LEFT, _RIGHT, _TOP, _BOTTOM = 44, 12, 10, 34
_LEVELS = ("low", "medium", "high", "critical")


@dataclass(frozen=True, slots=True)
class Point:
    """A plotted assessment."""

    x: float
    y: float
    score: float
    level: str
    label: str


@dataclass(frozen=True, slots=True)
class Marker:
    """A vertical mark: an evidence event or a decision."""

    x: float
    kind: str
    label: str


@dataclass(frozen=True, slots=True)
class Band:
    """A horizontal band of one level."""

    level: str
    y: float
    height: float
    label_y: float


@dataclass(frozen=True, slots=True)
class Chart:
    """Everything the template draws."""

    width: int
    height: int
    left: int
    right: float
    top: int
    bottom: float
    bands: tuple[Band, ...]
    points: tuple[Point, ...]
    line: str
    """The polyline's ``points`` attribute."""
    evidence: tuple[Marker, ...]
    decisions: tuple[Marker, ...]
    ticks: tuple[tuple[float, str], ...]
    """(y, label) of the score axis."""
    start: str
    end: str


def chart(
    assessments: Sequence[tuple[datetime, float, str, str]],
    evidence: Sequence[tuple[datetime, str]],
    decisions: Sequence[tuple[datetime, str]],
    thresholds: tuple[float, float, float],
) -> Chart:
    """The chart of ``assessments`` (time, score, level, label) with the markers given.

    ``thresholds`` are the scores where medium, high and critical start.
    """
    times = [t for t, *_ in assessments] + [t for t, _ in evidence] + [t for t, _ in decisions]
    first = min(times) if times else None
    last = max(times) if times else None
    span = (last - first).total_seconds() if first and last else 0.0
    plot_w = WIDTH - _LEFT - _RIGHT
    plot_h = HEIGHT - _TOP - _BOTTOM

    def x_of(when: datetime) -> float:
        if first is None or span <= 0:
            return _LEFT + plot_w / 2
        return round(_LEFT + plot_w * (when - first).total_seconds() / span, 1)

    def y_of(score: float) -> float:
        return round(_TOP + plot_h * (1 - max(0.0, min(1.0, score))), 1)

    edges = (0.0, *thresholds, 1.0)
    bands = tuple(
        Band(
            level=level,
            y=y_of(edges[i + 1]),
            height=round(y_of(edges[i]) - y_of(edges[i + 1]), 1),
            label_y=round(y_of(edges[i + 1]) + 12, 1),
        )
        for i, level in enumerate(_LEVELS)
    )
    points = tuple(
        Point(x_of(t), y_of(score), score, level, label) for t, score, level, label in assessments
    )
    return Chart(
        width=WIDTH,
        height=HEIGHT,
        left=_LEFT,
        right=WIDTH - _RIGHT,
        top=_TOP,
        bottom=HEIGHT - _BOTTOM,
        bands=bands,
        points=points,
        line=" ".join(f"{p.x},{p.y}" for p in points),
        evidence=tuple(Marker(x_of(t), "evidence", label) for t, label in evidence),
        decisions=tuple(Marker(x_of(t), "decision", label) for t, label in decisions),
        ticks=tuple((y_of(v), f"{v:.1f}") for v in (0.0, 0.25, 0.5, 0.75, 1.0)),
        start=first.strftime("%Y-%m-%d %H:%M:%S") if first else "",
        end=last.strftime("%Y-%m-%d %H:%M:%S") if last else "",
    )


@dataclass(frozen=True, slots=True)
class Bar:
    """One contribution as a horizontal bar (negative ones extend left of the axis)."""

    name: str
    value: float
    x: float
    width: float
    y: float


def contribution_bars(contributions: dict[str, float], width: int = 320) -> tuple[Bar, ...]:
    """Bars of ``contributions``, largest share first, scaled to the largest magnitude."""
    items = sorted(contributions.items(), key=lambda kv: -abs(kv[1]))
    largest = max((abs(v) for _, v in items), default=0.0) or 1.0
    negative = any(v < 0 for _, v in items)
    zero = width / 2 if negative else 0.0
    scale = (width / 2 if negative else width) / largest
    bars = []
    for row, (name, value) in enumerate(items):
        length = abs(value) * scale
        x = zero if value >= 0 else zero - length
        bars.append(Bar(name, value, round(x, 1), round(max(length, 1.0), 1), row * 24))
    return tuple(bars)
