"""STOW-RS (PS3.18 section 10.5): ``POST /dicomweb/studies[/{study}]``.

Only a caller with the role to store may post: the bearer token (or the page
session, with its CSRF token) of a ``service`` or ``admin`` account, whatever
address the API listens on; 401 without one, 403 for another role.

The body is ``multipart/related; type="application/dicom"``; each part is a
Part 10 instance and goes through the same `store_instance()` as C-STORE.
The body is parsed as a stream and each part is written to the spool's staging
folder as it arrives (one network chunk in memory at a time); a part over
``max_upload_bytes`` is dropped as soon as it passes the limit. A body that
ends before its closing delimiter lists the part it cut as failed. The answer
is a DICOM JSON data set with the stored instances (Referenced SOP Sequence)
and the refused ones with their reasons (Failed SOP Sequence): 200 if all were
stored, 202 if some were, 413 if none were and a part was over the size limit,
409 if none were for other reasons.
"""

from __future__ import annotations

from dataclasses import dataclass
from email.message import Message

from fastapi import APIRouter, Depends, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse
from pydicom.dataset import Dataset
from python_multipart.exceptions import MultipartParseError
from python_multipart.multipart import MultipartParser

from radtriage.api import audit as audit_api
from radtriage.api.auth import require_roles
from radtriage.api.problems import ProblemError
from radtriage.api.deps import services_of
from radtriage.ingest.parse import InstanceRejected, RejectReason, valid_uid
from radtriage.ingest.spool import Spool, Staged, StagingFile
from radtriage.ingest.store import Origin, StoreResult, _as_rejection

router = APIRouter(prefix="/dicomweb", tags=["dicomweb"], dependencies=[Depends(require_roles("service", "admin"))])
DICOM_JSON = "application/dicom+json"
PART_TYPE = "application/dicom"


def _content_type(header: str) -> tuple[str, dict[str, str]]:
    msg = Message()
    msg["content-type"] = header
    params = {k.lower(): v for k, v in msg.get_params()[1:]}
    return msg.get_content_type(), params


@dataclass(frozen=True)
class _Part:
    """One part of the body once its end is known: a staged file to store, or why it failed."""

    staged: Staged | None = None
    refused: InstanceRejected | None = None


class _PartWriter:
    """Callbacks for python-multipart's streaming parser: each part's bytes go
    straight to a staging file in the spool; a part over ``limit`` is dropped
    (its file removed) the moment it passes the limit, and reading goes on."""

    def __init__(self, spool: Spool, limit: int) -> None:
        self.spool = spool
        self.limit = limit
        self.ended = False  # the closing delimiter was read
        self._done: list[_Part] = []  # ended parts not yet taken by the caller
        self._open = False  # a part has begun and not ended
        self._file: StagingFile | None = None
        self._refused: InstanceRejected | None = None
        self._hname = bytearray()
        self._hval = bytearray()
        self._ctype = ""

    def callbacks(self) -> dict:
        return {
            "on_part_begin": self._begin,
            "on_header_field": lambda d, s, e: self._hname.extend(d[s:e]),
            "on_header_value": lambda d, s, e: self._hval.extend(d[s:e]),
            "on_header_end": self._header_end,
            "on_headers_finished": self._headers_finished,
            "on_part_data": self._data,
            "on_part_end": self._end,
            "on_end": self._end_of_body,
        }

    def take(self) -> list[_Part]:
        """The parts ended since the last call; the caller now owns their staged files."""
        done, self._done = self._done, []
        return done

    def cut(self, detail: str) -> bool:
        """The body stopped inside a part (no closing delimiter, or unreadable from here on):
        that part is failed. Returns whether a part was open."""
        if not self._open:
            return False
        self._refuse(RejectReason.UNPARSEABLE, detail)
        self._end()
        return True

    def close(self) -> None:
        """Remove whatever is still staged and was not handed over (client gone, error)."""
        if self._file is not None:
            self._file.abort()
            self._file = None
        for part in self.take():
            if part.staged is not None:
                self.spool.discard(part.staged)

    def _refuse(self, reason: RejectReason, detail: str) -> None:
        if self._refused is None:
            self._refused = InstanceRejected(reason, detail)
        if self._file is not None:
            self._file.abort()
            self._file = None

    def _begin(self) -> None:
        self._open, self._refused, self._ctype = True, None, ""

    def _header_end(self) -> None:
        if self._hname.decode("latin-1").strip().lower() == "content-type":
            self._ctype = self._hval.decode("latin-1").strip()
        self._hname = bytearray()
        self._hval = bytearray()

    def _headers_finished(self) -> None:
        if self._ctype and _content_type(self._ctype)[0] != PART_TYPE:
            self._refuse(RejectReason.UNPARSEABLE, "part is not application/dicom")
            return
        try:
            self._file = self.spool.open_staging()
        except OSError as exc:
            self._refuse(_as_rejection(exc).reason, "cannot stage the part")

    def _data(self, data: bytes, start: int, end: int) -> None:
        if self._file is None:  # refused already: the rest of the part is read and dropped
            return
        if self._file.size + (end - start) > self.limit:
            self._refuse(RejectReason.TOO_LARGE, f"part over the limit of {self.limit} bytes")
            return
        try:
            self._file.write(memoryview(data)[start:end])
        except OSError as exc:
            self._refuse(_as_rejection(exc).reason, "cannot stage the part")

    def _end(self) -> None:
        part = _Part(refused=self._refused)
        if self._refused is None and self._file is not None:
            try:
                part = _Part(staged=self._file.finish())
            except OSError as exc:
                part = _Part(refused=_as_rejection(exc))
        elif self._refused is None:  # a part with no headers_finished: nothing to store
            part = _Part(refused=InstanceRejected(RejectReason.UNPARSEABLE, "empty part"))
        self._file = None
        self._open = False
        self._done.append(part)

    def _end_of_body(self) -> None:
        self.ended = True


def _response(
    stored: list[StoreResult], failed: list[tuple[str, str, int]], base: str, too_large: bool
) -> JSONResponse:
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
    status = 200 if not failed else (202 if stored else (413 if too_large else 409))
    return JSONResponse(ds.to_json_dict(), status_code=status, media_type=DICOM_JSON)


async def _stow(request: Request, study_uid: str | None) -> JSONResponse:
    services = services_of(request)
    ctype, params = _content_type(request.headers.get("content-type", ""))
    if ctype != "multipart/related":
        raise ProblemError(415, "Unsupported Media Type", 'expected multipart/related; type="application/dicom"')
    part_type = params.get("type", PART_TYPE).lower()
    if part_type != PART_TYPE:
        raise ProblemError(415, "Unsupported Media Type", f"part type {part_type!r} is not supported")
    boundary = params.get("boundary")
    if not boundary or len(boundary) > 200:
        raise ProblemError(400, "Bad Request", "multipart boundary missing or too long")
    if study_uid is not None and not valid_uid(study_uid):
        raise ProblemError(400, "Bad Request", "study UID in the path is not a valid UID")

    store = services.store
    writer = _PartWriter(store.spool, services.settings.max_upload_bytes)
    parser = MultipartParser(boundary, writer.callbacks())
    stored: list[StoreResult] = []
    failed: list[tuple[str, str, int]] = []
    too_large = False
    origin = Origin(source="stow", calling_ae=None)

    def refuse(rej: InstanceRejected) -> None:
        nonlocal too_large
        store.note_rejection(origin, rej, None)
        too_large = too_large or rej.reason is RejectReason.TOO_LARGE
        failed.append(("", "", rej.reason.dimse_status))

    async def drain() -> None:
        parts = writer.take()
        while parts:
            part = parts.pop(0)
            if part.staged is None:
                assert part.refused is not None
                refuse(part.refused)
                continue
            try:
                result = await run_in_threadpool(
                    store.store_instance, [], origin, None, None, study_uid, streamed=part.staged
                )
            except InstanceRejected as rej:  # counted and logged by the store
                failed.append(("", "", rej.reason.dimse_status))
                continue
            except BaseException:
                for rest in parts:  # ours until stored: never leave them staged
                    if rest.staged is not None:
                        store.spool.discard(rest.staged)
                raise
            stored.append(result)

    malformed = False
    try:
        async for chunk in request.stream():
            if malformed:
                continue  # read to its end and dropped, so the client gets its answer
            try:
                await run_in_threadpool(parser.write, chunk)
            except MultipartParseError:
                malformed = True
                if not writer.cut("multipart body unreadable from here on") and (stored or failed):
                    refuse(InstanceRejected(RejectReason.UNPARSEABLE, "multipart body unreadable from here on"))
            await drain()
        if not writer.ended and not malformed:
            writer.cut("body ended before its closing delimiter")
        await drain()
    finally:
        writer.close()
        if stored or failed:  # recorded even when the request ends in an error
            await audit_api.stow(request, stored, failed)
    if not stored and not failed:
        detail = "malformed multipart body" if malformed else "the body holds no parts"
        raise ProblemError(400, "Bad Request", detail)
    base = str(request.base_url).rstrip("/") + "/dicomweb"
    return _response(stored, failed, base, too_large)


@router.post("/studies", summary="Store instances (STOW-RS)")
async def stow(request: Request) -> JSONResponse:
    return await _stow(request, None)


@router.post("/studies/{study_uid}", summary="Store instances of one study (STOW-RS)")
async def stow_study(study_uid: str, request: Request) -> JSONResponse:
    return await _stow(request, study_uid)
