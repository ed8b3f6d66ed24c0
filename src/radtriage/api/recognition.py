"""`/api/v1/studies/{uid}/recognition`: is a study received from another site recognised under the recognition
list (`radtriage.recognition`), so that a clinician can decide not to repeat it?"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from sqlalchemy import select

from radtriage.api import audit as audit_api
from radtriage.api.deps import Db, People, StudyUid, services_of
from radtriage.api.problems import ProblemError
from radtriage.db import dose as dose_rows
from radtriage.db.series import assembled_series
from radtriage.db.tables import studies
from radtriage.recognition import check_study

router = APIRouter(prefix="/api/v1", tags=["recognition"])


def _dose_said(db: Any, study_uid: str):
    def said() -> str | None:
        with db.read() as conn:
            verdict = dose_rows.drl_verdict(conn, study_uid)
        if verdict is None:
            return "dose not known (no dose report or dose header received)"
        above, details = verdict
        return ("above the reference level: " + "; ".join(details)) if above else None

    return said


@router.get("/studies/{study_uid}/recognition")
def recognition(request: Request, study_uid: StudyUid, user: People, db: Db) -> dict[str, Any]:
    """Each recognised examination the study's series are about, and whether it meets its criteria."""
    listing = services_of(request).recognition
    if listing is None:
        raise ProblemError(404, "Not Found", "no recognition list is configured (recognition_file)")
    with db.read() as conn:
        site = conn.execute(select(studies.c.site).where(studies.c.study_uid == study_uid)).first()
    if site is None:
        raise ProblemError(404, "Not Found", f"no study {study_uid}")
    series = [(s.series_uid, s.header, s.instance_count) for s in assembled_series(db, study_uid)]
    verdicts = check_study(listing, series, _dose_said(db, study_uid))
    audit_api.read(request, "recognition_checked", study_uid, items=[v.item for v in verdicts])
    return {"study_uid": study_uid, "site": site.site, "from_other_site": site.site is not None,
            "list": {"name": listing.name, "version": listing.version, "source": listing.source},
            "verdicts": [{"item": v.item, "title": v.title, "recognised": v.recognised, "series_uid": v.series_uid,
                          "met": v.met, "missed": v.missed, "words": v.words} for v in verdicts]}
