"""The audit trail over HTTP: reads of patient data recorded, and the trail listed (``GET /api/v1/audit``)
and exported (``GET /api/v1/audit/export``) for admins.

Every read of patient data by a person or a service is an audit entry (IHE
ATNA's rule): who (user and role, from the request's authentication), what
(the study, or the studies a listing showed) and from where (client address).
The entry is stored before the answer leaves: if it cannot be written the
request fails rather than show data nobody recorded. A listing that showed no
study disclosed nothing and is not recorded (the stroke phone page polls the
alert list every few seconds). Worklist listings, the busiest reads, go
through `GroupCommit`: one transaction for the entries of every request
waiting at that moment.
"""

from __future__ import annotations

import asyncio
import socket
from collections import Counter
from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, FastAPI, Query, Request
from fastapi.responses import StreamingResponse
from starlette.concurrency import run_in_threadpool

from radtriage.api.auth import User, client_of
from radtriage.api.deps import Admin, Db, services_of
from radtriage.api.schemas import AuditPage, UidPattern
from radtriage.db import audit
from radtriage.db.engine import Database

router = APIRouter(prefix="/api/v1/audit", tags=["audit"])
ANONYMOUS = "anonymous"
FORMATS = {"csv": ("text/csv; charset=utf-8", "csv"), "syslog": ("text/plain; charset=utf-8", "log")}


def entry(request: Request, action: str, study_uid: str | None = None, **detail: Any) -> dict[str, Any]:
    """An audit entry for the authenticated caller of ``request`` (keyword arguments of `audit.record`)."""
    user: User | None = getattr(request.state, "user", None)
    return {"action": action, "actor": user.username if user else ANONYMOUS, "role": user.role if user else None,
            "study_uid": study_uid, "client": client_of(request), "detail": detail}


def read(request: Request, action: str, study_uid: str | None = None, **detail: Any) -> None:
    """Record a read of one study by the caller (from a route that runs in the thread pool)."""
    audit.log_many(services_of(request).db, [entry(request, action, study_uid, **detail)])


def _listing(request: Request, action: str, studies: Iterable[str], detail: dict[str, Any]) -> dict[str, Any] | None:
    shown = list(dict.fromkeys(studies))
    return entry(request, action, studies=shown, **detail) if shown else None


def listed(request: Request, action: str, studies: Iterable[str], **detail: Any) -> None:
    """Record a listing that showed ``studies`` (nothing when it showed none)."""
    if (item := _listing(request, action, studies, detail)) is not None:
        audit.log_many(services_of(request).db, [item])


async def listed_together(request: Request, action: str, studies: Iterable[str], **detail: Any) -> None:
    """`listed` for async routes: committed with the entries of concurrent requests (`GroupCommit`)."""
    if (item := _listing(request, action, studies, detail)) is not None:
        await GroupCommit.of(request.app).add(item)


def link_view(request: Request, actor: str, study_uid: str, alert_id: int) -> None:
    """Record a view of the acknowledgement page opened by a signed link (its holder is not logged in)."""
    audit.log_many(services_of(request).db, [{
        "action": "ack_page_viewed", "actor": actor, "study_uid": study_uid, "client": client_of(request),
        "detail": {"alert_id": alert_id, "via": "link", "method": request.method,
                   "user_agent": request.headers.get("user-agent", "")[:128]}}])


async def stow(request: Request, stored: Sequence[Any], failed: Sequence[Any]) -> None:
    """Record a STOW-RS request: an entry per study it stored instances of, or one saying it stored none."""
    per_study = Counter(r.study_uid for r in stored)
    if per_study:
        items = [entry(request, "stow_stored", uid, instances=n, failed=len(failed), outcome=4 if failed else 0,
                       series=sorted({r.series_uid for r in stored if r.study_uid == uid}))
                 for uid, n in per_study.items()]
    else:
        items = [entry(request, "stow_refused", failed=len(failed))]
    await run_in_threadpool(audit.log_many, services_of(request).db, items)


class GroupCommit:
    """Audit entries of concurrent requests written in one transaction (a group commit).

    A request adds its entry and waits until it is committed, so no answer
    leaves before its entry is stored and a crash loses none. While one
    transaction runs, entries that arrive wait for the next, which takes them
    all: under load one commit serves many requests. One per application.
    """

    def __init__(self, db: Database) -> None:
        self.db = db
        self._waiting: list[tuple[dict[str, Any], asyncio.Future[None]]] = []
        self._task: asyncio.Task[None] | None = None

    @classmethod
    def of(cls, app: FastAPI) -> GroupCommit:
        found = getattr(app.state, "audit_group_commit", None)
        if found is None:
            found = app.state.audit_group_commit = cls(app.state.services.db)
        return found

    async def add(self, item: dict[str, Any]) -> None:
        loop = asyncio.get_running_loop()
        done: asyncio.Future[None] = loop.create_future()
        self._waiting.append((item, done))
        if self._task is None or self._task.done() or self._task.get_loop() is not loop:
            self._task = loop.create_task(self._drain())
        await done

    async def _drain(self) -> None:
        while self._waiting:
            batch, self._waiting = self._waiting, []
            try:
                await run_in_threadpool(audit.log_many, self.db, [item for item, _ in batch])
            except Exception as exc:  # noqa: BLE001 - each waiting request fails with it
                for _, done in batch:
                    if not done.done():
                        done.set_exception(exc)
            else:
                for _, done in batch:
                    if not done.done():
                        done.set_result(None)


@router.get("", response_model=AuditPage)
def get_audit(
    user: Admin,
    db: Db,
    study_uid: Annotated[str | None, Query(pattern=UidPattern, max_length=64)] = None,
    actor: Annotated[str | None, Query(max_length=64)] = None,
    action: Annotated[str | None, Query(max_length=32)] = None,
    since: datetime | None = None,
    until: datetime | None = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    offset: Annotated[int, Query(ge=0)] = 0,
) -> AuditPage:
    """The audit trail, newest first (admins only)."""
    total, rows = audit.entries(db, study_uid, actor, action, since, until, limit, offset)
    return AuditPage(total=total, items=rows)


@router.get("/export", response_class=StreamingResponse,
            responses={200: {"content": {"text/csv": {}, "text/plain": {}}}})
def export(
    request: Request,
    user: Admin,
    db: Db,
    format: Literal["csv", "syslog"] = "csv",  # noqa: A002 - the query parameter's name
    since: Annotated[datetime | None, Query(description="from this time (ISO 8601; UTC when no offset)")] = None,
    until: Annotated[datetime | None, Query(description="before this time")] = None,
) -> StreamingResponse:
    """The audit trail, oldest first, as CSV or as RFC 5424 syslog lines with the IHE ATNA fields (admins only).

    The export is itself an entry of the trail ("audit_exported").
    """
    read(request, "audit_exported", format=format, since=since and since.isoformat(),
         until=until and until.isoformat())
    media_type, ext = FORMATS[format]
    rows = audit.stream(db, since, until)
    lines = audit.csv_lines(rows) if format == "csv" else audit.syslog_lines(rows, socket.gethostname())
    name = f"radtriage-audit-{datetime.now().strftime('%Y%m%d-%H%M%S')}.{ext}"
    return StreamingResponse(lines, media_type=media_type,
                             headers={"Content-Disposition": f'attachment; filename="{name}"',
                                      "Cache-Control": "no-store"})
