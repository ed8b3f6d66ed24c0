"""DICOMweb reads (PS3.18): QIDO-RS searches and WADO-RS retrievals of what radtriage holds.

Who: the bearer token (or page session) of a ``radiologist``, ``admin`` or
``service`` account (a viewer, an administrator, a PACS or another machine);
401 without one, 403 for another role (the stroke team and commissioning
readers work from the pages, not the images). Every search and retrieval is
in the audit trail before the answer leaves: the study UID, the level, the
names of the matching keys (never their values), counts.

QIDO-RS (``/studies``, ``/series``, ``/instances``, and each scoped to a study
or series) answers ``application/dicom+json`` from the index, never from the
files: matching on the keys of `radtriage.db.dicomweb.ATTRIBUTES` (UID lists,
date and time ranges, ``*``/``?`` wildcards; person names ignore case and
``fuzzymatching=true`` also matches the start of any name component),
``limit``/``offset`` (at most `MAX_RESULTS`, with a ``Warning: 299`` header when
more match), ``includefield`` (attributes or ``all``; only what the index
holds). No match is ``200`` with ``[]`` (PS3.18 allows 200 or 204;
dicomweb-client and OHIF read both, ``[]`` needs no special case). A key the
index cannot match is ignored with a ``Warning: 299`` header.

WADO-RS retrieves a study, series or instance as ``multipart/related;
type="application/dicom"``, each part the stored file streamed in its stored
transfer syntax (named in the part's ``transfer-syntax`` parameter; nothing is
transcoded: an Accept that asks for another one gets 406). ``/metadata`` is
DICOM JSON without the pixel data, which is a ``BulkDataURI``. ``/frames/{list}``
answers ``application/octet-stream`` for native pixel data and, for a
compressed transfer syntax, each frame as stored (``image/jp2``, ``image/jpeg``,
... or ``application/octet-stream`` with its ``transfer-syntax``) when the Accept
allows it, else 406 (no decompression). Only files under the spool are served
(resolved paths checked). Problem details: malformed UID 422, unknown 404,
unacceptable Accept 406.
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any, BinaryIO

import pydicom
from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse, StreamingResponse
from pydicom.datadict import dictionary_VR, keyword_for_tag, tag_for_keyword
from pydicom.encaps import get_frame
from pydicom.uid import UID

from radtriage.api import audit as audit_api
from radtriage.api.auth import require_roles
from radtriage.api.deps import StudyUid, services_of
from radtriage.api.dicomweb import DICOM_JSON, PART_TYPE, _content_type
from radtriage.api.problems import ProblemError
from radtriage.db import dicomweb as dw
from radtriage.ingest.parse import valid_uid

router = APIRouter(prefix="/dicomweb", tags=["dicomweb"],
                   dependencies=[Depends(require_roles("radiologist", "admin", "service"))])
Uid = StudyUid  # the same UID rule for studies, series and instances
MAX_RESULTS = 1000
CHUNK = 1 << 20
WARNING_MORE = '299 radtriage: "There are additional results that can be requested"'
NATIVE = {"1.2.840.10008.1.2", "1.2.840.10008.1.2.1"}  # little endian, uncompressed: frames are the same bytes
EXPLICIT_LE = "1.2.840.10008.1.2.1"
FRAME_MEDIA = {"1.2.840.10008.1.2.5": "image/dicom-rle", "1.2.840.10008.1.2.4.50": "image/jpeg",
               "1.2.840.10008.1.2.4.51": "image/jpeg", "1.2.840.10008.1.2.4.57": "image/jpeg",
               "1.2.840.10008.1.2.4.70": "image/jpeg", "1.2.840.10008.1.2.4.80": "image/jls",
               "1.2.840.10008.1.2.4.81": "image/jls", "1.2.840.10008.1.2.4.90": "image/jp2",
               "1.2.840.10008.1.2.4.91": "image/jp2", "1.2.840.10008.1.2.4.92": "image/jpx",
               "1.2.840.10008.1.2.4.93": "image/jpx", "1.2.840.10008.1.2.4.201": "image/jphc",
               "1.2.840.10008.1.2.4.202": "image/jphc", "1.2.840.10008.1.2.4.203": "image/jphc"}
PIXEL_DATA = "7FE00010"
_UID_KEYS = {"StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID", "SOPClassUID"}
_DATE_KEYS = {"StudyDate", "PatientBirthDate"}
_DATE = re.compile(r"\d{8}")
_TIME = re.compile(r"\d{2,6}(\.\d{1,6})?")
DEFAULTS = {  # PS3.18 Table 6.7.1-2, as far as the index holds it
    "study": ("StudyDate", "StudyTime", "AccessionNumber", "ModalitiesInStudy", "PatientName", "PatientID",
              "PatientBirthDate", "PatientSex", "StudyInstanceUID", "StudyDescription",
              "NumberOfStudyRelatedSeries", "NumberOfStudyRelatedInstances"),
    "series": ("StudyInstanceUID", "Modality", "SeriesDescription", "SeriesNumber", "SeriesInstanceUID",
               "BodyPartExamined", "NumberOfSeriesRelatedInstances"),
    "instance": ("StudyInstanceUID", "SeriesInstanceUID", "SOPClassUID", "SOPInstanceUID", "InstanceNumber"),
}


# --- content negotiation --------------------------------------------------------------------------

def _ranges(request: Request) -> list[tuple[str, dict[str, str]]]:
    """The Accept header's media ranges (``q=0`` dropped); ``*/*`` when there is none."""
    out = []
    for item in (request.headers.get("accept") or "*/*").split(","):
        if item.strip():
            mtype, params = _content_type(item.strip())
            if params.get("q", "1").strip() not in ("0", "0.0", "0.00", "0.000"):
                out.append((mtype, params))
    return out


def _not_acceptable(detail: str) -> ProblemError:
    return ProblemError(406, "Not Acceptable", detail)


def _accept_json(request: Request) -> None:
    ok = {"*/*", "application/*", DICOM_JSON, "application/json"}
    if not any(m in ok for m, _ in _ranges(request)):
        raise _not_acceptable(f"this resource is {DICOM_JSON}")


def _multipart_type(mtype: str, params: dict[str, str]) -> str | None:
    """The part type a range asks for ("*/*" for anything), or None when it asks for no multipart."""
    if mtype == "*/*":
        return "*/*"
    if mtype in ("multipart/related", "multipart/*"):
        return params.get("type", "*/*").strip('"').lower()
    return None


def _accept_instances(request: Request, syntaxes: set[str]) -> None:
    """406 unless the Accept allows Part 10 files in the stored transfer syntaxes."""
    for mtype, params in _ranges(request):
        part = _multipart_type(mtype, params)
        ts = params.get("transfer-syntax", "*").strip('"')
        if part in ("*/*", "application/*", PART_TYPE) and (ts == "*" or syntaxes == {ts}):
            return
    raise _not_acceptable(f'instances are sent as multipart/related; type="{PART_TYPE}" in their stored '
                          f"transfer syntax ({', '.join(sorted(syntaxes))}); none is transcoded")


def _frame_type(request: Request, ts: str) -> str:
    """The Content-Type of each frame part for an instance stored in ``ts``, or 406."""
    native = ts in NATIVE
    media = "application/octet-stream" if native else FRAME_MEDIA.get(ts, "application/octet-stream")
    label = EXPLICIT_LE if native else ts
    for mtype, params in _ranges(request):
        part = _multipart_type(mtype, params)
        asked = params.get("transfer-syntax", "").strip('"')
        if part == "*/*" or (part == media and asked in ("", "*", label)) or (
                part is not None and part.endswith("/*") and media.startswith(part[:-1])):
            return f"{media}; transfer-syntax={label}"
        if part == "application/octet-stream" and (asked == "*" or asked == label):
            return f"application/octet-stream; transfer-syntax={label}"
    if native:
        raise _not_acceptable('frames of this instance are uncompressed: multipart/related; '
                              'type="application/octet-stream"')
    raise _not_acceptable(f"frames of this instance are stored compressed ({ts}) and are sent as stored: "
                          f'multipart/related; type="{media}" or type="application/octet-stream"; '
                          f"transfer-syntax={ts} (or *); they are not decompressed")


# --- QIDO-RS ----------------------------------------------------------------------------------------

def _keyword(key: str) -> str | None:
    if re.fullmatch(r"[0-9A-Fa-f]{8}", key):
        return keyword_for_tag(int(key, 16)) or None
    return key if tag_for_keyword(key) is not None else None


def _invalid(key: str, why: str) -> ProblemError:
    return ProblemError(422, "Unprocessable Content", f"query key {key}: {why}")


def _range(key: str, value: str, pattern: re.Pattern[str]) -> dw.Criterion:
    low, sep, high = value.partition("-")
    for v in (low, high):
        if v and not pattern.fullmatch(v):
            raise _invalid(key, "expected a date YYYYMMDD or time HHMMSS, or a range of them with '-'")
    if sep and not (low or high):
        raise _invalid(key, "a range needs at least one end")
    return dw.Criterion(low=low or None, high=high or None, is_range=True) if sep else dw.Criterion(values=(low,))


def _criterion(key: str, value: str, fuzzy: bool) -> dw.Criterion:
    if key in _UID_KEYS:
        uids = tuple(u for u in re.split(r"[,\\]", value) if u)
        if not uids or not all(valid_uid(u) for u in uids):
            raise _invalid(key, "expected a UID or a list of UIDs")
        return dw.Criterion(values=uids)
    if key in _DATE_KEYS or key == "StudyTime":
        return _range(key, value, _DATE if key in _DATE_KEYS else _TIME)
    if key in ("SeriesNumber", "InstanceNumber"):
        if not re.fullmatch(r"[+-]?\d{1,9}", value):
            raise _invalid(key, "expected an integer")
        return dw.Criterion(values=(value,))
    fold = key == "PatientName"
    if "*" in value or "?" in value:
        return dw.Criterion(pattern=value, fold=True)
    values = tuple(v for v in re.split(r"[,\\]", value) if v) if key in ("Modality", "ModalitiesInStudy") \
        else (value,)
    return dw.Criterion(values=values, fold=fold, fuzzy=fuzzy and fold)


def _query(request: Request, level: str) -> tuple[dict[str, dw.Criterion], list[str], int, int, list[str]]:
    """(filters, keys to answer with, limit, offset, keys ignored) of a QIDO-RS request."""
    params = request.query_params
    fuzzy = params.get("fuzzymatching", "false").lower() == "true"
    filters: dict[str, dw.Criterion] = {}
    include = list(DEFAULTS[level])
    ignored: list[str] = []
    for key, value in params.multi_items():
        if key in ("limit", "offset", "fuzzymatching"):
            continue
        if key == "includefield":
            for field in (f.strip() for f in value.split(",") if f.strip()):
                if field == "all":
                    include += [*(k for k in dw.ATTRIBUTES if dw.answers(level, k)), *dw.COMPUTED[level]]
                elif (kw := _keyword(field)) and dw.answers(level, kw):
                    include.append(kw)
            continue
        kw = _keyword(key)
        if kw is None or not dw.searchable(level, kw):
            ignored.append(re.sub(r"[^A-Za-z0-9_.-]", "?", key)[:64])  # goes back in a header
            continue
        include.append(kw)
        if value:  # empty: universal matching, the key is only returned
            filters[kw] = _criterion(kw, value, fuzzy)
    limit, offset = _int(params.get("limit"), "limit", MAX_RESULTS), _int(params.get("offset"), "offset", 0)
    return filters, list(dict.fromkeys(include)), min(limit, MAX_RESULTS), offset, ignored


def _int(value: str | None, name: str, default: int) -> int:
    if value is None or value == "":
        return default
    if not value.isdigit() or (name == "limit" and int(value) == 0):
        raise _invalid(name, "expected a positive integer" if name == "limit" else "expected an integer >= 0")
    return int(value)


def _element(keyword: str, value: Any) -> dict[str, Any]:
    vr = dictionary_VR(keyword)
    if value is None or value == [] or value == "":
        return {"vr": vr}
    values = value if isinstance(value, list) else [value]
    if vr == "PN":
        return {"vr": vr, "Value": [{"Alphabetic": str(v)} for v in values]}
    if vr in ("IS", "US", "UL", "SL", "SS"):
        return {"vr": vr, "Value": [int(v) for v in values]}
    return {"vr": vr, "Value": [str(v) for v in values]}


def _base_url(request: Request) -> str:
    return str(request.base_url).rstrip("/") + "/dicomweb"


def _retrieve_url(base: str, level: str, row: dict[str, Any]) -> str:
    url = f"{base}/studies/{row['StudyInstanceUID']}"
    if level in ("series", "instance"):
        url += f"/series/{row['SeriesInstanceUID']}"
    if level == "instance":
        url += f"/instances/{row['SOPInstanceUID']}"
    return url


def _result(level: str, row: dict[str, Any], keys: list[str], base: str) -> dict[str, Any]:
    out = {f"{tag_for_keyword(k):08X}": _element(k, row.get(k)) for k in keys}
    out["00080056"] = {"vr": "CS", "Value": ["ONLINE"]}  # Instance Availability
    out["00081190"] = {"vr": "UR", "Value": [_retrieve_url(base, level, row)]}
    return dict(sorted(out.items()))


def _search(request: Request, level: str, scope: dw.Scope) -> JSONResponse:
    _accept_json(request)
    filters, keys, limit, offset, ignored = _query(request, level)
    db = services_of(request).db
    if scope.study_uid is not None and not dw.known(db, scope):
        raise ProblemError(404, "Not Found", "no such study or series here")
    rows = dw.search(db, level, scope, filters, limit + 1, offset)
    more, rows = len(rows) > limit, rows[:limit]
    detail = {"level": level, "keys": sorted(filters), "results": len(rows)}
    if scope.study_uid is not None:
        audit_api.read(request, "dicomweb_searched", scope.study_uid, **detail)
    else:
        audit_api.listed(request, "dicomweb_searched", (r["StudyInstanceUID"] for r in rows), **detail)
    base = _base_url(request)
    warnings = [WARNING_MORE] if more else []
    warnings += [f'299 radtriage: "The following search key is not supported: {k}"' for k in ignored]
    headers = {"Warning": ", ".join(warnings)} if warnings else None
    return JSONResponse([_result(level, r, keys, base) for r in rows], media_type=DICOM_JSON, headers=headers)


@router.get("/studies", summary="Search for studies (QIDO-RS)")
def search_studies(request: Request) -> JSONResponse:
    return _search(request, "study", dw.Scope())


@router.get("/series", summary="Search for series (QIDO-RS)")
def search_all_series(request: Request) -> JSONResponse:
    return _search(request, "series", dw.Scope())


@router.get("/instances", summary="Search for instances (QIDO-RS)")
def search_all_instances(request: Request) -> JSONResponse:
    return _search(request, "instance", dw.Scope())


@router.get("/studies/{study_uid}/series", summary="Search for series of a study (QIDO-RS)")
def search_series(request: Request, study_uid: Uid) -> JSONResponse:
    return _search(request, "series", dw.Scope(study_uid))


@router.get("/studies/{study_uid}/instances", summary="Search for instances of a study (QIDO-RS)")
def search_study_instances(request: Request, study_uid: Uid) -> JSONResponse:
    return _search(request, "instance", dw.Scope(study_uid))


@router.get("/studies/{study_uid}/series/{series_uid}/instances", summary="Search for instances (QIDO-RS)")
def search_instances(request: Request, study_uid: Uid, series_uid: Uid) -> JSONResponse:
    return _search(request, "instance", dw.Scope(study_uid, series_uid))


# --- WADO-RS -------------------------------------------------------------------------------------

def _files(request: Request, scope: dw.Scope) -> list[tuple[dw.InstanceFile, Path]]:
    """The stored files under ``scope`` with their resolved paths, all inside the spool; 404 otherwise."""
    services = services_of(request)
    found = dw.instance_files(services.db, scope)
    if not found:
        raise ProblemError(404, "Not Found", "no such study, series or instance here")
    root = services.spool.root
    out = []
    for f in found:
        path = Path(f.path).resolve()
        if not path.is_relative_to(root) or not path.is_file():
            raise ProblemError(404, "Not Found", f"instance {f.sop_instance_uid} is not available")
        out.append((f, path))
    return out


def _audit(request: Request, action: str, scope: dw.Scope, files: list[tuple[dw.InstanceFile, Path]],
           **detail: Any) -> None:
    audit_api.read(request, action, scope.study_uid, series=scope.series_uid, sop=scope.sop_instance_uid,
                   instances=len(files), **detail)


def _multipart(parts: Iterable[tuple[str, Iterable[bytes]]], boundary: str) -> Iterator[bytes]:
    for ctype, chunks in parts:
        yield f"--{boundary}\r\nContent-Type: {ctype}\r\n\r\n".encode()
        yield from chunks
        yield b"\r\n"
    yield f"--{boundary}--\r\n".encode()


def _streamed(parts: Iterable[tuple[str, Iterable[bytes]]], part_type: str) -> StreamingResponse:
    boundary = uuid.uuid4().hex
    return StreamingResponse(_multipart(parts, boundary),
                             media_type=f'multipart/related; type="{part_type}"; boundary={boundary}')


def _chunks(path: Path) -> Iterator[bytes]:
    with path.open("rb") as fh:
        while chunk := fh.read(CHUNK):
            yield chunk


def _retrieve(request: Request, scope: dw.Scope) -> StreamingResponse:
    files = _files(request, scope)
    _accept_instances(request, {f.transfer_syntax_uid for f, _ in files})
    _audit(request, "dicomweb_retrieved", scope, files)
    parts = ((f"{PART_TYPE}; transfer-syntax={f.transfer_syntax_uid}", _chunks(p)) for f, p in files)
    return _streamed(parts, PART_TYPE)


def _instance_json(f: dw.InstanceFile, path: Path, base: str) -> dict[str, Any]:
    """An instance's DICOM JSON without its pixel data, which becomes a BulkDataURI."""
    ds = pydicom.dcmread(path, stop_before_pixels=True)
    out = ds.to_json_dict(bulk_data_threshold=1 << 30, suppress_invalid_tags=True)
    out["00083002"] = {"vr": "UI", "Value": [f.transfer_syntax_uid]}  # Available Transfer Syntax UID
    if "Rows" in ds and "Columns" in ds:
        vr = "OW" if f.transfer_syntax_uid in NATIVE and int(ds.get("BitsAllocated", 16)) > 8 else "OB"
        out[PIXEL_DATA] = {"vr": vr, "BulkDataURI": f"{base}/studies/{f.study_uid}/series/{f.series_uid}"
                                                     f"/instances/{f.sop_instance_uid}/bulk/{PIXEL_DATA}"}
    return dict(sorted(out.items()))


def _metadata(request: Request, scope: dw.Scope) -> StreamingResponse:
    _accept_json(request)
    files = _files(request, scope)
    _audit(request, "dicomweb_metadata", scope, files)
    base = _base_url(request)

    def body() -> Iterator[bytes]:  # one instance's header in memory at a time
        for i, (f, path) in enumerate(files):
            yield (b"[" if i == 0 else b",") + json.dumps(_instance_json(f, path, base)).encode()
        yield b"]"

    return StreamingResponse(body(), media_type=DICOM_JSON)


def _levels(suffix: str, handler: Callable[[Request, dw.Scope], StreamingResponse], what: str) -> None:
    """Register ``handler`` for a study, a series and an instance (the resource path + ``suffix``)."""
    study, series, instance = ("/studies/{study_uid}", "/series/{series_uid}", "/instances/{sop_uid}")

    @router.get(study + suffix, summary=f"{what} a study (WADO-RS)", name=f"{handler.__name__}_study")
    def of_study(request: Request, study_uid: Uid) -> StreamingResponse:
        return handler(request, dw.Scope(study_uid))

    @router.get(study + series + suffix, summary=f"{what} a series (WADO-RS)", name=f"{handler.__name__}_series")
    def of_series(request: Request, study_uid: Uid, series_uid: Uid) -> StreamingResponse:
        return handler(request, dw.Scope(study_uid, series_uid))

    @router.get(study + series + instance + suffix, summary=f"{what} an instance (WADO-RS)",
                name=f"{handler.__name__}_instance")
    def of_instance(request: Request, study_uid: Uid, series_uid: Uid, sop_uid: Uid) -> StreamingResponse:
        return handler(request, dw.Scope(study_uid, series_uid, sop_uid))


_levels("", _retrieve, "Retrieve")
_levels("/metadata", _metadata, "Retrieve the metadata of")


# --- frames ----------------------------------------------------------------------------------------

class _PixelFile:
    """Where an instance's pixel data lies in its file, read from the header only; frames read one at a time."""

    def __init__(self, path: Path, ts: str) -> None:
        if ts not in NATIVE and not UID(ts).is_compressed:
            raise _not_acceptable(f"frames are not served from instances stored in {ts}")
        self.path, self.native = path, ts in NATIVE
        with path.open("rb") as fh:
            ds = pydicom.dcmread(fh, stop_before_pixels=True)
            header = fh.read(12)
            self.start = fh.tell()
        if header[:4] != b"\xe0\x7f\x10\x00":
            raise ProblemError(404, "Not Found", "the instance has no pixel data")
        if ts == "1.2.840.10008.1.2" or header[4:6] not in (b"OB", b"OW", b"UN"):  # implicit VR, or short form
            self.start -= 4
        self.count = int(ds.get("NumberOfFrames") or 1)
        eot, lengths = ds.get("ExtendedOffsetTable"), ds.get("ExtendedOffsetTableLengths")
        self.offsets = (eot, lengths) if eot and lengths else None
        bits = int(ds.Rows) * int(ds.Columns) * int(ds.get("SamplesPerPixel", 1)) * int(ds.BitsAllocated)
        if self.native and bits % 8:
            raise _not_acceptable("frames of bit-packed pixel data that do not end on a byte are not served")
        self.frame_bytes = bits // 8

    def frame(self, fh: BinaryIO, number: int) -> bytes:
        if self.native:
            fh.seek(self.start + (number - 1) * self.frame_bytes)
            return fh.read(self.frame_bytes)
        fh.seek(self.start)
        return get_frame(fh, number - 1, number_of_frames=self.count, extended_offsets=self.offsets)

    def frames(self, numbers: list[int]) -> Iterator[bytes]:
        with self.path.open("rb") as fh:
            for n in numbers:
                yield self.frame(fh, n)


def _frame_numbers(text: str) -> list[int]:
    if not re.fullmatch(r"\d{1,9}(,\d{1,9}){0,999}", text) or any(int(n) < 1 for n in text.split(",")):
        raise ProblemError(422, "Unprocessable Content", "frame list: expected frame numbers from 1, by commas")
    return [int(n) for n in text.split(",")]


def _frames(request: Request, scope: dw.Scope, numbers: list[int] | None) -> StreamingResponse:
    files = _files(request, scope)
    f, path = files[0]
    ctype = _frame_type(request, f.transfer_syntax_uid)
    pixels = _PixelFile(path, f.transfer_syntax_uid)
    numbers = numbers or list(range(1, pixels.count + 1))
    if max(numbers) > pixels.count:
        raise ProblemError(404, "Not Found", f"the instance has {pixels.count} frame(s)")
    _audit(request, "dicomweb_frames", scope, files, frames=numbers[:100])
    return _streamed(((ctype, [data]) for data in pixels.frames(numbers)), ctype.split(";")[0])


@router.get("/studies/{study_uid}/series/{series_uid}/instances/{sop_uid}/frames/{frame_list}",
            summary="Retrieve frames of an instance (WADO-RS)")
def retrieve_frames(request: Request, study_uid: Uid, series_uid: Uid, sop_uid: Uid, frame_list: str
                    ) -> StreamingResponse:
    numbers = _frame_numbers(frame_list)
    return _frames(request, dw.Scope(study_uid, series_uid, sop_uid), numbers)


@router.get("/studies/{study_uid}/series/{series_uid}/instances/{sop_uid}/bulk/{tag}",
            summary="Retrieve the pixel data of an instance (its metadata's BulkDataURI)")
def retrieve_bulk(request: Request, study_uid: Uid, series_uid: Uid, sop_uid: Uid, tag: str) -> StreamingResponse:
    if tag.upper() != PIXEL_DATA:
        raise ProblemError(404, "Not Found", "only the pixel data (7FE00010) is served as bulk data")
    return _frames(request, dw.Scope(study_uid, series_uid, sop_uid), None)
