"""The score-over-time chart, drawn on the server as SVG geometry from the log's data.

No script draws it: the template writes these numbers into an inline
``<svg>``, so the picture is there with scripts off, prints, and needs no
charting library. The x axis is the entity's evidence in the order it was
stored, evenly spaced (a burst of evidence in one second stays readable),
each assessment on the evidence it follows and a decision where it fell
between them; the axis names the first and last times. The y axis is the
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
_PAD = 8
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
    assessments: Sequence[tuple[float, float, str, str]],
    evidence: Sequence[tuple[float, str]],
    decisions: Sequence[tuple[float, str]],
    thresholds: tuple[float, float, float],
    span: tuple[datetime | None, datetime | None] = (None, None),
) -> Chart:
    """The chart of ``assessments`` (position, score, level, label) with the markers given.

    A position is the evidence's place in the entity's log (0 the first); an
    assessment sits on the evidence it follows, and a decision between the
    evidence stored before and after it. ``thresholds`` are the scores where
    medium, high and critical start; ``span`` the first and last times shown.
    """
    positions = [x for x, *_ in assessments] + [x for x, _ in evidence] + [x for x, _ in decisions]
    first = min(positions, default=0.0)
    width = max(positions, default=0.0) - first
    plot_w = WIDTH - _LEFT - _RIGHT - 2 * _PAD
    plot_h = HEIGHT - _TOP - _BOTTOM

    def x_of(position: float) -> float:
        if width <= 0:
            return _LEFT + _PAD + plot_w / 2
        return round(_LEFT + _PAD + plot_w * (position - first) / width, 1)

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
        Point(x_of(x), y_of(score), score, level, label) for x, score, level, label in assessments
    )
    start, end = span
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
        evidence=tuple(Marker(x_of(x), "evidence", label) for x, label in evidence),
        decisions=tuple(Marker(x_of(x), "decision", label) for x, label in decisions),
        ticks=tuple((y_of(v), f"{v:g}") for v in (0.0, 0.25, 0.5, 0.75, 1.0)),
        start=start.strftime("%Y-%m-%d %H:%M") if start else "",
        end=end.strftime("%Y-%m-%d %H:%M") if end else "",
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
