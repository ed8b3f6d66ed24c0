"""`/api/v1`: the worklist, a study's detail, claim/release/report, AI feedback, key images, audit.

Every route checks its role; every action on a study is in the audit trail.
Unknown UIDs give 404 and malformed ones 422, as problem details.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path as PathParam, Query, Request
from fastapi.responses import FileResponse, Response
from starlette.concurrency import run_in_threadpool

from radtriage.api import audit as audit_api
from radtriage.api.auth import User, client_of, require_roles
from radtriage.api.problems import ProblemError
from radtriage.api.schemas import (
    AuditPage,
    FeedbackIn,
    ReadStatus,
    StudyDetail,
    UidPattern,
    WorklistItem,
    WorklistPage,
)
from radtriage.db import audit, worklist
from radtriage.db.access import utcnow
from radtriage.db.changes import Memo
from radtriage.domain import Priority

router = APIRouter(prefix="/api/v1", tags=["worklist"])

Readers = Annotated[User, Depends(require_roles("radiologist", "stroke", "admin", "service"))]
People = Annotated[User, Depends(require_roles("radiologist", "stroke", "admin"))]
Radiologist = Annotated[User, Depends(require_roles("radiologist"))]
RadiologistOrAdmin = Annotated[User, Depends(require_roles("radiologist", "admin"))]
Admin = Annotated[User, Depends(require_roles("admin"))]
StudyUid = Annotated[str, PathParam(pattern=UidPattern, max_length=64)]


def _settings(request: Request) -> Any:
    return request.app.state.services.settings


def item(row: dict[str, Any], targets_min: dict[str, float], now: datetime) -> WorklistItem:
    due = row["received_at"] + timedelta(minutes=targets_min.get(row["priority"], 24 * 60.0))
    return WorklistItem(**row, due_at=due, overdue=row["status"] != "reported" and now > due,
                        waiting_min=round((now - row["received_at"]).total_seconds() / 60, 1))


PAGE_CACHE_S = 1.0  # a worklist page is rebuilt at least this often (waiting time, overdue state) ...
PAGE_STALE_S = 3.0  # ... and, with no change since, served this long while one request rebuilds it


def _page_json(services: Any, filters: worklist.Filters, sort: str, limit: int, offset: int
               ) -> tuple[bytes, list[str]]:
    total, rows = worklist.page(services.db, filters, sort, limit, offset)
    now, targets = utcnow(), services.settings.worklist.targets_min
    return (WorklistPage(total=total, limit=limit, offset=offset, items=[item(r, targets, now) for r in rows])
            .model_dump_json().encode(), [r["study_uid"] for r in rows])


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
    services, hub = app.state.services, app.state.live
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
    received_from: datetime | None = None,
    received_to: datetime | None = None,
    sort: Annotated[str, Query(pattern="^(priority|received|-received|updated)$")] = "priority",
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    offset: Annotated[int, Query(ge=0)] = 0,
) -> Response:
    """The worklist: most urgent first, oldest first within a priority (``sort=priority``)."""
    filters = worklist.Filters(status=tuple(status or ()), priority=tuple(p.value for p in priority or ()),
                               modality=modality, task=task, calling_ae=ae,
                               received_from=received_from, received_to=received_to)
    body, shown = await _page_body(request, filters, sort, limit, offset)
    await audit_api.listed_together(request, "worklist_listed", shown, query=request.url.query[:256])
    return Response(body, media_type="application/json")


def _key_image_url(study_uid: str, result_id: int, i: int, finding: dict[str, Any]) -> str | None:
    return f"/api/v1/studies/{study_uid}/results/{result_id}/key-images/{i}" if finding.get("key_image") else None


@router.get("/studies/{study_uid}", response_model=StudyDetail)
def get_study(request: Request, study_uid: StudyUid, user: People) -> StudyDetail:
    """A study: header, series, every AI result with its model and timings, feedback, priority history."""
    db = request.app.state.services.db
    row = worklist.entry(db, study_uid)
    if row is None:
        raise ProblemError(404, "Not Found", f"no study {study_uid} on the worklist")
    audit.log(db, "viewed", actor=user.username, role=user.role, study_uid=study_uid, client=client_of(request))
    results = []
    for r in worklist.study_results(db, study_uid):
        res = r["result"]
        findings = [{**{k: f.get(k) for k in ("code", "text", "probability")},
                     "measurements": f.get("measurements") or {},
                     "key_image_url": _key_image_url(study_uid, r["id"], i, f)}
                    for i, f in enumerate(res.get("findings", []))]
        results.append({**{k: r[k] for k in ("id", "pipeline_id", "pipeline_version", "series_uid", "task",
                                             "model_id", "model_version", "positive", "priority", "created_at")},
                        "scores": res.get("scores", {}), "labels": res.get("labels", {}), "findings": findings,
                        "timings_ms": res.get("timings_ms", {})})
    return StudyDetail(
        entry=item(row, _settings(request).worklist.targets_min, utcnow()),
        series=worklist.study_series(db, study_uid), results=results,
        feedback=worklist.feedback_rows(db, study_uid), priority_history=worklist.priority_history(db, study_uid))


@router.get("/studies/{study_uid}/results/{result_id}/key-images/{index}",
            response_class=FileResponse, responses={200: {"content": {"image/png": {}}}})
def get_key_image(request: Request, study_uid: StudyUid, result_id: int, index: int, user: People) -> FileResponse:
    """A key image (PNG) of a finding; only files under the data directory are ever served."""
    db = request.app.state.services.db
    hit = next((r for r in worklist.study_results(db, study_uid) if r["id"] == result_id), None)
    findings = hit["result"].get("findings", []) if hit else []
    if not 0 <= index < len(findings) or not findings[index].get("key_image"):
        raise ProblemError(404, "Not Found", "no such key image")
    root = (Path(_settings(request).data_dir) / "results").resolve()
    path = Path(findings[index]["key_image"]).resolve()
    if not path.is_relative_to(root) or not path.is_file():
        raise ProblemError(404, "Not Found", "the key image is not available")
    audit_api.read(request, "key_image_viewed", study_uid, result_id=result_id, index=index)
    return FileResponse(path, media_type="image/png", headers={"Cache-Control": "private, max-age=3600"})


def _act(request: Request, study_uid: str, user: User, action: Any) -> WorklistItem:
    db = request.app.state.services.db
    action(db, study_uid, user.username, user.role, client_of(request))  # refusals: `ActionRefused` -> problem
    row = worklist.entry(db, study_uid)
    assert row is not None
    return item(row, _settings(request).worklist.targets_min, utcnow())


@router.post("/studies/{study_uid}/claim", response_model=WorklistItem)
def claim(request: Request, study_uid: StudyUid, user: Radiologist) -> WorklistItem:
    """Claim the study for reading; 409 with ``claimed_by`` when another reader holds it."""
    return _act(request, study_uid, user, worklist.claim)


@router.post("/studies/{study_uid}/release", response_model=WorklistItem)
def release(request: Request, study_uid: StudyUid, user: RadiologistOrAdmin) -> WorklistItem:
    """Give the study back (its holder, or an admin)."""
    return _act(request, study_uid, user, worklist.release)


@router.post("/studies/{study_uid}/report", response_model=WorklistItem)
def report(request: Request, study_uid: StudyUid, user: Radiologist) -> WorklistItem:
    """Mark the study reported (the reader must hold the claim)."""
    return _act(request, study_uid, user, worklist.mark_reported)


@router.post("/studies/{study_uid}/feedback", status_code=201)
def give_feedback(request: Request, study_uid: StudyUid, body: FeedbackIn, user: Radiologist) -> dict[str, int]:
    """Agree, disagree or not sure about one AI finding, with a comment; kept for monitoring."""
    db = request.app.state.services.db
    fid = worklist.add_feedback(db, study_uid, body.result_id, body.finding_code, user.id, user.username,
                                user.role, body.verdict, body.comment, client_of(request))
    return {"id": fid}


@router.get("/audit", response_model=AuditPage)
def get_audit(
    request: Request,
    user: Admin,
    study_uid: Annotated[str | None, Query(pattern=UidPattern, max_length=64)] = None,
    actor: Annotated[str | None, Query(max_length=64)] = None,
    action: Annotated[str | None, Query(max_length=32)] = None,
    since: datetime | None = None,
    until: datetime | None = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    offset: Annotated[int, Query(ge=0)] = 0,
) -> AuditPage:
    """The audit trail, newest first (admins only)."""
    total, rows = audit.entries(request.app.state.services.db, study_uid, actor, action, since, until, limit, offset)
    return AuditPage(total=total, items=rows)
