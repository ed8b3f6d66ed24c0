"""``/api/v1/studies/{uid}/shares``: a clinician issues, lists and revokes authorised shares of one study (QR links
a patient carries to another hospital), and prints the link as a QR code. docs/sharing.md.

Who: ``clinician``, ``radiologist`` or ``admin``; a share is revoked by the one who issued it or an admin. The
answer to an issue is the only time the link (with its key), the passcode and the hospital's token are shown:
the server keeps none of them, so a lost link is revoked and issued again.
"""

from __future__ import annotations

from typing import Any, Literal

from fastapi import APIRouter, Request
from fastapi.responses import Response
from pydantic import BaseModel, ConfigDict, Field
from starlette.concurrency import run_in_threadpool

from radtriage.api import audit as audit_api
from radtriage.api.auth import client_of
from radtriage.api.deps import Db, Sharers, StudyUid, services_of
from radtriage.api.problems import ProblemError
from radtriage.db import shares as share_rows
from radtriage.db.clock import utcnow
from radtriage.sharing.access import entry, refusal_of
from radtriage.sharing.build import NothingToShare
from radtriage.sharing.crypto import lookup_of
from radtriage.sharing.issue import issue_share
from radtriage.sharing.model import Issued, ShareRequest
from radtriage.sharing.qr import FORMATS, qr_code
from radtriage.sharing.store import remove_sealed, shares_root

router = APIRouter(prefix="/api/v1", tags=["shares"])
NOT_RECALLED = "Revoking a share stops further opens; copies already downloaded cannot be recalled."


class ShareIssued(BaseModel):
    id: int
    link: str = Field(description="the link, with its key after '#': shown once, never stored")
    passcode: str = Field(description="tell the patient separately from the link: shown once")
    recipient_token: str | None = Field(description="the receiving hospital's token: shown once")
    dicomweb: str | None = Field(description="the hospital's WADO-RS base URL (Bearer <token>.<key>)")
    qr_png: str
    qr_svg: str
    share: dict[str, Any]
    notice: str = NOT_RECALLED


class QrRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    link: str = Field(max_length=512)


def _public(row: dict[str, Any]) -> dict[str, Any]:
    out = {k: row[k] for k in share_rows.PUBLIC}
    refusal = refusal_of(row, utcnow(), counting=True)
    out["state"] = "open" if refusal is None else refusal.name.lower().replace("_", " ")  # revoked, used up, ...
    return out


@router.post("/studies/{study_uid}/shares", status_code=201, response_model=ShareIssued)
async def issue(request: Request, study_uid: StudyUid, body: ShareRequest, user: Sharers, db: Db) -> ShareIssued:
    """Issue a share of the study (consent and legal basis recorded); the link, passcode and token, once."""
    services = services_of(request)
    base = str(request.base_url).rstrip("/")

    def run() -> tuple[Issued, dict[str, Any] | None]:
        issued = issue_share(db, services.spool.root, shares_root(services.settings.data_dir), study_uid, body,
                             user.username, user.role, client_of(request), base, services.settings.ae_title,
                             utcnow())
        return issued, share_rows.get(db, issued.share_id)

    try:
        issued, row = await run_in_threadpool(run)
    except NothingToShare as exc:
        raise ProblemError(404, "Not Found", str(exc)) from None
    assert row is not None
    qr = f"/api/v1/shares/{issued.share_id}/qr"
    return ShareIssued(id=issued.share_id, link=issued.link, passcode=issued.passcode,
                       recipient_token=issued.recipient_token,
                       dicomweb=(issued.link.split("#")[0] + "/dicomweb") if issued.recipient_token else None,
                       qr_png=qr + ".png", qr_svg=qr + ".svg", share=_public(row))


@router.get("/studies/{study_uid}/shares")
def list_shares(request: Request, study_uid: StudyUid, user: Sharers, db: Db) -> dict[str, Any]:
    """The study's shares, newest first, with their state (no link, key, passcode or token: none is kept)."""
    rows = share_rows.of_study(db, study_uid)
    audit_api.read(request, "shares_listed", study_uid, shares=[r["id"] for r in rows])
    return {"study_uid": study_uid, "shares": [_public(r) for r in rows], "notice": NOT_RECALLED}


def _revoke(request: Request, share_id: int, user: Any, db: Any) -> dict[str, Any]:
    row = share_rows.get(db, share_id)
    if row is None:
        raise ProblemError(404, "Not Found", f"no share {share_id}")
    if user.role != "admin" and row["issued_by"] != user.username:
        raise ProblemError(403, "Forbidden", "a share is revoked by the one who issued it, or an admin")
    now = utcnow()
    done = share_rows.revoke(db, share_id, user.username, now,
                             {**entry(row, "share_revoked", user.username, client_of(request)), "role": user.role})
    if not done:
        raise ProblemError(409, "Conflict", f"share {share_id} was already revoked")
    remove_sealed(shares_root(services_of(request).settings.data_dir), row["folder"])
    return {**_public(share_rows.get(db, share_id) or row), "notice": NOT_RECALLED}


@router.post("/shares/{share_id}/revoke")
def revoke(request: Request, share_id: int, user: Sharers, db: Db) -> dict[str, Any]:
    """Revoke a share: the next open (or page, frame, download, retrieve) is refused; its sealed copy is deleted."""
    return _revoke(request, share_id, user, db)


@router.delete("/shares/{share_id}")
def delete_share(request: Request, share_id: int, user: Sharers, db: Db) -> dict[str, Any]:
    """The same as ``POST /shares/{id}/revoke`` (the row stays, for the audit trail)."""
    return _revoke(request, share_id, user, db)


@router.post("/shares/{share_id}/qr.{kind}")
def qr(share_id: int, kind: Literal["png", "svg"], body: QrRequest, user: Sharers, db: Db) -> Response:
    """The share's link (sent back by the issuer: the server does not keep its key) as a QR code to print."""
    row = share_rows.get(db, share_id)
    path, _, key = body.link.partition("#")
    share_text = path.rstrip("/").rsplit("/s/", 1)[-1] if "/s/" in path else ""
    if row is None or not key or not share_text or row["lookup"] != lookup_of(share_text):
        raise ProblemError(422, "Unprocessable Content", f"this is not the link of share {share_id}")
    return Response(qr_code(body.link, kind), media_type=FORMATS[kind], headers={"Cache-Control": "no-store"})
