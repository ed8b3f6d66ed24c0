"""`/api/v1/exports`: the admin's view of results that did not leave (failed, or retrying after an error), and
the two actions on one: send it again now, or give up on it. Both are audited."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, Response

from radtriage.api.auth import client_of
from radtriage.api.deps import Admin, Db, People, StudyUid
from radtriage.api.problems import ProblemError
from radtriage.db import audit
from radtriage.db import exports as rows
from radtriage.db.clock import utcnow

router = APIRouter(tags=["exports"])  # the API under /api/v1, the admin page under /admin


STATE_WORDS = {"pending": "queued", "sending": "sending", "delivered": "sent", "failed": "refused",
               "cancelled": "cancelled"}


@router.get("/api/v1/studies/{study_uid}/exports")
def study_exports(study_uid: StudyUid, user: People, db: Db) -> list[dict[str, Any]]:
    """Where each AI result of the study went: destination, channel, what was sent (a first result, a correction,
    a withdrawal) and its state (queued, sending, sent, retrying, refused, cancelled), with the notes of a send."""
    with db.read() as conn:
        out = []
        for r in rows.study_exports(conn, study_uid):
            p = r["payload"]
            state = "retrying" if r["state"] == "pending" and r["last_error"] else STATE_WORDS.get(r["state"], r["state"])
            out.append({"id": r["id"], "result_id": r["result_id"], "destination": r["target"], "channel": r["channel"],
                        "status": p.get("status"), "revision": p.get("revision"), "state": state,
                        "attempts": r["attempts"], "error": r["last_error"], "notes": p.get("notes", []),
                        "delivered_at": r["delivered_at"]})
        return out


@router.get("/api/v1/exports/failed")
def failed(user: Admin, db: Db) -> list[dict[str, Any]]:
    """Exports given up on or retrying after an error, newest first (no patient data: UIDs and states)."""
    with db.read() as conn:
        return [{k: r[k] for k in ("id", "result_id", "study_uid", "pipeline_id", "target", "channel", "state",
                                   "attempts", "last_error", "created_at", "finished_at")}
                | {"status": r["payload"].get("status"), "revision": r["payload"].get("revision")}
                for r in rows.failed_exports(conn)]


def _act(request: Request, user: Any, db: Any, export_id: int, action: str) -> dict[str, Any]:
    now = utcnow()
    with db.write() as conn:
        done = (rows.retry_export if action == "retry" else rows.give_up_export)(conn, export_id, now)
        if not done:
            raise ProblemError(409, "Conflict", f"export {export_id} is not {'failed' if action == 'retry' else 'pending'}")
        audit.record(conn, f"export_{action.replace('-', '_')}", user.username, user.role, client=client_of(request),
                     detail={"export": export_id})
    exports = getattr(getattr(request.app.state, "runtime", None), "exports", None)
    if action == "retry" and exports is not None:
        exports.wake()
    return {"id": export_id, "action": action}


@router.post("/api/v1/exports/{export_id}/retry")
def retry(request: Request, export_id: int, user: Admin, db: Db) -> dict[str, Any]:
    """Send a failed export again now."""
    return _act(request, user, db, export_id, "retry")


@router.post("/api/v1/exports/{export_id}/give-up")
def give_up(request: Request, export_id: int, user: Admin, db: Db) -> dict[str, Any]:
    """Stop retrying an export."""
    return _act(request, user, db, export_id, "give-up")


@router.get("/admin/deliveries", response_class=HTMLResponse, include_in_schema=False)
def deliveries_page(request: Request) -> Response:
    """The admin's page of deliveries that did not leave, with send-again and give-up."""
    from radtriage.api.pages import role_page

    return role_page(request, "deliveries.html", ("admin",))
