"""The epidemic curve's SVG: well-formed, drawn where the values are, honest about gaps."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET

import pytest

from exchange.ui.charts import CurveText, Week, epidemic_curve, nice_step, ticks

NS = "{http://www.w3.org/2000/svg}"
TEXT = CurveText(
    title="Cases per week in XA-P1",
    x_axis="Week",
    y_axis="Cases",
    line="Cases",
    band="95% band",
    suppressed="suppressed",
    empty="Nothing to draw",
)


def number(value: float) -> str:
    return f"{value:g}"


def draw(weeks: list[Week], text: CurveText = TEXT) -> ET.Element:
    return ET.fromstring(epidemic_curve(weeks, text=text, number=number))


def points(d: str) -> list[list[tuple[float, float]]]:
    """The subpaths of a path's ``d``, each a list of (x, y)."""
    runs = []
    for part in re.split(r"M ", d)[1:]:
        coords = re.findall(r"(-?[\d.]+) (-?[\d.]+)", part)
        runs.append([(float(x), float(y)) for x, y in coords])
    return runs


def baseline(svg: ET.Element) -> float:
    axes = [a for a in svg.iter(f"{NS}line") if a.get("class") == "axis"]
    horizontal = next(a for a in axes if a.get("y1") == a.get("y2"))
    return float(horizontal.get("y1", "nan"))


WEEKS = [
    Week("2024-W01", 10, 6.4),
    Week("2024-W02", 30, 6.4),
    Week("2024-W03", None, 6.4),
    Week("2024-W04", 55, 6.4),
    Week("2024-W05", 3, 6.4),
]


def test_the_svg_parses_and_names_what_it_shows() -> None:
    svg = draw(WEEKS)
    assert svg.tag == f"{NS}svg"
    assert svg.get("role") == "img"
    assert svg.findtext(f"{NS}title") == TEXT.title
    texts = [t.text for t in svg.iter(f"{NS}text")]
    assert {"Week", "Cases", "95% band", "suppressed"} <= set(texts)
    assert "style" not in epidemic_curve(WEEKS, text=TEXT, number=number)


def test_the_line_has_one_point_per_unsuppressed_week_at_its_value() -> None:
    svg = draw(WEEKS)
    line = svg.find(f"{NS}path[@class='line']")
    assert line is not None
    runs = points(line.get("d", ""))
    assert [len(r) for r in runs] == [2, 2], "the suppressed week cuts the line in two"
    drawn = [p for run in runs for p in run]
    values = [w.value for w in WEEKS if w.value is not None]
    base = baseline(svg)
    per_unit = (base - drawn[2][1]) / 55  # the highest value: the least rounding error
    assert per_unit > 0
    for (_x, y), value in zip(drawn, values, strict=True):
        assert base - y == pytest.approx(value * per_unit, abs=0.1), (
            "y is proportional to the value"
        )
    xs = [x for x, _y in drawn]
    step = xs[1] - xs[0]
    assert step > 0
    assert xs == pytest.approx([xs[0], xs[0] + step, xs[0] + 3 * step, xs[0] + 4 * step], abs=0.2)


def test_the_band_encloses_the_line_and_never_goes_below_zero() -> None:
    svg = draw(WEEKS)
    band = svg.find(f"{NS}path[@class='band']")
    line = svg.find(f"{NS}path[@class='line']")
    assert band is not None
    assert line is not None
    base = baseline(svg)
    for edge, run in zip(points(band.get("d", "")), points(line.get("d", "")), strict=True):
        for x, y in run:
            at_x = [ey for ex, ey in edge if abs(ex - x) < 0.05]
            assert len(at_x) == 2
            assert min(at_x) < y < max(at_x)
            assert max(at_x) <= base + 0.05, "the band stops at zero"
    # week 5: 3 - 6.4 < 0, so its lower edge sits on the axis
    last_run = points(band.get("d", ""))[-1]
    assert max(y for _x, y in last_run) == pytest.approx(base, abs=0.05)


def test_suppressed_weeks_are_marked_and_not_drawn_at_zero() -> None:
    svg = draw(WEEKS)
    markers = svg.findall(f"{NS}circle[@class='point-suppressed']")
    assert len(markers) == 1
    assert "2024-W03" in (markers[0].findtext(f"{NS}title") or "")
    base = baseline(svg)
    assert float(markers[0].get("cy", "0")) > base + 20, "in its own lane, below the axis"
    line = svg.find(f"{NS}path[@class='line']")
    assert line is not None
    x3 = float(markers[0].get("cx", "0"))
    drawn = [p for run in points(line.get("d", "")) for p in run]
    assert all(abs(x - x3) > 1 for x, _y in drawn)
    values = [c for c in svg.findall(f"{NS}circle[@class='line']")]
    assert len(values) == 4


def test_every_label_is_escaped() -> None:
    evil = '<script>alert(1)</script> & "quoted"'
    text = CurveText(evil, evil, evil, evil, evil, evil, evil)
    weeks = [Week(evil, 1, 1), Week("w2", None, 1)]
    source = epidemic_curve(weeks, text=text, number=number)
    assert "<script>" not in source
    svg = ET.fromstring(source)
    assert svg.findtext(f"{NS}title") == evil
    assert all(child.tag.startswith(NS) for child in svg.iter())
    assert not svg.findall(f".//{NS}script")


def test_no_weeks_and_all_suppressed_say_so() -> None:
    empty = draw([])
    assert "Nothing to draw" in [t.text for t in empty.iter(f"{NS}text")]
    assert empty.find(f"{NS}path") is None
    hidden = draw([Week("2024-W01", None, 2), Week("2024-W02", None, 2)])
    assert "Nothing to draw" in [t.text for t in hidden.iter(f"{NS}text")]
    assert hidden.find(f"{NS}path[@class='line']") is None
    assert len(hidden.findall(f"{NS}circle[@class='point-suppressed']")) == 2


def test_a_lone_week_still_shows_its_band() -> None:
    svg = draw([Week("2024-W01", 5, 2)])
    band = svg.find(f"{NS}path[@class='band']")
    assert band is not None
    assert len(points(band.get("d", ""))[0]) == 4


def test_long_runs_thin_their_week_labels() -> None:
    weeks = [Week(f"2024-W{i:02d}", i, 1) for i in range(1, 53)]
    labels = [t.text for t in draw(weeks).iter(f"{NS}text") if (t.text or "").startswith("2024-W")]
    assert 4 <= len(labels) <= 10
    assert labels[0] == "2024-W01"


@pytest.mark.parametrize(
    ("rough", "step"),
    [(0.0, 1.0), (0.3, 0.5), (1.0, 1.0), (1.1, 2.0), (2.2, 2.5), (37, 50), (120, 200)],
)
def test_grid_steps_are_round(rough: float, step: float) -> None:
    assert nice_step(rough) == pytest.approx(step)


def test_the_grid_reaches_the_highest_value() -> None:
    assert ticks(0) == [0.0, 1.0]
    grid = ticks(61.4)
    assert grid[0] == 0
    assert grid[-1] >= 61.4
    assert len(grid) <= 6


def test_right_to_left_labels_keep_their_order_around_numbers() -> None:
    arabic = CurveText("الحالات", "الأسبوع", "الحالات", "الحالات", "نطاق 95%", "محجوبة", "—")
    svg = draw([Week("2024-W01", 4, 1), Week("2024-W02", None, 1)], arabic)
    drawn = {t.text for t in svg.iter(f"{NS}text")}
    assert "\u2067نطاق 95%\u2069" in drawn
    assert "2024-W01" in drawn, "left-to-right labels are left alone"
    assert svg.findtext(f"{NS}title") == "الحالات"
