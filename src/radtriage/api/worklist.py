"""`/api/v1/worklist`: the prioritised worklist, filtered and sorted, served from a short-lived cache.

Every listing is in the audit trail (one row per request, naming the studies shown).
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import Response
from starlette.concurrency import run_in_threadpool

from radtriage.api import audit as audit_api
from radtriage.api.deps import Readers, services_of
from radtriage.api.schemas import ReadStatus, WorklistItem, WorklistPage
from radtriage.db import edge_results, worklist
from radtriage.db.changes import Memo
from radtriage.db.clock import utcnow
from radtriage.domain import Priority
from radtriage.forward.payload import said
from radtriage.monitor.status import notices

router = APIRouter(prefix="/api/v1", tags=["worklist"])


def item(row: dict[str, Any], targets_min: dict[str, float], now: datetime,
         edge: list[dict[str, Any]] | None = None) -> WorklistItem:
    """A worklist row as the API shows it: with its reading target, overdue state and waiting time (and at a
    hub, ``edge``: the study's live edge results, said with their origin)."""
    due = row["received_at"] + timedelta(minutes=targets_min.get(row["priority"], 24 * 60.0))
    return WorklistItem(**row, due_at=due, overdue=row["status"] != "reported" and now > due,
                        waiting_min=round((now - row["received_at"]).total_seconds() / 60, 1),
                        edge_ai=[said(e) for e in edge or ()])


PAGE_CACHE_S = 1.0  # a worklist page is rebuilt at least this often (waiting time, overdue state) ...
PAGE_STALE_S = 3.0  # ... and, with no change since, served this long while one request rebuilds it


def _page_json(services: Any, filters: worklist.Filters, sort: str, limit: int, offset: int
               ) -> tuple[bytes, list[str]]:
    total, rows = worklist.page(services.db, filters, sort, limit, offset)
    now, targets = utcnow(), services.settings.worklist.targets_min
    edge = edge_results.live_of_studies(services.db, [r["study_uid"] for r in rows])
    return (WorklistPage(total=total, limit=limit, offset=offset,
                         items=[item(r, targets, now, edge.get(r["study_uid"])) for r in rows],
                         monitor=notices(services.db)).model_dump_json().encode(), [r["study_uid"] for r in rows])


async def _page_body(request: Request, filters: worklist.Filters, sort: str, limit: int, offset: int
                     ) -> tuple[bytes, list[str]]:
    """The page as JSON, from a per-app cache kept while neither this process nor the live hub saw a change.

    Any write by this process to the tables the page reads (a claim, a new
    result, a new study) makes the next request read the database again;
    changes by other processes show once the live hub has polled (0.5 s).
    A page is rebuilt when it is `PAGE_CACHE_S` old; while that runs, other
    readers get the page it replaces (no change since, only its clocks older).
    """
    app = request.app
    memo: Memo[tuple[bytes, list[str]]] | None = getattr(app.state, "worklist_pages", None)
    if memo is None:
        memo = app.state.worklist_pages = Memo(PAGE_CACHE_S)
    services, hub = services_of(request), app.state.live
    key = (filters, sort, limit, offset)

    def version() -> tuple[int, int]:
        return worklist.page_version(services.db), hub.version

    body = memo.peek(key, version(), PAGE_STALE_S)
    if body is None:
        body = await run_in_threadpool(memo.get_or_build, key, version,
                                       lambda: _page_json(services, filters, sort, limit, offset), PAGE_STALE_S)
    return body


@router.get("/worklist", response_model=WorklistPage)
async def get_worklist(
    request: Request,
    user: Readers,
    status: Annotated[list[ReadStatus] | None, Query()] = None,
    priority: Annotated[list[Priority] | None, Query()] = None,
    modality: Annotated[str | None, Query(pattern=r"^[A-Za-z]{2,4}$")] = None,
    task: Annotated[str | None, Query(pattern=r"^[a-z][a-z0-9_]{0,31}$")] = None,
    ae: Annotated[str | None, Query(max_length=16)] = None,
    site: Annotated[str | None, Query(pattern=r"^[A-Za-z0-9_.-]{1,64}$")] = None,
    received_from: datetime | None = None,
    received_to: datetime | None = None,
    sort: Annotated[str, Query(pattern="^(priority|received|-received|updated)$")] = "priority",
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    offset: Annotated[int, Query(ge=0)] = 0,
) -> Response:
    """The worklist: most urgent first, oldest first within a priority (``sort=priority``)."""
    filters = worklist.Filters(status=tuple(status or ()), priority=tuple(p.value for p in priority or ()),
                               modality=modality, task=task, calling_ae=ae, site=site,
                               received_from=received_from, received_to=received_to)
    body, shown = await _page_body(request, filters, sort, limit, offset)
    await audit_api.listed_together(request, "worklist_listed", shown, query=request.url.query[:256])
    return Response(body, media_type="application/json")
