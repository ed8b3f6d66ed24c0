"""STOW-RS (PS3.18 section 10.5): ``POST /dicomweb/studies[/{study}]``.

The body is ``multipart/related; type="application/dicom"``; each part is a
Part 10 instance and goes through the same `store_instance()` as C-STORE.
The body is parsed as a stream, one part in memory at a time, each capped at
``max_upload_bytes``. The answer is a DICOM JSON data set with the stored
instances (Referenced SOP Sequence) and the refused ones with their reasons
(Failed SOP Sequence): 200 if all were stored, 202 if some were, 409 if none.
"""

from __future__ import annotations

import hmac
from email.message import Message

from fastapi import APIRouter, Depends, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse
from pydicom.dataset import Dataset
from python_multipart.multipart import MultipartParser

from radtriage.api.auth import authenticate
from radtriage.api.problems import ProblemError
from radtriage.ingest.parse import InstanceRejected, RejectReason, valid_uid
from radtriage.ingest.store import Origin, StoreResult

def require_stow_client(request: Request) -> None:
    """STOW-RS clients: the token of a ``service`` account (`radtriage users token`) or the configured
    ``RADTRIAGE_STOW_TOKEN``; with neither, only while the API is reachable from this machine alone."""
    settings = request.app.state.services.settings
    user = authenticate(request)
    if user is not None and user.role == "service":
        return
    token = settings.stow_token
    if token is None:
        if not settings.http_is_local:
            raise ProblemError(
                403, "Forbidden", "STOW-RS needs RADTRIAGE_STOW_TOKEN when the API listens beyond this machine"
            )
        return
    scheme, _, given = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not hmac.compare_digest(given.encode(), token.get_secret_value().encode()):
        raise ProblemError(401, "Unauthorized", "a valid bearer token is required")


router = APIRouter(prefix="/dicomweb", tags=["dicomweb"], dependencies=[Depends(require_stow_client)])
DICOM_JSON = "application/dicom+json"


def _content_type(header: str) -> tuple[str, dict[str, str]]:
    msg = Message()
    msg["content-type"] = header
    params = {k.lower(): v for k, v in msg.get_params()[1:]}
    return msg.get_content_type(), params


class _PartCollector:
    """Callbacks for the streaming multipart parser: collects parts one by one."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.parts: list[tuple[str, bytes]] = []  # (content type, body), drained by caller
        self._buf = bytearray()
        self._hname = bytearray()
        self._hval = bytearray()
        self._ctype = ""
        self.too_large = False

    def callbacks(self) -> dict:
        return {
            "on_part_begin": self._begin,
            "on_part_data": self._data,
            "on_part_end": self._end,
            "on_header_field": lambda d, s, e: self._hname.extend(d[s:e]),
            "on_header_value": lambda d, s, e: self._hval.extend(d[s:e]),
            "on_header_end": self._header_end,
        }

    def _begin(self) -> None:
        self._buf = bytearray()
        self._ctype = ""
        self.too_large = False

    def _data(self, data: bytes, start: int, end: int) -> None:
        if self.too_large:
            return
        if len(self._buf) + (end - start) > self.limit:
            self.too_large = True
            self._buf = bytearray()
            return
        self._buf.extend(data[start:end])

    def _header_end(self) -> None:
        if self._hname.decode("latin-1").strip().lower() == "content-type":
            self._ctype = self._hval.decode("latin-1").strip()
        self._hname = bytearray()
        self._hval = bytearray()

    def _end(self) -> None:
        if self.too_large:
            self.parts.append(("too-large", b""))
        else:
            self.parts.append((self._ctype, bytes(self._buf)))
        self._buf = bytearray()


def _response(stored: list[StoreResult], failed: list[tuple[str, str, int]], base: str) -> JSONResponse:
    ds = Dataset()
    ds.RetrieveURL = ""
    refs = []
    for r in stored:
        item = Dataset()
        item.ReferencedSOPClassUID = r.sop_class_uid
        item.ReferencedSOPInstanceUID = r.sop_instance_uid
        item.RetrieveURL = f"{base}/studies/{r.study_uid}/series/{r.series_uid}/instances/{r.sop_instance_uid}"
        refs.append(item)
    fails = []
    for sop_class, sop_instance, reason in failed:
        item = Dataset()
        if sop_class:
            item.ReferencedSOPClassUID = sop_class
        if sop_instance:
            item.ReferencedSOPInstanceUID = sop_instance
        item.FailureReason = reason
        fails.append(item)
    if refs:
        ds.ReferencedSOPSequence = refs
    if fails:
        ds.FailedSOPSequence = fails
    if len({r.study_uid for r in stored}) == 1:
        ds.RetrieveURL = f"{base}/studies/{stored[0].study_uid}"
    else:
        del ds.RetrieveURL
    status = 200 if not failed else (202 if stored else 409)
    return JSONResponse(ds.to_json_dict(), status_code=status, media_type=DICOM_JSON)


async def _stow(request: Request, study_uid: str | None) -> JSONResponse:
    services = request.app.state.services
    ctype, params = _content_type(request.headers.get("content-type", ""))
    if ctype != "multipart/related":
        raise ProblemError(415, "Unsupported Media Type", 'expected multipart/related; type="application/dicom"')
    part_type = params.get("type", "application/dicom").lower()
    if part_type != "application/dicom":
        raise ProblemError(415, "Unsupported Media Type", f"part type {part_type!r} is not supported")
    boundary = params.get("boundary")
    if not boundary or len(boundary) > 200:
        raise ProblemError(400, "Bad Request", "multipart boundary missing or too long")
    if study_uid is not None and not valid_uid(study_uid):
        raise ProblemError(400, "Bad Request", "study UID in the path is not a valid UID")

    collector = _PartCollector(services.settings.max_upload_bytes)
    parser = MultipartParser(boundary, collector.callbacks())
    stored: list[StoreResult] = []
    failed: list[tuple[str, str, int]] = []
    origin = Origin(source="stow", calling_ae=None)

    async def drain() -> None:
        while collector.parts:
            part_ctype, body = collector.parts.pop(0)
            if part_ctype == "too-large":
                services.metrics.rejections.labels("stow", RejectReason.TOO_LARGE.value).inc()
                failed.append(("", "", RejectReason.TOO_LARGE.dimse_status))
                continue
            if part_ctype and _content_type(part_ctype)[0] != "application/dicom":
                failed.append(("", "", 0xC000))
                continue
            try:
                result = await run_in_threadpool(
                    services.store.store_instance, [body], origin, None, None, study_uid
                )
            except InstanceRejected as rej:
                failed.append(("", "", rej.reason.dimse_status))
                continue
            stored.append(result)

    try:
        async for chunk in request.stream():
            parser.write(chunk)
            await drain()
        parser.finalize()
        await drain()
    except ProblemError:
        raise
    except Exception as exc:  # noqa: BLE001 - malformed multipart body
        if not stored and not failed:
            raise ProblemError(400, "Bad Request", f"malformed multipart body ({type(exc).__name__})") from exc
    if not stored and not failed:
        raise ProblemError(400, "Bad Request", "the body holds no parts")
    base = str(request.base_url).rstrip("/") + "/dicomweb"
    return _response(stored, failed, base)


@router.post("/studies", summary="Store instances (STOW-RS)")
async def stow(request: Request) -> JSONResponse:
    return await _stow(request, None)


@router.post("/studies/{study_uid}", summary="Store instances of one study (STOW-RS)")
async def stow_study(study_uid: str, request: Request) -> JSONResponse:
    return await _stow(request, study_uid)
