"""The clinician's share page (``/studies/{uid}/share``): issue a share of the study, print its QR code with the
passcode for the discharge summary, see the study's shares and revoke one. Data through `/api/v1` (shares)."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, Response

from radtriage.api.deps import StudyUid
from radtriage.api.pages import role_page
from radtriage.sharing.model import MAX_HOURS, MAX_OPENS, SHARERS

router = APIRouter(include_in_schema=False)


@router.get("/studies/{study_uid}/share", response_class=HTMLResponse)
def share_issue_page(request: Request, study_uid: StudyUid) -> Response:
    return role_page(request, "share_issue.html", SHARERS, study_uid=study_uid, max_hours=MAX_HOURS,
                     max_opens=MAX_OPENS)
