"""Server-rendered SVG charts for the Models and Dose pages: small builders with axes, units and labels.

No scripts, no external assets, no inline styles (the pages' CSP forbids them): colours are presentation
attributes, text and axes take ``currentColor`` so a chart follows the page's theme, and each chart has a
``<title>`` and ``<desc>`` for screen readers. Every element a reader may look for has a class: ``band``
(an expected range), ``hard-limit``, ``baseline``, ``bar``, ``point``, ``decision``, ``box``, ``median``,
``whisker``, ``outlier``, ``drl`` and ``local-drl`` (reference levels, each with its ``-label``).

- `rate_chart`: a rate over consecutive blocks with its 95% intervals, the expected band and hard limits;
- `histogram_chart`: a distribution per bin against a baseline (drawn as a step line);
- `rates_chart`: several rates as horizontal bars with their intervals and allowed ranges;
- `box_chart`: distributions as box plots (per scanner) against reference lines (a DRL);
- `series_chart`: per-day medians with each day's range against reference lines.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Sequence
from dataclasses import dataclass
from html import escape

W, H = 640, 260
LEFT, RIGHT, TOP, BOTTOM = 56, 16, 14, 48
BAND, LIMIT, BAR, BASE, MARK = "#2f9e44", "#d7263d", "#5c7cfa", "#f18f01", "#9aa4b2"


def _attrs(attrs: dict[str, object]) -> str:
    return "".join(f' {k.rstrip("_").replace("_", "-")}="{escape(str(v), quote=True)}"'
                   for k, v in attrs.items() if v is not None)


def el(tag: str, body: str = "", **attrs: object) -> str:
    """One SVG element; ``body`` is markup (already escaped), attribute values are escaped here."""
    return f"<{tag}{_attrs(attrs)}>{body}</{tag}>" if body else f"<{tag}{_attrs(attrs)}/>"


def text(x: float, y: float, s: str, anchor: str = "middle", cls: str = "label", **attrs: object) -> str:
    return el("text", escape(s), x=f"{x:.1f}", y=f"{y:.1f}", text_anchor=anchor, fill="currentColor",
              font_size=11, class_=cls, **attrs)


def pct(v: float) -> str:
    """A share as people read it: "34%", "8.3%", "3%" (as the monitor words it)."""
    p = v * 100
    return f"{p:.0f}%" if p >= 10 or abs(p - round(p)) < 0.05 else f"{p:.1f}%"


@dataclass(frozen=True)
class Frame:
    """The plot area: maps data (x0..x1, y0..y1) to pixels inside the margins."""

    x0: float
    x1: float
    y0: float
    y1: float
    width: int = W
    height: int = H

    def x(self, v: float) -> float:
        return LEFT + (v - self.x0) / ((self.x1 - self.x0) or 1) * (self.width - LEFT - RIGHT)

    def y(self, v: float) -> float:
        return self.height - BOTTOM - (v - self.y0) / ((self.y1 - self.y0) or 1) * (self.height - TOP - BOTTOM)


def axes(f: Frame, xticks: Sequence[tuple[float, str]], yticks: Sequence[tuple[float, str]], xlabel: str,
         ylabel: str) -> str:
    """Both axes with their ticks, grid lines and labels (units in the labels)."""
    bottom, left = f.y(f.y0), f.x(f.x0)
    parts = [el("line", x1=left, y1=bottom, x2=f.x(f.x1), y2=bottom, stroke="currentColor", class_="axis"),
             el("line", x1=left, y1=f.y(f.y1), x2=left, y2=bottom, stroke="currentColor", class_="axis")]
    for v, label in xticks:
        x = f.x(v)
        parts += [el("line", x1=f"{x:.1f}", y1=bottom, x2=f"{x:.1f}", y2=bottom + 4, stroke="currentColor"),
                  text(x, bottom + 15, label, cls="tick")]
    for v, label in yticks:
        y = f.y(v)
        parts += [el("line", x1=left, y1=f"{y:.1f}", x2=f.x(f.x1), y2=f"{y:.1f}", stroke=MARK, stroke_opacity=0.25,
                     class_="grid"),
                  text(left - 5, y + 4, label, anchor="end", cls="tick")]
    parts += [text((left + f.x(f.x1)) / 2, f.height - 8, xlabel, cls="axis-label"),
              text(12, (TOP + bottom) / 2, ylabel, cls="axis-label",
                   transform=f"rotate(-90 12 {(TOP + bottom) / 2:.1f})")]
    return "".join(parts)


def hline(f: Frame, v: float, label: str, cls: str, label_cls: str, colour: str = LIMIT, below: bool = False,
          dash: str = "6 4", note: str | None = None) -> str:
    """A horizontal reference line across the plot at ``v`` (a limit, a reference level), labelled at its right
    end above it (``below``: under it, so two lines' labels need not overlap); ``note``: its tooltip."""
    y = f.y(v)
    return (el("line", el("title", escape(note or label)), x1=f.x(f.x0), y1=f"{y:.1f}", x2=f.x(f.x1), y2=f"{y:.1f}",
               stroke=colour, stroke_dasharray=dash, stroke_width=2, class_=cls)
            + text(f.x(f.x1) - 2, y + 13 if below else y - 4, label, anchor="end", cls=label_cls, fill_opacity=0.9))


def svg(body: str, title: str, desc: str, cls: str, width: int = W, height: int = H) -> str:
    return (f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width} {height}" width="{width}" '
            f'height="{height}" role="img" font-family="system-ui, sans-serif" class="chart {escape(cls)}">' + el("title", escape(title))
            + el("desc", escape(desc)) + body + "</svg>")


def share_ticks(top: float) -> list[tuple[float, str]]:
    step = 0.05 if top <= 0.25 else 0.1 if top <= 0.6 else 0.2
    n = int(top / step + 1e-9)
    return [(i * step, pct(i * step)) for i in range(n + 1)]


@dataclass(frozen=True)
class RatePoint:
    rate: float
    low: float  # its 95% interval
    high: float
    n: int
    k: int
    label: str  # the tick label: when the block ended
    note: str  # the tooltip: what the point says
    out: str | None = None  # above | below its range beyond chance


def rate_chart(points: Sequence[RatePoint], expected: tuple[float, float], limits: Sequence[tuple[float, str]],
               marks: Sequence[tuple[int, str]], title: str, xlabel: str, ylabel: str = "positive rate (%)") -> str:
    """A rate per block (oldest left) with 95% intervals, the expected band, hard limits and decisions."""
    tops = [expected[1], *(v for v, _ in limits), *(p.high for p in points)]
    top = min(1.0, max(tops) * 1.15 + 0.02)
    f = Frame(-0.5, max(len(points), 1) - 0.5, 0.0, top)
    every = max(1, len(points) // 8)
    xticks = [(i, p.label) for i, p in enumerate(points) if i % every == 0 or i == len(points) - 1]
    parts = [el("rect", el("title", escape(f"expected range {pct(expected[0])}-{pct(expected[1])}")),
                x=f"{f.x(f.x0):.1f}", y=f"{f.y(expected[1]):.1f}", width=f"{f.x(f.x1) - f.x(f.x0):.1f}",
                height=f"{f.y(expected[0]) - f.y(expected[1]):.1f}", fill=BAND, fill_opacity=0.18, class_="band"),
             axes(f, xticks, share_ticks(top), xlabel, ylabel)]
    parts += [hline(f, v, label, "hard-limit", "limit-label") for v, label in limits]
    for i, label in marks:
        x = f.x(i - 0.5)
        parts += [el("line", el("title", escape(label)), x1=f"{x:.1f}", y1=f.y(top), x2=f"{x:.1f}", y2=f.y(0),
                     stroke=MARK, stroke_dasharray="2 3", class_="decision"),
                  text(x + 3, TOP + 10, label, anchor="start", cls="decision-label")]
    path = " ".join(f"{'M' if i == 0 else 'L'}{f.x(i):.1f},{f.y(p.rate):.1f}" for i, p in enumerate(points))
    if path:
        parts.append(el("path", d=path, fill="none", stroke=BAR, stroke_width=1.5, class_="trend"))
    for i, p in enumerate(points):
        x = f.x(i)
        parts += [el("line", x1=f"{x:.1f}", y1=f"{f.y(p.low):.1f}", x2=f"{x:.1f}", y2=f"{f.y(p.high):.1f}",
                     stroke=BAR, class_="interval"),
                  el("circle", el("title", escape(p.note)), cx=f"{x:.1f}", cy=f"{f.y(p.rate):.1f}", r=4,
                     fill=LIMIT if p.out else BAR, class_="point" + (f" out-{p.out}" if p.out else ""))]
    if not points:
        parts.append(text((f.x(f.x0) + f.x(f.x1)) / 2, f.y(top / 2), "no live results yet", cls="empty"))
    desc = (f"{len(points)} points; expected range {pct(expected[0])}-{pct(expected[1])}"
            + "".join(f"; {label}" for _, label in limits))
    return svg("".join(parts), title, desc, "rate-chart")


def histogram_chart(edges: Sequence[float], shares: Sequence[float], baseline: Sequence[float] | None, title: str,
                    xlabel: str, n: int, baseline_label: str = "baseline") -> str:
    """Shares per bin (bars, bins drawn equally wide and labelled by their edges) against a baseline (a step
    line): ``shares`` and ``baseline`` are proportions, one per bin."""
    bins = len(edges) - 1
    top = min(1.0, max([*shares, *(baseline or []), 0.05]) * 1.15)
    f = Frame(0, bins, 0.0, top)
    xticks = [(i, f"{e:g}") for i, e in enumerate(edges)]
    parts = [axes(f, xticks, share_ticks(top), xlabel, "share of results (%)")]
    for i, s in enumerate(shares):
        lo, hi = edges[i], edges[i + 1]
        parts.append(el("rect", el("title", escape(f"{lo:g} to {hi:g}: {pct(s)} of {n} results")),
                        x=f"{f.x(i) + 2:.1f}", y=f"{f.y(s):.1f}", width=f"{f.x(i + 1) - f.x(i) - 4:.1f}",
                        height=f"{f.y(0) - f.y(s):.1f}", fill=BAR, fill_opacity=0.75, class_="bar"))
    if baseline:
        steps = "".join(f"{'M' if i == 0 else 'L'}{f.x(i):.1f},{f.y(b):.1f} L{f.x(i + 1):.1f},{f.y(b):.1f} "
                        for i, b in enumerate(baseline))
        parts.append(el("path", el("title", escape(baseline_label)), d=steps.strip(), fill="none", stroke=BASE,
                        stroke_width=2.5, class_="baseline"))
    legend_x = f.x(0) + 8
    parts += [el("rect", x=legend_x, y=TOP, width=12, height=8, fill=BAR, fill_opacity=0.75),
              text(legend_x + 16, TOP + 8, f"last {n} live results", anchor="start", cls="legend")]
    if baseline:
        parts += [el("line", x1=legend_x, y1=TOP + 20, x2=legend_x + 12, y2=TOP + 20, stroke=BASE, stroke_width=2.5),
                  text(legend_x + 16, TOP + 24, baseline_label, anchor="start", cls="legend")]
    return svg("".join(parts), title, f"{bins} bins from {edges[0]:g} to {edges[-1]:g}; "
               + ("baseline drawn as a step line" if baseline else "no baseline"), "histogram-chart")


@dataclass(frozen=True)
class RateRow:
    label: str
    value: float | None
    low: float
    high: float
    allowed: tuple[float, float]  # the range it may be in without a warning
    note: str
    out: str | None = None


def rates_chart(rows: Sequence[RateRow], title: str) -> str:
    """Rates as horizontal bars (0-100%), each with its 95% interval and its allowed range shaded."""
    row_h, top_pad, left = 34, 10, 170
    height = top_pad + row_h * max(len(rows), 1) + 40
    x = lambda v: left + v * (W - left - RIGHT)  # noqa: E731
    parts = []
    for i, r in enumerate(rows):
        y = top_pad + i * row_h
        parts += [el("rect", el("title", escape(f"allowed {pct(r.allowed[0])}-{pct(r.allowed[1])}")),
                     x=f"{x(r.allowed[0]):.1f}", y=y, width=f"{x(r.allowed[1]) - x(r.allowed[0]):.1f}", height=row_h - 8,
                     fill=BAND, fill_opacity=0.18, class_="band"),
                  text(left - 6, y + row_h / 2, r.label, anchor="end")]
        if r.value is None:
            parts.append(text(x(0) + 6, y + row_h / 2, "nothing measured yet", anchor="start", cls="empty"))
            continue
        parts += [el("rect", el("title", escape(r.note)), x=x(0), y=y + 8, width=f"{x(r.value) - x(0):.1f}",
                     height=row_h - 24, fill=LIMIT if r.out else BAR, class_="bar" + (f" out-{r.out}" if r.out else "")),
                  el("line", x1=f"{x(r.low):.1f}", y1=y + (row_h - 8) / 2, x2=f"{x(r.high):.1f}", y2=y + (row_h - 8) / 2,
                     stroke="currentColor", class_="interval"),
                  text(x(max(r.high, r.value)) + 6, y + row_h / 2, pct(r.value), anchor="start", cls="value")]
    base = height - 30
    parts.append(el("line", x1=x(0), y1=base, x2=x(1), y2=base, stroke="currentColor", class_="axis"))
    for v in (0, 0.25, 0.5, 0.75, 1.0):
        parts += [el("line", x1=f"{x(v):.1f}", y1=base, x2=f"{x(v):.1f}", y2=base + 4, stroke="currentColor"),
                  text(x(v), base + 15, pct(v), cls="tick")]
    parts.append(text((x(0) + x(1)) / 2, height - 3, "share (%), 95% interval as a line, allowed range shaded",
                      cls="axis-label"))
    return svg("".join(parts), title, "; ".join(r.note for r in rows), "rates-chart", height=height)


# -- distributions against a reference level (the dose page) ----------------------------------------


def value_ticks(top: float, n: int = 5) -> list[float]:
    """Round ticks from 0 to at least ``top``: steps of 1, 2 or 5 x 10^k, about ``n`` of them."""
    raw = (top if top > 0 else 1.0) / n
    mag = 10 ** math.floor(math.log10(raw))
    step = next(m * mag for m in (1, 2, 5, 10) if m * mag >= raw * (1 - 1e-9))
    return [round(i * step, 10) for i in range(math.ceil(top / step - 1e-9) + 1 if top > 0 else n + 1)]


def num(v: float) -> str:
    """A value as a physicist reads it: three significant digits ("62.5", "0.105", "1.2e+03" never)."""
    return f"{v:.3g}" if abs(v) < 1000 else f"{v:.0f}"


@dataclass(frozen=True)
class BoxStats:
    """A box plot's numbers: quartiles by linear interpolation between order statistics (numpy's default),
    whiskers to the furthest values within 1.5 x IQR of the box (Tukey), the values beyond as outliers."""

    n: int
    q1: float
    median: float
    q3: float
    low: float
    high: float
    outliers: tuple[float, ...]

    @classmethod
    def of(cls, values: Sequence[float]) -> BoxStats:
        from radtriage.dose.local import percentile

        v = sorted(float(x) for x in values)
        q1, med, q3 = (percentile(v, p) for p in (0.25, 0.5, 0.75))
        lo_fence, hi_fence = q1 - 1.5 * (q3 - q1), q3 + 1.5 * (q3 - q1)
        inside = [x for x in v if lo_fence <= x <= hi_fence]
        return cls(len(v), q1, med, q3, inside[0], inside[-1], tuple(x for x in v if x < lo_fence or x > hi_fence))


@dataclass(frozen=True)
class RefLine:
    value: float
    label: str  # drawn on the chart, short: "DRL 60 mGy"
    note: str  # its tooltip and description: where the level comes from
    cls: str = "drl"  # drl | local-drl


def _ref_lines(f: Frame, lines: Sequence[RefLine]) -> str:
    """The lines, each label above its line but the lower of two close ones' below it."""
    out = []
    for r in lines:
        close = [o for o in lines if o is not r and abs(f.y(o.value) - f.y(r.value)) < 16]
        out.append(hline(f, r.value, r.label, r.cls, f"{r.cls}-label", LIMIT if r.cls == "drl" else BASE,
                         below=any(o.value > r.value for o in close), dash="6 4" if r.cls == "drl" else "2 3",
                         note=r.note))
    return "".join(out)


def _value_frame(values: Sequence[float], lines: Sequence[RefLine], x0: float, x1: float, width: int = W
                 ) -> tuple[Frame, list]:
    """A frame from 0 to a round tick above every value and reference line, and its y ticks."""
    ticks = value_ticks(max([*values, *(r.value for r in lines), 0.0]) * 1.08)
    return Frame(x0, x1, 0.0, ticks[-1], width=width), [(t, num(t)) for t in ticks]


def box_chart(groups: Sequence[tuple[str, Sequence[float]]], lines: Sequence[RefLine], title: str, ylabel: str,
              xlabel: str = "scanner (n examinations)") -> str:
    """One box per group (label, values; a group with no values is left out) on a linear axis from 0, with
    horizontal reference lines (the DRL, the local DRL) labelled on the chart."""
    boxes = [(label, BoxStats.of(v)) for label, v in groups if len(v)]
    f, yticks = _value_frame([x for _, v in groups for x in v], lines, -0.5, max(len(boxes), 1) - 0.5,
                             width=max(W, LEFT + RIGHT + 90 * len(boxes)))  # room for each scanner's label
    half = min(28.0, (f.x(1) - f.x(0)) * 0.3) if len(boxes) > 1 else 28.0
    short = lambda s: s if len(s) <= 18 else s[:17] + "…"  # noqa: E731
    parts = [axes(f, [(i, f"{short(label)} (n={b.n})") for i, (label, b) in enumerate(boxes)], yticks, xlabel, ylabel)]
    for i, (label, b) in enumerate(boxes):
        x = f.x(i)
        note = (f"{label}: n {b.n}, median {num(b.median)}, quartiles {num(b.q1)}-{num(b.q3)}, whiskers "
                f"{num(b.low)}-{num(b.high)}, {len(b.outliers)} beyond")
        parts += [el("line", x1=f"{x:.1f}", y1=f"{f.y(b.low):.1f}", x2=f"{x:.1f}", y2=f"{f.y(b.high):.1f}",
                     stroke="currentColor", class_="whisker"),
                  el("rect", el("title", escape(note)), x=f"{x - half:.1f}", y=f"{f.y(b.q3):.1f}",
                     width=f"{2 * half:.1f}", height=f"{f.y(b.q1) - f.y(b.q3):.1f}", fill=BAR, fill_opacity=0.35,
                     stroke=BAR, class_="box"),
                  el("line", x1=f"{x - half:.1f}", y1=f"{f.y(b.median):.1f}", x2=f"{x + half:.1f}",
                     y2=f"{f.y(b.median):.1f}", stroke="currentColor", stroke_width=2, class_="median")]
        parts += [el("circle", el("title", escape(f"{label}: {num(v)}")), cx=f"{x:.1f}", cy=f"{f.y(v):.1f}", r=2.5,
                     fill="none", stroke="currentColor", class_="outlier") for v in b.outliers]
    if not boxes:
        parts.append(text((f.x(f.x0) + f.x(f.x1)) / 2, f.y(f.y1 / 2), "no examinations", cls="empty"))
    parts.append(_ref_lines(f, lines))
    desc = (f"{len(boxes)} boxes (quartiles, Tukey whiskers at 1.5 IQR, outliers as circles)"
            + "".join(f"; {r.note}" for r in lines))
    return svg("".join(parts), title, desc, "box-chart", width=f.width)


@dataclass(frozen=True)
class DayPoint:
    day: int  # days since the chart's first day
    label: str  # the date
    median: float
    low: float
    high: float
    n: int


def day_ticks(first: dt.date, days: int, most: int = 8) -> list[tuple[int, str]]:
    """Ticks over ``days`` days from ``first``: every 1, 2, 7, 14 or 28 days (or more), at most ``most``."""
    step = next((s for s in (1, 2, 7, 14, 28, 56, 91, 182) if days / s <= most), 364 * math.ceil(days / 364 / most))
    return [(d, f"{first + dt.timedelta(days=d):%m-%d}") for d in range(0, max(days, 1), step)]


def series_chart(points: Sequence[DayPoint], first: dt.date, days: int, lines: Sequence[RefLine], title: str,
                 ylabel: str, xlabel: str) -> str:
    """Per-day medians (points joined by a line) with each day's range (a vertical line) over ``days`` days
    from ``first``, with the reference lines."""
    f, yticks = _value_frame([p.high for p in points], lines, -0.5, max(days, 1) - 0.5)
    xticks = day_ticks(first, days)
    parts = [axes(f, xticks, yticks, xlabel, ylabel)]
    path = " ".join(f"{'M' if i == 0 else 'L'}{f.x(p.day):.1f},{f.y(p.median):.1f}" for i, p in enumerate(points))
    if path:
        parts.append(el("path", d=path, fill="none", stroke=BAR, stroke_width=1.5, class_="trend"))
    for p in points:
        x = f.x(p.day)
        parts += [el("line", x1=f"{x:.1f}", y1=f"{f.y(p.low):.1f}", x2=f"{x:.1f}", y2=f"{f.y(p.high):.1f}",
                     stroke=BAR, stroke_opacity=0.6, class_="range"),
                  el("circle", el("title", escape(f"{p.label}: median {num(p.median)} of {p.n} (range "
                                                  f"{num(p.low)}-{num(p.high)})")),
                     cx=f"{x:.1f}", cy=f"{f.y(p.median):.1f}", r=3.5, fill=BAR, class_="point")]
    if not points:
        parts.append(text((f.x(f.x0) + f.x(f.x1)) / 2, f.y(f.y1 / 2), "no examinations", cls="empty"))
    parts.append(_ref_lines(f, lines))
    return svg("".join(parts), title, f"{len(points)} days with examinations" + "".join(f"; {r.note}" for r in lines),
               "series-chart")
