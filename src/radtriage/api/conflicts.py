"""`/api/v1/conflicts` and `/admin/conflicts`: instances refused because they contradict what is stored.

Administrators only. Each conflict shows the instance's patient beside the stored one and offers what a
PACS offers for a patient mismatch: accept it as a correction of the patient's demographics (the study is
updated, then every instance held for that patient and study is stored) or keep it refused. A UID
collision (a SOP Instance or Series Instance UID already stored elsewhere) can only be kept refused.
Listing conflicts shows patient data, so every listing is audited; so is every action.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse, Response
from pydantic import BaseModel

from radtriage.api.auth import client_of
from radtriage.api.pages import role_page
from radtriage.api.deps import Admin, services_of
from radtriage.db import audit, conflicts
from radtriage.ingest.parse import InstanceRejected
from radtriage.ingest.store import Origin

router = APIRouter(tags=["conflicts"])


class Patient(BaseModel):
    patient_id: str | None = None
    patient_id_issuer: str | None = None
    patient_name: str | None = None
    patient_birth_date: str | None = None
    patient_sex: str | None = None
    accession_number: str | None = None
    study_date: str | None = None
    study_description: str | None = None


class Conflict(BaseModel):
    id: int
    kind: Literal["patient_mismatch", "sop_elsewhere", "series_elsewhere"]
    state: Literal["open", "accepted", "refused"]
    study_uid: str
    series_uid: str
    sop_instance_uid: str
    sop_class_uid: str
    existing_study_uid: str | None
    existing_series_uid: str | None
    mismatch: list[str]
    incoming: Patient
    stored: Patient | None
    held: bool
    source: str
    calling_ae: str | None
    attempts: int
    created_at: datetime
    last_seen_at: datetime
    resolved_at: datetime | None
    resolved_by: str | None
    actions: list[str]


class ConflictPage(BaseModel):
    items: list[Conflict]


class Resolution(Conflict):
    stored_instances: int = 0  # accept: how many held instances were stored
    still_refused: list[int] = []  # accept: conflicts whose instance was refused again


@router.get("/api/v1/conflicts", response_model=ConflictPage)
def list_conflicts(request: Request, user: Admin,
                   state: Annotated[Literal["open", "accepted", "refused", "all"], Query()] = "open") -> Any:
    """Refused instances that contradict what is stored, newest first (admins only; audited)."""
    db = services_of(request).db
    items = conflicts.listing(db, None if state == "all" else state)
    audit.log(db, "conflicts_viewed", actor=user.username, role=user.role, client=client_of(request),
              detail={"state": state, "conflict_ids": [i["id"] for i in items]})
    return {"items": items}


@router.post("/api/v1/conflicts/{conflict_id}/refuse", response_model=Resolution)
def keep_refused(request: Request, conflict_id: int, user: Admin) -> Any:
    """Keep the instance refused: the conflict is closed and its held copy removed."""
    db = services_of(request).db
    conflicts.close(db, conflict_id, conflicts.REFUSED, user.username, user.role, client_of(request))
    return conflicts.get(db, conflict_id)


@router.post("/api/v1/conflicts/{conflict_id}/accept", response_model=Resolution)
def accept_as_correction(request: Request, conflict_id: int, user: Admin) -> Any:
    """Accept a patient mismatch as a correction: update the study's patient, then store what was held.

    Every open conflict of the same study and incoming patient is stored with it (a series arrives as
    many instances); an instance refused again (another conflict) stays listed.
    """
    services = services_of(request)
    client = client_of(request)
    held = conflicts.correct_patient(services.db, conflict_id, user.username, user.role, client)  # 404, 409
    stored, refused = 0, []
    for h in held:
        try:
            data = Path(h["path"]).read_bytes()
            services.store.store_instance([data], Origin(h["source"], h["calling_ae"]))
        except (OSError, TypeError, InstanceRejected):
            refused.append(h["id"])
            continue
        conflicts.close(services.db, h["id"], conflicts.ACCEPTED, user.username, user.role, client,
                        detail={"corrected_by_conflict": conflict_id})
        stored += 1
    return {**conflicts.get(services.db, conflict_id), "stored_instances": stored, "still_refused": refused}


@router.get("/admin/conflicts", response_class=HTMLResponse, include_in_schema=False)
def conflicts_page(request: Request) -> Response:
    return role_page(request, "conflicts.html", ("admin",))
