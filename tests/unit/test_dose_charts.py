"""The Dose page's charts (`radtriage.api.charts.box_chart` and `series_chart`) drawn to scale: a box's
quartiles, median and whiskers equal numpy's percentiles of the data (and Tukey's fences), the DRL line
sits at the y the axis gives its value, the axes carry their units, and an empty chart says so."""

from __future__ import annotations

import datetime as dt
import xml.etree.ElementTree as ET

import numpy as np
import pytest

from radtriage.api import charts

SVG = "{http://www.w3.org/2000/svg}"


def _parse(svg: str) -> ET.Element:
    return ET.fromstring(svg)  # well-formed XML


def _of(root: ET.Element, tag: str, cls: str) -> list[ET.Element]:
    return [e for e in root.iter(f"{SVG}{tag}") if e.get("class") == cls]


def _value_to_y(root: ET.Element):
    """The y axis as the chart draws it, read from its grid lines and their tick labels: value -> pixel."""
    grid = [float(e.get("y1")) for e in _of(root, "line", "grid")]
    labels = [float(t.text) for t in _of(root, "text", "tick") if t.get("text-anchor") == "end"]
    assert len(grid) == len(labels) >= 3
    slope, intercept = np.polyfit(labels, grid, 1)
    assert np.allclose(np.polyval([slope, intercept], labels), grid, atol=0.11)  # the axis is linear
    assert slope < 0  # larger values higher up
    return lambda v: slope * v + intercept


@pytest.mark.parametrize("values", [[40.0, 45, 50, 55, 58, 61, 90], [12.5, 3.1, 7.7, 9.9], [0.08, 0.11, 0.095]])
def test_box_quartiles_equal_numpy_percentiles(values):
    b = charts.BoxStats.of(values)
    q1, med, q3 = np.percentile(values, [25, 50, 75])
    assert (b.q1, b.median, b.q3) == pytest.approx((q1, med, q3))
    iqr = q3 - q1
    inside = [v for v in values if q1 - 1.5 * iqr <= v <= q3 + 1.5 * iqr]
    assert (b.low, b.high) == (min(inside), max(inside))
    assert sorted(b.outliers) == sorted(v for v in values if v not in inside)


def test_box_chart_is_drawn_to_scale_with_the_drl_line_and_units():
    a, c = [40.0, 45, 50, 55, 58, 61, 130], [30.0, 35, 52]
    drl = charts.RefLine(60.0, "DRL 60 mGy", "DRL 60 mGy (EXAMPLE v1)")
    local = charts.RefLine(54.0, "local DRL 54 mGy", "P75 of 3 facility medians", "local-drl")
    root = _parse(charts.box_chart([("A CT1", a), ("C CT2", c), ("empty", [])], [drl, local], "CT head: CTDIvol",
                                   "CTDIvol (mGy), 16 cm phantom"))
    y = _value_to_y(root)
    boxes = _of(root, "rect", "box")
    assert len(boxes) == 2  # a scanner with no values gets no box
    for rect, median_line, data in zip(boxes, _of(root, "line", "median"), (a, c), strict=True):
        q1, med, q3 = np.percentile(data, [25, 50, 75])
        top, height = float(rect.get("y")), float(rect.get("height"))
        assert top == pytest.approx(y(q3), abs=0.15) and top + height == pytest.approx(y(q1), abs=0.25)
        assert float(median_line.get("y1")) == pytest.approx(y(med), abs=0.15)
    (outlier,) = _of(root, "circle", "outlier")  # 130 mGy is beyond A's upper fence
    assert float(outlier.get("cy")) == pytest.approx(y(130), abs=0.15)
    (line,) = _of(root, "line", "drl")
    assert float(line.get("y1")) == float(line.get("y2")) == pytest.approx(y(60.0), abs=0.15)
    assert line.find(f"{SVG}title").text == "DRL 60 mGy (EXAMPLE v1)"
    (label,) = _of(root, "text", "drl-label")
    assert label.text == "DRL 60 mGy" and float(label.get("y")) < y(60.0)  # above its line
    (lline,) = _of(root, "line", "local-drl")
    assert float(lline.get("y1")) == pytest.approx(y(54.0), abs=0.15)
    (llabel,) = _of(root, "text", "local-drl-label")  # close below the DRL: its label goes under its line
    assert llabel.text == "local DRL 54 mGy" and float(llabel.get("y")) > y(54.0)
    assert [t.text for t in _of(root, "text", "axis-label")] == ["scanner (n examinations)",
                                                                 "CTDIvol (mGy), 16 cm phantom"]
    assert {"A CT1 (n=7)", "C CT2 (n=3)"} <= {t.text for t in _of(root, "text", "tick")}


def test_the_axis_reaches_a_drl_above_every_value():
    root = _parse(charts.box_chart([("X", [0.02, 0.03, 0.04])], [charts.RefLine(0.1, "DRL 0.1 Gy·cm²", "the set")], "t",
                                   "DAP (Gy·cm²)"))
    y = _value_to_y(root)
    (line,) = _of(root, "line", "drl")
    top = min(float(e.get("y1")) for e in _of(root, "line", "grid"))
    assert float(line.get("y1")) == pytest.approx(y(0.1), abs=0.15) and float(line.get("y1")) >= top


def test_series_chart_medians_range_and_drl():
    points = [charts.DayPoint(0, "11-01", 50.0, 40.0, 60.0, 3), charts.DayPoint(4, "11-05", 70.0, 65.0, 75.0, 2)]
    root = _parse(charts.series_chart(points, dt.date(2026, 11, 1), 30, [charts.RefLine(60.0, "DRL 60 mGy", "set")],
                                      "CT head: median per day",
                                      "CTDIvol (mGy)", "day (UTC), 2026-11-01 to 2026-11-30"))
    y = _value_to_y(root)
    dots = [e for e in root.iter(f"{SVG}circle") if e.get("class") == "point"]
    assert [float(d.get("cy")) for d in dots] == pytest.approx([y(50.0), y(70.0)], abs=0.15)
    assert float(dots[1].get("cx")) > float(dots[0].get("cx"))
    ranges = _of(root, "line", "range")
    assert float(ranges[0].get("y1")) == pytest.approx(y(40.0), abs=0.15)
    assert float(ranges[0].get("y2")) == pytest.approx(y(60.0), abs=0.15)
    (line,) = _of(root, "line", "drl")
    assert float(line.get("y1")) == pytest.approx(y(60.0), abs=0.15)
    assert "CTDIvol (mGy)" in [t.text for t in _of(root, "text", "axis-label")]
    ticks = [t.text for t in _of(root, "text", "tick") if t.get("text-anchor") == "middle"]
    assert ticks == ["11-01", "11-08", "11-15", "11-22", "11-29"]  # weekly over 30 days, spaced by date


def test_day_ticks_stay_few_over_long_periods():
    for days in (1, 10, 90, 365, 3660):
        ticks = charts.day_ticks(dt.date(2026, 1, 1), days)
        assert 1 <= len(ticks) <= 8 and ticks[0] == (0, "01-01") and all(d < max(days, 1) for d, _ in ticks)


def test_empty_charts_say_so():
    for svg in (charts.box_chart([], [charts.RefLine(60.0, "DRL 60 mGy", "set")], "t", "CTDIvol (mGy)"),
                charts.series_chart([], dt.date(2026, 11, 1), 10, [], "t", "CTDIvol (mGy)", "day")):
        assert [t.text for t in _of(_parse(svg), "text", "empty")] == ["no examinations"]


def test_value_ticks_are_round_and_reach_the_top():
    for top, want in ((64.8, [0, 20, 40, 60, 80]), (0.108, [0, 0.05, 0.1, 0.15]), (1080, [0, 500, 1000, 1500])):
        assert charts.value_ticks(top) == pytest.approx(want)


def test_many_scanners_widen_the_chart_so_labels_keep_apart():
    groups = [(f"Site {i} CT scanner", [10.0 + i, 20.0, 30.0]) for i in range(10)]
    root = _parse(charts.box_chart(groups, [], "t", "CTDIvol (mGy)"))
    assert int(root.get("width")) > charts.W
    xs = sorted(float(t.get("x")) for t in _of(root, "text", "tick") if t.get("text-anchor") == "middle")
    assert len(xs) == 10 and min(b - a for a, b in zip(xs, xs[1:])) >= 85
