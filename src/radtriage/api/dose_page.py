"""The Dose page (``/admin/dose``) for the medical physicists and the admins: the dose registry's
examinations against the DRLs, as server-rendered charts and tables (`radtriage.api.dose_view`), filtered by
query parameters from a plain form. Every viewing is audited; other roles get 403, no session the login.
"""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Literal

from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse, Response

from radtriage.alerts.config import Privacy
from radtriage.api import charts
from radtriage.api.auth import client_of
from radtriage.api.dose_view import Filters, dose_view, unit_text
from radtriage.api.pages import page_user, user_page
from radtriage.api.problems import ProblemError
from radtriage.db import audit

router = APIRouter(include_in_schema=False)
ROLES = ("physicist", "admin")
DEFAULT_DAYS = 90
MAX_DAYS = 3660
Text = Annotated[str | None, Query(max_length=128)]


def _day(text: str | None, name: str, default: dt.date) -> dt.date:
    if not text:
        return default
    try:
        return dt.date.fromisoformat(text)
    except ValueError:
        raise ProblemError(400, "Bad Request", f"{name}: not a date (YYYY-MM-DD): {text[:32]!r}") from None


def filters_of(since: str | None, until: str | None, **chosen: str | None) -> Filters:
    """The page's filters from its query; the period defaults to the last 90 days (UTC) and may not run
    backwards or over ten years."""
    end = _day(until, "until", dt.datetime.now(dt.UTC).date())
    start = _day(since, "since", end - dt.timedelta(days=DEFAULT_DAYS - 1))
    if start > end:
        raise ProblemError(400, "Bad Request", f"since ({start}) is after until ({end})")
    if (end - start).days > MAX_DAYS:
        raise ProblemError(400, "Bad Request", f"a period of at most {MAX_DAYS} days")
    return Filters(start, end, **{k: (v or None) for k, v in chosen.items()})


def _privacy(request: Request) -> Privacy:
    alerts = request.app.state.services.alerts
    return alerts.config.privacy if alerts is not None else Privacy()


@router.get("/admin/dose", response_class=HTMLResponse)
def dose_page(request: Request, since: Text = None, until: Text = None, facility: Text = None, scanner: Text = None,
              examination: Text = None, protocol: Text = None, band: Text = None, drl: Text = None,
              by: Literal["facility", "scanner"] = "facility") -> Response:
    """Per examination and scanner the dose distributions and per-day medians against the DRL, the site's
    medians against it, the local DRLs and the flagged examinations with their reasons."""
    user = page_user(request, ROLES)
    if isinstance(user, Response):
        return user
    f = filters_of(since, until, facility=facility, scanner=scanner, examination=examination, protocol=protocol,
                   band=band, drl=drl, by=by)
    db = request.app.state.services.db
    view = dose_view(db, f, _privacy(request))
    audit.log(db, "dose_page_viewed", actor=user.username, role=user.role, client=client_of(request),
              detail={"since": f.since.isoformat(), "until": f.until.isoformat(), "drl_set": view.drl_label,
                      **{k: v for k, v in f.export_query().items() if k not in ("since", "until")},
                      **({"protocol": f.protocol} if f.protocol else {}), "exams": view.exams,
                      "flagged": view.flagged_total, "studies": [r["study_uid"] for r in view.flagged]})
    return user_page(request, "dose.html", user, view=view, unit_text=unit_text, num=charts.num)
