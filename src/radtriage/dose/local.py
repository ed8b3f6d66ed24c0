"""Local DRLs, as ICRP Publication 135 defines them: for each examination, band (and phantom) and
quantity, the median per facility (or per scanner) over a period, then the DRL as the 75th percentile of
those medians and the 25th percentile as the "achievable" (or "abnormally low") level, with the number of
facilities and examinations behind each value.

Percentiles are by linear interpolation between order statistics (Hyndman and Fan type 7: the value at
rank h = (n - 1) p, interpolated; PostgreSQL's ``percentile_cont`` and numpy's default), in both steps.
On PostgreSQL the whole table is one query (medians and percentiles in the database, read from a covering
index); elsewhere the medians come from the sorted values streamed out.
`csv_text` and `xlsx_bytes` export the table for a regulator.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import math
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from itertools import groupby
from typing import Any

from radtriage.db import Database
from radtriage.db import dose as rows
from radtriage.dose.model import QUANTITIES, QUANTITY_COLUMNS

METHOD = "linear interpolation between order statistics (Hyndman-Fan type 7; PostgreSQL percentile_cont)"


def percentile(ordered: Sequence[float], p: float) -> float:
    """The ``p`` (0..1) percentile of ``ordered`` (ascending) by linear interpolation between order statistics."""
    if not ordered:
        raise ValueError("no values")
    h = (len(ordered) - 1) * p
    lo = math.floor(h)
    hi = min(lo + 1, len(ordered) - 1)
    return ordered[lo] + (h - lo) * (ordered[hi] - ordered[lo])


@dataclass(frozen=True)
class LocalDrl:
    examination: str
    band: str
    phantom_cm: int | None
    quantity: str
    unit: str
    drl: float  # 75th percentile of the medians
    achievable: float  # 25th percentile of the medians
    median: float  # median of the medians
    groups: int  # facilities (or scanners)
    exams: int
    by: str  # facility | scanner


def _medians(conn: Any, column: str, by: str, filters: list[Any]) -> list[tuple]:
    """(examination, band, phantom, group, median, n) from the sorted values streamed out of the database."""
    out = []
    for key, items in groupby(rows.group_values(conn, column, by, *filters), key=lambda r: r[:4]):
        values = [float(r[4]) for r in items]
        out.append((*key, percentile(values, 0.5), len(values)))
    return out


def _in_python(conn: Any, quantity: str, by: str, filters: list[Any], min_groups: int) -> list[LocalDrl]:
    medians = sorted(_medians(conn, QUANTITY_COLUMNS[quantity], by, filters),
                     key=lambda r: (r[0], r[1], r[2] or 0, float(r[4])))
    out = []
    for (exam, band, phantom), items in groupby(medians, key=lambda r: (r[0], r[1], r[2])):
        items = list(items)
        if len(items) < min_groups:
            continue
        values = [float(r[4]) for r in items]
        out.append(LocalDrl(exam, band, phantom, quantity, QUANTITIES[quantity][0], percentile(values, 0.75),
                            percentile(values, 0.25), percentile(values, 0.5), len(items),
                            sum(int(r[5]) for r in items), by))
    return out


def local_drls(db: Database, *, by: str = "facility", since: dt.datetime | None = None,
               until: dt.datetime | None = None, quantities: Iterable[str] = QUANTITIES,
               min_groups: int = 1) -> list[LocalDrl]:
    """The local DRL table over [since, until), one row per examination, band, phantom and quantity with at
    least ``min_groups`` facilities (or scanners): on PostgreSQL in one query (`radtriage.db.dose.local_drl_sql`),
    elsewhere from the values streamed out, quantity by quantity."""
    if by not in ("facility", "scanner"):
        raise ValueError("by is facility or scanner")
    filters = rows.exam_filters(since=since, until=until)
    quantities = list(quantities)
    with db.read() as conn:
        if conn.dialect.name != "postgresql":
            return [r for q in quantities for r in _in_python(conn, q, by, filters, min_groups)]
        got = rows.local_drl_sql(conn, {q: QUANTITY_COLUMNS[q] for q in quantities}, by, *filters,
                                 min_groups=min_groups)
    table = [LocalDrl(exam, band, phantom, q, QUANTITIES[q][0], float(p75), float(p25), float(p50), int(groups),
                      int(n), by) for q, exam, band, phantom, p75, p25, p50, groups, n in got]
    return sorted(table, key=lambda r: (quantities.index(r.quantity), r.examination, r.band, r.phantom_cm or 0))


COLUMNS = ("examination", "band", "phantom_cm", "quantity", "unit", "drl", "achievable", "median", "groups", "exams",
           "by")


def _header(period: str) -> list[list[str]]:
    return [["radtriage local DRLs (ICRP 135): DRL = 75th percentile of the medians per facility or scanner; "
             "achievable = 25th percentile"], [f"period: {period}"], [f"percentile method: {METHOD}"]]


def csv_text(table: Sequence[LocalDrl], period: str) -> str:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    for line in _header(period):
        w.writerow(["# " + line[0]])
    w.writerow(COLUMNS)
    for r in table:
        d = asdict(r)
        w.writerow([_cell(d[c]) for c in COLUMNS])
    return buf.getvalue()


def _cell(v: Any) -> Any:
    return f"{v:.6g}" if isinstance(v, float) else ("" if v is None else v)


def xlsx_bytes(sheets: dict[str, tuple[Sequence[str], Iterable[Sequence[Any]]]], notes: Sequence[str] = ()) -> bytes:
    """An XLSX workbook: one sheet per (columns, rows), notes above the columns of the first."""
    from openpyxl import Workbook

    wb = Workbook(write_only=True)
    for i, (title, (columns, data)) in enumerate(sheets.items()):
        ws = wb.create_sheet(title[:31])
        for note in notes if i == 0 else ():
            ws.append([note])
        ws.append(list(columns))
        for row in data:
            ws.append([v.replace(tzinfo=None) if isinstance(v, dt.datetime) else v for v in row])
    buf = io.BytesIO()
    wb.save(buf)
    return buf.getvalue()


def table_xlsx(table: Sequence[LocalDrl], period: str) -> bytes:
    notes = [line[0] for line in _header(period)]
    return xlsx_bytes({"local DRLs": (COLUMNS, ([asdict(r)[c] for c in COLUMNS] for r in table))}, notes)
