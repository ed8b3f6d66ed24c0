"""What the Dose page shows, from the dose registry: the examinations under the page's filters drawn against
the DRL set's levels (server-rendered SVG from `radtriage.api.charts`), the site's medians against those
levels, the local DRL table (`radtriage.dose.local`), and the examinations flagged, with their reasons.

One panel per examination, band, phantom and quantity (CTDIvol, DLP, DAP): the distribution per scanner as
box plots and the per-day medians over the period, each with the DRL and the local DRL drawn as labelled
lines. No patient name or ID: a flagged study is shown by its accession, masked as the alerting file's
privacy says (as the physicists' notices are).
"""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from radtriage.alerts.config import Privacy
from radtriage.alerts.message import mask
from radtriage.api import charts
from radtriage.db import Database
from radtriage.db import dose as rows
from radtriage.dose.drl import DrlSet, parse_set
from radtriage.dose.local import LocalDrl, local_drls, percentile
from radtriage.dose.model import QUANTITIES, QUANTITY_COLUMNS

SHOWN = ("CTDIvol", "DLP", "DAP")
MAX_EXAMS = 50_000  # read for one page; more is said, and the exports carry the rest
MAX_FLAGGED = 200
UNIT_TEXT = {"mGy": "mGy", "mGy.cm": "mGy·cm", "Gy.cm2": "Gy·cm²"}


@dataclass(frozen=True)
class Filters:
    """The page's query: the period [since, until] in whole UTC days, and each filter (None: all)."""

    since: dt.date
    until: dt.date
    facility: str | None = None
    scanner: str | None = None
    examination: str | None = None
    protocol: str | None = None
    band: str | None = None
    drl: str | None = None  # a DRL set's label ("name vversion"); None: the one that judged the examinations
    by: str = "facility"  # the local DRL's groups: facility | scanner

    @property
    def start(self) -> dt.datetime:
        return dt.datetime.combine(self.since, dt.time(), dt.UTC)

    @property
    def end(self) -> dt.datetime:
        return dt.datetime.combine(self.until + dt.timedelta(days=1), dt.time(), dt.UTC)

    def matches(self, r: Mapping[str, Any]) -> bool:
        return all(want is None or r[key] == want for key, want in (
            ("facility", self.facility), ("scanner", self.scanner), ("examination", self.examination),
            ("protocol", self.protocol), ("band", self.band)))

    def export_query(self) -> dict[str, str]:
        """The API's query for the same examinations (it has no protocol filter: the export carries the column)."""
        q = {"examination": self.examination, "facility": self.facility, "scanner": self.scanner,
             "band": self.band, "since": self.start.isoformat(), "until": self.end.isoformat()}
        return {k: v for k, v in q.items() if v is not None}


@dataclass
class Panel:
    examination: str
    band: str
    phantom_cm: int | None
    quantity: str
    unit: str
    n: int
    site_median: float
    drl: float | None
    local: LocalDrl | None
    box_svg: str = ""
    series_svg: str = ""

    @property
    def ratio(self) -> float | None:
        return self.site_median / self.drl if self.drl else None


@dataclass
class DoseView:
    filters: Filters
    options: dict[str, list[str]]
    sets: list[str]
    drl_label: str | None
    exams: int
    unmapped: int
    truncated: bool
    panels: list[Panel] = field(default_factory=list)
    local: list[LocalDrl] = field(default_factory=list)
    flagged: list[dict[str, Any]] = field(default_factory=list)
    flagged_total: int = 0


def unit_text(unit: str) -> str:
    return UNIT_TEXT.get(unit, unit)


def _drl_set(conn: Any, label: str | None) -> DrlSet | None:
    for s in reversed(rows.list_sets(conn)):
        if label is None or f"{s['name']} v{s['version']}" == label:
            doc = rows.get_set(conn, s["name"], s["version"])
            return parse_set(doc, f"{s['name']} v{s['version']}") if doc is not None else None
    return None


def _options(found: Sequence[Mapping[str, Any]]) -> dict[str, list[str]]:
    keys = ("facility", "scanner", "examination", "protocol", "band")
    return {k: sorted({r[k] for r in found if r[k]}) for k in keys}


def _lines(p: Panel, drl_label: str | None) -> list[charts.RefLine]:
    unit = unit_text(p.unit)
    out = [charts.RefLine(p.drl, f"DRL {charts.num(p.drl)} {unit}", f"DRL {charts.num(p.drl)} {unit} ({drl_label})")
           ] if p.drl else []
    if p.local is not None:
        out.append(charts.RefLine(p.local.drl, f"local DRL {charts.num(p.local.drl)} {unit}",
                                  f"local DRL {charts.num(p.local.drl)} {unit}: 75th percentile of {p.local.groups} "
                                  f"{p.local.by} medians ({p.local.exams} examinations)", "local-drl"))
    return out


def _draw(p: Panel, items: Sequence[Mapping[str, Any]], f: Filters, drl_label: str | None) -> None:
    column = QUANTITY_COLUMNS[p.quantity]
    phantom = f", {p.phantom_cm} cm phantom" if p.phantom_cm else ""
    ylabel = f"{p.quantity} ({unit_text(p.unit)}){phantom}"
    name = f"{p.examination}, {p.band}{phantom}: {p.quantity}"
    per_scanner: dict[str, list[float]] = defaultdict(list)
    per_day: dict[dt.date, list[float]] = defaultdict(list)
    for r in items:
        per_scanner[r["scanner"]].append(float(r[column]))
        per_day[r["performed_at"].astimezone(dt.UTC).date()].append(float(r[column]))
    lines = _lines(p, drl_label)
    p.box_svg = charts.box_chart(sorted(per_scanner.items()), lines, f"{name} per scanner", ylabel)
    points = [charts.DayPoint((d - f.since).days, f"{d:%m-%d}", percentile(sorted(v), 0.5), min(v), max(v), len(v))
              for d, v in sorted(per_day.items())]
    p.series_svg = charts.series_chart(points, f.since, (f.until - f.since).days + 1, lines, f"{name}: median per day",
                                       ylabel, f"day (UTC), {f.since:%Y-%m-%d} to {f.until:%Y-%m-%d}")


def _panels(found: Sequence[Mapping[str, Any]], drl: DrlSet | None, local: Sequence[LocalDrl], f: Filters
            ) -> list[Panel]:
    groups: dict[tuple, list[Mapping[str, Any]]] = defaultdict(list)
    for r in found:
        if r["examination"] and r["band"]:
            groups[(r["examination"], r["band"], r["phantom_cm"])].append(r)
    local_of = {(x.examination, x.band, x.phantom_cm, x.quantity): x for x in local}
    out = []
    for (exam, band, phantom), items in sorted(groups.items(), key=lambda kv: (kv[0][0], kv[0][1], kv[0][2] or 0)):
        for quantity in SHOWN:
            mine = [r for r in items if r[QUANTITY_COLUMNS[quantity]] is not None]
            if not mine:
                continue
            level = drl.level(exam, band, quantity, phantom) if drl is not None else None
            values = sorted(float(r[QUANTITY_COLUMNS[quantity]]) for r in mine)
            p = Panel(exam, band, phantom, quantity, QUANTITIES[quantity][0], len(values), percentile(values, 0.5),
                      level.registry_value if level else None, local_of.get((exam, band, phantom, quantity)))
            _draw(p, mine, f, drl.label if drl else None)
            out.append(p)
    return out


FLAG_COLUMNS = ("study_uid", "performed_at", "facility", "scanner", "examination", "band", "protocol", "phantom_cm",
                "estimated", "flags")


def _flagged(conn: Any, found: Sequence[Mapping[str, Any]], privacy: Privacy) -> list[dict[str, Any]]:
    out = []
    for r in [r for r in found if r["flags"]][:MAX_FLAGGED]:
        accession = None if privacy.patient == "none" else mask(rows.accession_of(conn, r["study_uid"]),
                                                                privacy.id_visible_chars)
        values = [f"{q} {charts.num(r[c])} {unit_text(QUANTITIES[q][0])}" for q, c in QUANTITY_COLUMNS.items()
                  if r[c] is not None]
        out.append({**{k: r[k] for k in FLAG_COLUMNS}, "accession": accession or "(hidden)", "values": values})
    return out


def dose_view(db: Database, f: Filters, privacy: Privacy) -> DoseView:
    """Everything the page shows for these filters."""
    with db.read() as conn:
        period = list(rows.exams(conn, *rows.exam_filters(since=f.start, until=f.end), limit=MAX_EXAMS))
        found = [r for r in period if f.matches(r)]
        sets = [f"{s['name']} v{s['version']}" for s in rows.list_sets(conn)]
        judged_by = next((r["drl_set"] for r in found if r["drl_set"]), None)
        label = f.drl if f.drl in sets else judged_by if judged_by in sets else (sets[-1] if sets else None)
        drl = _drl_set(conn, label) if label else None
        flagged = _flagged(conn, found, privacy)
    local = [x for x in local_drls(db, by=f.by, since=f.start, until=f.end)
             if (f.examination is None or x.examination == f.examination) and (f.band is None or x.band == f.band)]
    view = DoseView(f, _options(period), sets, label, len(found),
                    sum(1 for r in found if not (r["examination"] and r["band"])), len(period) >= MAX_EXAMS,
                    local=local, flagged=flagged, flagged_total=sum(1 for r in found if r["flags"]))
    view.panels = _panels(found, drl, local, f)
    return view
