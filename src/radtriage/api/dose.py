"""`/api/v1/dose`: the dose registry for the medical physicists and the admins (role ``physicist`` or
``admin``): examinations with their dose and flags (JSON, CSV, XLSX), the flagged ones, the DRL sets, and
the local DRL table (ICRP 135; JSON, CSV, XLSX). Every reading is audited; rows carry no patient name or ID.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
from dataclasses import asdict
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query, Request
from fastapi.responses import Response

from radtriage.api.auth import client_of
from radtriage.api.deps import Db, Physicists
from radtriage.api.problems import ProblemError
from radtriage.db import audit
from radtriage.db import dose as rows
from radtriage.dose.local import csv_text, local_drls, table_xlsx, xlsx_bytes

router = APIRouter(prefix="/api/v1/dose", tags=["dose"])
Format = Literal["json", "csv", "xlsx"]
XLSX = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
EXAM_COLUMNS = ("study_uid", "performed_at", "modality", "facility", "scanner", "protocol", "study_description",
                "examination", "band", "age_years", "weight_kg", "sex", "pregnant", "source", "estimated",
                "phantom_cm", "ctdivol", "dlp", "dap", "entrance_dose", "dw_cm", "ssde", "drl_set", "flags")
UNITS = ("ctdivol mGy; dlp mGy.cm; dap Gy.cm2; entrance_dose mGy; CTDIvol and DLP on phantom_cm; dw_cm "
         "water-equivalent diameter cm (AAPM 220); ssde mGy, body CT (AAPM 204)")


def _when(text: str | None) -> dt.datetime | None:
    if not text:
        return None
    try:
        t = dt.datetime.fromisoformat(text)
    except ValueError:
        raise ProblemError(400, "Bad Request", f"not an ISO 8601 date or time: {text!r}") from None
    return t if t.tzinfo else t.replace(tzinfo=dt.UTC)


def _file(body: bytes | str, kind: str, name: str) -> Response:
    media = XLSX if kind == "xlsx" else "text/csv; charset=utf-8"
    return Response(body, media_type=media, headers={"Content-Disposition": f'attachment; filename="{name}.{kind}"'})


@router.get("/exams")
def exams(request: Request, user: Physicists, db: Db, examination: str | None = None, facility: str | None = None,
          scanner: str | None = None, band: str | None = None, since: str | None = None, until: str | None = None,
          flagged: bool = False, format: Format = "json",
          limit: Annotated[int, Query(ge=1, le=100000)] = 1000) -> Any:
    """The registry's examinations, newest first, with their flags (the reasons in words)."""
    filters = rows.exam_filters(examination, facility, scanner, band, _when(since), _when(until))
    with db.read() as conn:
        found = list(rows.exams(conn, *filters, flagged=flagged, limit=limit))
    audit.log(db, "dose_exams_viewed", actor=user.username, role=user.role, client=client_of(request),
              detail={"count": len(found), "format": format, "studies": [r["study_uid"] for r in found[:200]]})
    cells = [[("; ".join(r[c]) if c == "flags" else r[c]) for c in EXAM_COLUMNS] for r in found]
    if format == "csv":
        buf = io.StringIO()
        w = csv.writer(buf, lineterminator="\n")
        w.writerow([f"# units: {UNITS}"])
        w.writerow(EXAM_COLUMNS)
        w.writerows([c.isoformat() if isinstance(c, dt.datetime) else c for c in row] for row in cells)
        return _file(buf.getvalue(), "csv", "dose-registry")
    if format == "xlsx":
        return _file(xlsx_bytes({"registry": (EXAM_COLUMNS, cells)}, [f"units: {UNITS}"]), "xlsx", "dose-registry")
    return {"units": UNITS, "exams": [{c: r[c] for c in EXAM_COLUMNS} for r in found]}


@router.get("/local-drl")
def local_drl(request: Request, user: Physicists, db: Db, since: str | None = None, until: str | None = None,
              by: Literal["facility", "scanner"] = "facility", min_groups: Annotated[int, Query(ge=1)] = 1,
              format: Format = "json") -> Any:
    """Local DRLs (ICRP 135) over [since, until): per examination, band, phantom and quantity, the 75th
    percentile (DRL) and 25th (achievable) of the medians per facility or scanner, with their counts."""
    table = local_drls(db, by=by, since=_when(since), until=_when(until), min_groups=min_groups)
    period = f"{since or 'start'} to {until or 'now'}, per {by}"
    audit.log(db, "dose_local_drl_viewed", actor=user.username, role=user.role, client=client_of(request),
              detail={"rows": len(table), "by": by, "since": since, "until": until, "format": format})
    if format == "csv":
        return _file(csv_text(table, period), "csv", "local-drl")
    if format == "xlsx":
        return _file(table_xlsx(table, period), "xlsx", "local-drl")
    from radtriage.dose.local import METHOD

    return {"period": period, "method": METHOD, "rows": [asdict(r) for r in table]}


@router.get("/drl-sets")
def drl_sets(user: Physicists, db: Db) -> list[dict[str, Any]]:
    """The DRL sets imported (name, version, sha256 of the file, when and by whom)."""
    with db.read() as conn:
        return rows.list_sets(conn)
