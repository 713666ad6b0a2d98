"""Epidemic curves as SVG, drawn on the server: readable without JavaScript, printable.

Pure: weeks in, SVG text out, no I/O. The drawing follows Our World in Data: the line is
labelled where it ends (no legend), the uncertainty is a band around it (the noisy value
plus and minus its 95% accuracy, never below zero), and a week whose value was suppressed
is drawn as a gap in the line with a marker in a lane of its own below the axis, so it can
never be read as zero. Every text is set through ElementTree, which escapes it: a label that
came from a peer cannot become markup. Styling comes from the stylesheet's ``.chart``
classes; the SVG carries no ``style`` attribute (the pages' CSP forbids them).
"""

from __future__ import annotations

import math
import unicodedata
import xml.etree.ElementTree as ET
from collections.abc import Callable, Sequence
from dataclasses import dataclass

SVG_NAMESPACE = "http://www.w3.org/2000/svg"
WIDTH, PLOT_HEIGHT = 640, 210
LEFT, RIGHT, TOP = 64, 120, 16
#: Below the plot: week labels and the axis title, then the lane of suppressed weeks if any.
BOTTOM, LANE = 48, 26
#: Roughly the widest week label (``2024-W52`` at 12 px), to thin labels that would collide.
LABEL_WIDTH = 60


@dataclass(frozen=True)
class Week:
    """One point of a curve: the period's label, its noisy value (None: suppressed) and
    the half-width of its 95% interval."""

    label: str
    value: float | None
    accuracy: float

    @property
    def low(self) -> float:
        return max(0.0, (self.value or 0.0) - self.accuracy)

    @property
    def high(self) -> float:
        return (self.value or 0.0) + self.accuracy


@dataclass(frozen=True)
class CurveText:
    """The words of one chart, already in the page's language."""

    title: str  # what the chart shows: the SVG's accessible name
    x_axis: str
    y_axis: str
    line: str  # written where the line ends
    band: str  # written under it, naming the band
    suppressed: str  # the lane of suppressed weeks
    empty: str  # shown when there is no value to draw


@dataclass(frozen=True)
class Frame:
    """Where values and weeks fall in the drawing."""

    count: int
    top: float  # the value at the top of the plot

    @property
    def baseline(self) -> float:
        return float(TOP + PLOT_HEIGHT)

    def x(self, index: int) -> float:
        width = WIDTH - LEFT - RIGHT
        if self.count <= 1:
            return LEFT + width / 2
        return LEFT + index * width / (self.count - 1)

    def y(self, value: float) -> float:
        return self.baseline - (value / self.top) * (self.baseline - TOP)


def nice_step(rough: float) -> float:
    """The smallest of 1, 2, 2.5, 5 (times a power of ten) at least ``rough``."""
    if rough <= 0:
        return 1.0
    power = 10.0 ** math.floor(math.log10(rough))
    return next(m * power for m in (1, 2, 2.5, 5, 10) if m * power >= rough - 1e-12)


def ticks(highest: float, count: int = 4) -> list[float]:
    """Values for the horizontal grid, from 0 to a round number at or above ``highest``."""
    step = nice_step(highest / count) if highest > 0 else 1.0
    top = step * max(1, math.ceil(highest / step - 1e-9))
    return [step * i for i in range(round(top / step) + 1)]


def _fmt(value: float) -> str:
    return f"{value:.1f}"


def isolated(text: str) -> str:
    """``text`` as a right-to-left isolate if it is written right to left: the SVG runs left
    to right (its axes do), and an Arabic label with a number in it ("نطاق 95%") would
    otherwise be reordered around the number."""
    if any(unicodedata.bidirectional(c) in ("R", "AL") for c in text):
        return "\u2067" + text + "\u2069"  # RIGHT-TO-LEFT ISOLATE ... POP DIRECTIONAL ISOLATE
    return text


def _element(
    parent: ET.Element, tag: str, text: str | None = None, **attributes: str
) -> ET.Element:
    element = ET.SubElement(
        parent, tag, {k.rstrip("_").replace("_", "-"): v for k, v in attributes.items()}
    )
    if text is not None:  # a drawn text is isolated; a <title> is read, not drawn
        element.text = isolated(text) if tag == "text" else text
    return element


def _runs(weeks: Sequence[Week]) -> list[list[int]]:
    """Indexes of the weeks with a value, cut where a suppressed week interrupts them."""
    runs: list[list[int]] = [[]]
    for index, week in enumerate(weeks):
        if week.value is None:
            runs.append([])
        else:
            runs[-1].append(index)
    return [run for run in runs if run]


def _axes(
    svg: ET.Element,
    frame: Frame,
    weeks: Sequence[Week],
    text: CurveText,
    number: Callable[[float], str],
) -> None:
    for value in ticks(frame.top):
        y = _fmt(frame.y(value))
        _element(svg, "line", class_="grid", x1=str(LEFT), x2=str(WIDTH - RIGHT), y1=y, y2=y)
        _element(svg, "text", number(value), x=str(LEFT - 8), y=y, text_anchor="end", dy="4")
    base = _fmt(frame.baseline)
    _element(svg, "line", class_="axis", x1=str(LEFT), x2=str(WIDTH - RIGHT), y1=base, y2=base)
    _element(svg, "line", class_="axis", x1=str(LEFT), x2=str(LEFT), y1=str(TOP), y2=base)
    every = max(1, math.ceil(len(weeks) * LABEL_WIDTH / (WIDTH - LEFT - RIGHT + LABEL_WIDTH)))
    for index, week in enumerate(weeks):
        if index % every == 0:
            x = _fmt(frame.x(index))
            _element(
                svg, "text", week.label, x=x, y=_fmt(frame.baseline + 18), text_anchor="middle"
            )
    middle = (LEFT + WIDTH - RIGHT) / 2
    _element(
        svg, "text", text.x_axis, x=_fmt(middle), y=_fmt(frame.baseline + 38), text_anchor="middle"
    )
    y_middle = _fmt((TOP + frame.baseline) / 2)
    _element(
        svg, "text", text.y_axis, x="14", y=y_middle, text_anchor="middle",
        transform=f"rotate(-90 14 {y_middle})",
    )  # fmt: skip


def _curve(
    svg: ET.Element,
    frame: Frame,
    weeks: Sequence[Week],
    text: CurveText,
    number: Callable[[float], str],
) -> None:
    band, line = [], []
    for run in _runs(weeks):
        upper = [f"{_fmt(frame.x(i))} {_fmt(frame.y(weeks[i].high))}" for i in run]
        lower = [f"{_fmt(frame.x(i))} {_fmt(frame.y(weeks[i].low))}" for i in reversed(run)]
        if len(run) == 1:  # a lone week: a narrow band around its point
            x, half = frame.x(run[0]), 3.0
            high, low = _fmt(frame.y(weeks[run[0]].high)), _fmt(frame.y(weeks[run[0]].low))
            upper = [f"{_fmt(x - half)} {high}", f"{_fmt(x + half)} {high}"]
            lower = [f"{_fmt(x + half)} {low}", f"{_fmt(x - half)} {low}"]
        band.append("M " + " L ".join(upper + lower) + " Z")
        line.append(
            "M "
            + " L ".join(f"{_fmt(frame.x(i))} {_fmt(frame.y(weeks[i].value or 0.0))}" for i in run)
        )
    if band:
        _element(svg, "path", class_="band", d=" ".join(band))
        _element(svg, "path", class_="line", d=" ".join(line))
    for index, week in enumerate(weeks):
        if week.value is None:
            continue
        point = _element(
            svg,
            "circle",
            class_="line",
            cx=_fmt(frame.x(index)),
            cy=_fmt(frame.y(week.value)),
            r="2.5",
        )
        _element(point, "title", f"{week.label}: {number(week.value)} ± {number(week.accuracy)}")
    last = max((i for i, w in enumerate(weeks) if w.value is not None), default=None)
    if last is not None:
        x, y = frame.x(last) + 8, frame.y(weeks[last].value or 0.0)
        _element(svg, "text", text.line, x=_fmt(x), y=_fmt(y + 4))
        _element(svg, "text", text.band, x=_fmt(x), y=_fmt(y + 20))


def _suppressed(svg: ET.Element, frame: Frame, weeks: Sequence[Week], text: CurveText) -> None:
    hidden = [i for i, w in enumerate(weeks) if w.value is None]
    if not hidden:
        return
    lane = _fmt(frame.baseline + BOTTOM + LANE / 2)
    # labelled where the lane ends, like the line: the left margin is too narrow for a word
    _element(svg, "text", text.suppressed, x=str(WIDTH - RIGHT + 12), y=lane, dy="4")
    for index in hidden:
        x = _fmt(frame.x(index))
        _element(svg, "line", class_="grid", x1=x, x2=x, y1=str(TOP), y2=_fmt(frame.baseline))
        marker = _element(svg, "circle", class_="point-suppressed", cx=x, cy=lane, r="4.5")
        _element(marker, "title", f"{weeks[index].label}: {text.suppressed}")


def epidemic_curve(
    weeks: Sequence[Week], *, text: CurveText, number: Callable[[float], str]
) -> str:
    """The SVG of one curve; ``number`` formats values for the page's locale."""
    height = TOP + PLOT_HEIGHT + BOTTOM + (LANE if any(w.value is None for w in weeks) else 0)
    svg = ET.Element(
        "svg",
        {
            "xmlns": SVG_NAMESPACE,
            "viewBox": f"0 0 {WIDTH} {height}",
            "role": "img",
            "class": "curve",
        },
    )
    _element(svg, "title", text.title)
    highest = max((w.high for w in weeks if w.value is not None), default=0.0)
    frame = Frame(count=len(weeks), top=ticks(highest)[-1])
    if not weeks:
        _element(
            svg, "text", text.empty, x=str(WIDTH // 2), y=str(height // 2), text_anchor="middle"
        )
        return ET.tostring(svg, encoding="unicode")
    _axes(svg, frame, weeks, text, number)
    _curve(svg, frame, weeks, text, number)
    _suppressed(svg, frame, weeks, text)
    if all(w.value is None for w in weeks):
        middle = _fmt((TOP + frame.baseline) / 2)
        _element(
            svg,
            "text",
            text.empty,
            x=_fmt((LEFT + WIDTH - RIGHT) / 2),
            y=middle,
            text_anchor="middle",
        )
    return ET.tostring(svg, encoding="unicode")


# --- bars and timelines, for the after-action review ---------------------------------------

#: Horizontal bars: the label column, the bar, and the figure written after it.
BAR_LABEL, BAR_ROW, BAR_TEXT = 190, 26, 150
#: Timeline lanes: one strip of bars per series, stacked, sharing the time axis.
LANE_HEIGHT, LANE_GAP = 44, 22


@dataclass(frozen=True)
class Bar:
    """One bar: its label, its value and, when it is measured against a cap, the cap (the
    bar is then the share of the cap used); ``figure`` is the text written after it."""

    label: str
    value: float
    figure: str
    cap: float | None = None


@dataclass(frozen=True)
class Lane:
    """One series of a timeline: its name (written above its strip, in the page's language,
    saying its largest value) and a value per bucket."""

    name: str
    values: Sequence[float]


def _short(text: str, limit: int = 26) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _empty(title: str, empty: str, height: int = 60) -> str:
    svg = ET.Element(
        "svg",
        {"xmlns": SVG_NAMESPACE, "viewBox": f"0 0 {WIDTH} {height}", "role": "img"},
    )
    _element(svg, "title", title)
    _element(svg, "text", empty, x=str(WIDTH // 2), y=str(height // 2), text_anchor="middle")
    return ET.tostring(svg, encoding="unicode")


def bars(rows: Sequence[Bar], *, title: str, empty: str) -> str:
    """Horizontal bars, one per row: against a shared scale from zero to the largest value,
    or, for rows with a cap, as the share of their own cap (a track the length of the cap;
    a row over its cap is drawn full, with the class ``over``). Classes ``hbar-*``:
    the dashboard's ``.bar-fill`` sets a CSS height, which SVG 2 applies to a ``rect``."""
    if not rows:
        return _empty(title, empty)
    height = TOP + len(rows) * BAR_ROW + 8
    svg = ET.Element(
        "svg",
        {
            "xmlns": SVG_NAMESPACE,
            "viewBox": f"0 0 {WIDTH} {height}",
            "role": "img",
            "class": "bars",
        },
    )
    _element(svg, "title", title)
    track = WIDTH - BAR_LABEL - BAR_TEXT
    highest = max((r.value for r in rows if r.cap is None), default=0.0) or 1.0
    for index, row in enumerate(rows):
        y = TOP + index * BAR_ROW
        group = _element(svg, "g")
        _element(group, "title", f"{row.label}: {row.figure}")
        _element(
            group, "text", _short(row.label), x=str(BAR_LABEL - 8), y=_fmt(y + 13),
            text_anchor="end",
        )  # fmt: skip
        if row.cap is not None:
            _element(
                group, "rect", class_="hbar-track", x=str(BAR_LABEL), y=str(y + 2),
                width=str(track), height="14",
            )  # fmt: skip
            share = 1.0 if row.cap <= 0 else min(1.0, row.value / row.cap)
            over = row.value > row.cap
        else:
            share, over = row.value / highest, False
        _element(
            group, "rect", class_="hbar-fill over" if over else "hbar-fill", x=str(BAR_LABEL),
            y=str(y + 2), width=_fmt(max(share * track, 1.0 if row.value else 0.0)), height="14",
        )  # fmt: skip
        _element(group, "text", row.figure, x=str(BAR_LABEL + track + 8), y=_fmt(y + 13))
    return ET.tostring(svg, encoding="unicode")


def timeline(
    lanes: Sequence[Lane],
    labels: Sequence[str],
    *,
    title: str,
    empty: str,
    number: Callable[[float], str],
) -> str:
    """Small multiples over time: one strip of bars per lane, each scaled to its own
    largest value (so a lane's name should say it), sharing the time axis and its
    ``labels``; ``number`` formats the values in each bar's tooltip."""
    if not labels or not any(v for lane in lanes for v in lane.values):
        return _empty(title, empty)
    height = TOP + len(lanes) * (LANE_HEIGHT + LANE_GAP) + 24
    svg = ET.Element(
        "svg",
        {
            "xmlns": SVG_NAMESPACE,
            "viewBox": f"0 0 {WIDTH} {height}",
            "role": "img",
            "class": "timeline",
        },
    )
    _element(svg, "title", title)
    left, right = 48, WIDTH - 48
    slot = (right - left) / len(labels)
    for number_of, lane in enumerate(lanes):
        top = TOP + number_of * (LANE_HEIGHT + LANE_GAP) + LANE_GAP - 6
        base = top + LANE_HEIGHT
        highest = max(lane.values, default=0) or 1
        _element(
            svg, "text", lane.name, x=str(left), y=_fmt(top - 6), class_="lane-name",
        )  # fmt: skip
        _element(
            svg, "line", class_="axis", x1=str(left), x2=str(right), y1=_fmt(base), y2=_fmt(base)
        )
        for index, value in enumerate(lane.values):
            if not value:
                continue
            tall = max(1.0, value / highest * LANE_HEIGHT)
            bar = _element(
                svg, "rect", class_=f"lane-bar series-{number_of % 4 + 1}",
                x=_fmt(left + index * slot + slot * 0.1), y=_fmt(base - tall),
                width=_fmt(max(slot * 0.8, 1.0)), height=_fmt(tall),
            )  # fmt: skip
            _element(bar, "title", f"{labels[index]}: {lane.name} {number(value)}")
    every = max(1, math.ceil(len(labels) * 90 / (right - left)))
    axis = height - 8
    for index, label in enumerate(labels):
        if index % every == 0:
            x = left + index * slot + slot / 2
            _element(svg, "text", label, x=_fmt(x), y=str(axis), text_anchor="middle")
    return ET.tostring(svg, encoding="unicode")
