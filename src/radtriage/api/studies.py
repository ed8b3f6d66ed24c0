"""`/api/v1/studies/{uid}`: a study's detail, its key images, claim / release / report, AI feedback.

Every route checks its role; every action on a study is in the audit trail.
Unknown UIDs give 404 and malformed ones 422, as problem details; a refused
action (another reader's claim...) is a problem detail from `ActionRefused`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import FileResponse

from radtriage.api import audit as audit_api
from radtriage.api.auth import User, client_of
from radtriage.api.deps import (SHADOW_READERS, AppSettings, Db, People, Radiologist, RadiologistOrAdmin, StudyUid,
                                services_of)
from radtriage.api.problems import ProblemError
from radtriage.api.schemas import EdgeResultOut, FeedbackIn, FindingOut, ResultOut, StudyDetail, WorklistItem
from radtriage.api.worklist import item
from radtriage.db import audit, edge_results, worklist
from radtriage.db.clock import utcnow
from radtriage.exports import plan
from radtriage.forward.payload import said

router = APIRouter(prefix="/api/v1", tags=["studies"])


def _key_image_url(study_uid: str, result_id: int, i: int, finding: dict[str, Any]) -> str | None:
    return f"/api/v1/studies/{study_uid}/results/{result_id}/key-images/{i}" if finding.get("key_image") else None


def _result_out(study_uid: str, row: dict[str, Any]) -> ResultOut:
    doc = row["result"]
    findings = [FindingOut(**f, key_image_url=_key_image_url(study_uid, row["id"], i, f))
                for i, f in enumerate(doc.get("findings", []))]
    return ResultOut(**{**doc, "findings": findings, **{k: row[k] for k in ("id", "pipeline_id", "pipeline_version", "series_uid", "task",
                                                      "model_id", "model_version", "positive", "priority",
                                                      "created_at")}})


def _edge_out(row: dict[str, Any]) -> EdgeResultOut:
    """An edge result as the study shows it: said with its origin, apart from this hub's own results."""
    res = row["result"]
    return EdgeResultOut(**{k: row[k] for k in EdgeResultOut.model_fields if k in row}, said=said(row),
                         scores=res.get("scores", {}), labels=res.get("labels", {}), findings=res.get("findings", []))


@router.get("/studies/{study_uid}", response_model=StudyDetail)
def get_study(request: Request, study_uid: StudyUid, user: People, db: Db, settings: AppSettings) -> StudyDetail:
    """A study: header, series, every AI result with its model and timings, feedback, priority history; at a
    hub, the AI results of the edge it came from, apart (shadow ones to admins only, as local shadow results)."""
    row = worklist.entry(db, study_uid)
    if row is None:
        raise ProblemError(404, "Not Found", f"no study {study_uid} on the worklist")
    audit.log(db, "viewed", actor=user.username, role=user.role, study_uid=study_uid, client=client_of(request))
    edge = edge_results.of_study(db, study_uid, shadow=user.role in SHADOW_READERS)
    return StudyDetail(
        entry=item(row, settings.worklist.targets_min, utcnow(), [e for e in edge if e["state"] == "live"]),
        series=worklist.study_series(db, study_uid),
        results=[_result_out(study_uid, r) for r in worklist.study_results(db, study_uid)],
        edge_results=[_edge_out(e) for e in edge],
        feedback=worklist.feedback_rows(db, study_uid), priority_history=worklist.priority_history(db, study_uid))


@router.get("/studies/{study_uid}/results/{result_id}/key-images/{index}",
            response_class=FileResponse, responses={200: {"content": {"image/png": {}}}})
def get_key_image(request: Request, study_uid: StudyUid, result_id: int, index: int, user: People, db: Db,
                  settings: AppSettings) -> FileResponse:
    """A key image (PNG) of a finding; only files under the data directory are ever served."""
    hit = next((r for r in worklist.study_results(db, study_uid) if r["id"] == result_id), None)
    findings = hit["result"].get("findings", []) if hit else []
    if not 0 <= index < len(findings) or not findings[index].get("key_image"):
        raise ProblemError(404, "Not Found", "no such key image")
    root = (Path(settings.data_dir) / "results").resolve()
    path = Path(findings[index]["key_image"]).resolve()
    if not path.is_relative_to(root) or not path.is_file():
        raise ProblemError(404, "Not Found", "the key image is not available")
    audit_api.read(request, "key_image_viewed", study_uid, result_id=result_id, index=index)
    return FileResponse(path, media_type="image/png", headers={"Cache-Control": "private, max-age=3600"})


def _act(request: Request, study_uid: str, user: User, action: Any) -> WorklistItem:
    services = services_of(request)
    action(services.db, study_uid, user.username, user.role, client_of(request))  # refusals -> problem details
    row = worklist.entry(services.db, study_uid)
    assert row is not None
    return item(row, services.settings.worklist.targets_min, utcnow())


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
def give_feedback(request: Request, study_uid: StudyUid, body: FeedbackIn, user: Radiologist, db: Db
                  ) -> dict[str, int]:
    """Agree, disagree or not sure about one AI finding, with a comment; kept for monitoring."""
    fid = worklist.add_feedback(db, study_uid, body.result_id, body.finding_code, user.id, user.username,
                                user.role, body.verdict, body.comment, client_of(request), then=_withdraw_if_wrong)
    return {"id": fid}


def _withdraw_if_wrong(conn: Any, result_id: int, verdict: str, now: Any) -> None:
    """A reader who disagrees with a finding marks the result wrong: what was exported of it is withdrawn."""
    if verdict == "disagree":
        plan.queue_withdrawal(conn, [result_id], "marked wrong by the reader", now)
