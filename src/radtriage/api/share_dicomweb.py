"""WADO-RS of a share for the receiving hospital's system (``/s/{id}/dicomweb/studies/{uid}...``): the shared
copy, decrypted while it is sent, as ``multipart/related; type="application/dicom"``.

Only for a share issued to a named hospital: ``Authorization: Bearer <hospital token>.<key>`` (the token given
to the hospital at issue, the key from the link). A retrieve of the whole study counts one open; a series,
an instance or the study's metadata counts none but needs the share to be neither revoked, locked nor
expired. Every request is in the audit trail with the hospital's name. Refusals are problem details with the
status of the refusal page (404 unknown, 410 expired/revoked/used up, 423 locked, 401/403 no or wrong token).
"""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response, StreamingResponse
from pydicom import dcmread

from radtriage.api.auth import client_of
from radtriage.api.deps import StudyUid, services_of
from radtriage.api.dicomweb import DICOM_JSON, PART_TYPE
from radtriage.api.dicomweb_read import _accept_instances, _streamed
from radtriage.api.problems import ProblemError
from radtriage.api.share_pages import ShareId
from radtriage.db import audit
from radtriage.db.clock import utcnow
from radtriage.sharing import access
from radtriage.sharing.model import ShareRefused
from radtriage.sharing.store import shares_root

router = APIRouter(prefix="/s/{share_id}/dicomweb", tags=["shares"])
Uid = StudyUid


def _opened(request: Request, share_id: str, counting: bool, what: str) -> access.Opened:
    auth = request.headers.get("authorization", "")
    if not auth.lower().startswith("bearer "):
        raise ProblemError(401, "Unauthorized", "send Authorization: Bearer <hospital token>.<key>")
    services = services_of(request)
    try:
        return access.by_hospital(services.db, shares_root(services.settings.data_dir), share_id, auth[7:].strip(),
                                  client_of(request), utcnow(), counting, what)
    except ShareRefused as exc:
        raise ProblemError(exc.refusal.status, exc.refusal.name.replace("_", " ").lower(),
                           exc.refusal.words("en")) from None


def _chosen(opened: access.Opened, study_uid: str, series_uid: str | None, sop_uid: str | None
            ) -> list[dict[str, Any]]:
    manifest = opened.sealed.manifest()
    if manifest["study"]["uid"] != study_uid:
        raise ProblemError(404, "Not Found", "this share holds another study")
    out = [i for s in manifest["series"] if series_uid in (None, s["uid"]) for i in s["instances"]
           if sop_uid in (None, i["sop"])]
    if not out:
        raise ProblemError(404, "Not Found", "no such series or instance in this share")
    return out


def _retrieve(request: Request, share_id: str, study_uid: str, series_uid: str | None = None,
              sop_uid: str | None = None) -> StreamingResponse:
    what = "study" if series_uid is None else "series" if sop_uid is None else "instance"
    opened = _opened(request, share_id, counting=what == "study", what=what)
    chosen = _chosen(opened, study_uid, series_uid, sop_uid)
    _accept_instances(request, {i["ts"] for i in chosen})
    if what != "study":  # the study's retrieve was recorded with its open
        audit.log(services_of(request).db, **access.entry(opened.row, "share_retrieved", opened.actor,
                                                          client_of(request), via="dicomweb", what=what))
    parts = ((f"{PART_TYPE}; transfer-syntax={i['ts']}", iter([opened.sealed.read(i["file"])])) for i in chosen)
    return _streamed(parts, PART_TYPE)


@router.get("/studies/{study_uid}", summary="Retrieve the shared study (WADO-RS)")
def retrieve_study(request: Request, share_id: ShareId, study_uid: Uid) -> StreamingResponse:
    return _retrieve(request, share_id, study_uid)


@router.get("/studies/{study_uid}/series/{series_uid}", summary="Retrieve a shared series (WADO-RS)")
def retrieve_series(request: Request, share_id: ShareId, study_uid: Uid, series_uid: Uid) -> StreamingResponse:
    return _retrieve(request, share_id, study_uid, series_uid)


@router.get("/studies/{study_uid}/series/{series_uid}/instances/{sop_uid}",
            summary="Retrieve a shared instance (WADO-RS)")
def retrieve_instance(request: Request, share_id: ShareId, study_uid: Uid, series_uid: Uid, sop_uid: Uid
                      ) -> StreamingResponse:
    return _retrieve(request, share_id, study_uid, series_uid, sop_uid)


@router.get("/studies/{study_uid}/metadata", summary="The shared study's metadata (WADO-RS)")
def study_metadata(request: Request, share_id: ShareId, study_uid: Uid) -> Response:
    opened = _opened(request, share_id, counting=False, what="metadata")
    chosen = _chosen(opened, study_uid, None, None)
    audit.log(services_of(request).db, **access.entry(opened.row, "share_retrieved", opened.actor,
                                                      client_of(request), via="dicomweb", what="metadata"))

    def body() -> Iterator[bytes]:
        for n, i in enumerate(chosen):
            ds = dcmread(io.BytesIO(opened.sealed.read(i["file"])), stop_before_pixels=True)
            yield (b"[" if n == 0 else b",") + json.dumps(ds.to_json_dict(suppress_invalid_tags=True)).encode()
        yield b"]"

    return StreamingResponse(body(), media_type=DICOM_JSON)
