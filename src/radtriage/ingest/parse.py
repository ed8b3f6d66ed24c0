"""Read and check the header of a received DICOM Part 10 byte stream.

Pixel data is never decoded here: pydicom reads the elements as raw bytes,
and the checks are structural (every declared length is present, required
UIDs exist and are well formed). Nothing a peer sends is trusted.
"""

from __future__ import annotations

import enum
import io
import re
import struct
import zlib
from dataclasses import dataclass
from typing import Any

import pydicom
from pydicom.dataelem import RawDataElement
from pydicom.datadict import keyword_dict
from pydicom.dataset import Dataset
from pydicom.errors import InvalidDicomError
from pydicom.filereader import read_dataset

from radtriage.db.instances import InstanceIds

UNDEFINED_LENGTH = 0xFFFFFFFF
DEFLATED = "1.2.840.10008.1.2.1.99"
# Explicit VRs with a 4-byte length (PS3.5 7.1.2): the File Meta group is read by hand
# to find a deflated data set's start without pydicom's inflate-it-all reader.
_LONG_LENGTH_VRS = frozenset(
    (b"OB", b"OD", b"OF", b"OL", b"OV", b"OW", b"SQ", b"SV", b"UC", b"UN", b"UR", b"UT", b"UV")
)
_DEFLATE_FEED = 64 * 1024  # compressed bytes handed to zlib at a time
_INFLATE_PIECE = 1024 * 1024  # inflated bytes taken from zlib at a time
_UID_RE = re.compile(r"[0-9]+(\.[0-9]+)*")  # whole value (fullmatch): "$" would allow a final newline
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")

# Keywords kept with each series for routing and display (no pixels).
SERIES_HEADER_KEYWORDS = (
    "Modality",
    "SOPClassUID",
    "BodyPartExamined",
    "StudyDescription",
    "SeriesDescription",
    "ProtocolName",
    "ImageType",
    "SliceThickness",
    "ConvolutionKernel",
    "KVP",  # with the kernel, thickness, spacing and scanner: the input mix the model monitor follows
    "PixelSpacing",
    "ViewPosition",  # with the exposure index: what a recognition list asks of a radiograph
    "ExposureIndex",
    "ContrastBolusAgent",
    "PatientAge",
    "PatientSex",
    "StudyDate",
    "StudyTime",
    "SeriesDate",
    "SeriesTime",
    "Manufacturer",
    "ManufacturerModelName",
    "StationName",
    "InstitutionName",
    "SeriesNumber",
    "Rows",
    "Columns",
    "NumberOfFrames",
    "PhotometricInterpretation",
    "LossyImageCompression",
    "LossyImageCompressionRatio",
    "LossyImageCompressionMethod",
)
# Series keywords the index also keeps in a column of this width: one text value each.
SERIES_COLUMNS = {"Modality": 16, "BodyPartExamined": 16, "SeriesDescription": 64}


class RejectReason(str, enum.Enum):
    """Why an instance was refused; each has its own DIMSE status."""

    UNPARSEABLE = "unparseable"
    MISSING_UID = "missing_uid"
    INVALID_UID = "invalid_uid"
    SOP_MISMATCH = "sop_mismatch"
    NO_SPACE = "no_space"
    TOO_LARGE = "too_large"
    INTERNAL = "internal_error"
    PATIENT_MISMATCH = "patient_mismatch"  # its study is stored under another patient
    UID_CONFLICT = "uid_conflict"  # its SOP Instance or Series Instance UID is stored in another series or study

    @property
    def dimse_status(self) -> int:
        return _DIMSE_STATUS[self]


_DIMSE_STATUS = {
    RejectReason.UNPARSEABLE: 0xC000,  # Error: cannot understand
    RejectReason.MISSING_UID: 0xC001,  # Error: cannot understand (missing UID)
    RejectReason.INVALID_UID: 0xC002,  # Error: cannot understand (malformed UID)
    RejectReason.SOP_MISMATCH: 0xA900,  # Error: data set does not match SOP class
    RejectReason.NO_SPACE: 0xA700,  # Refused: out of resources
    RejectReason.TOO_LARGE: 0xA701,  # Refused: out of resources (size limit)
    RejectReason.INTERNAL: 0x0110,  # Failure: processing failure
    # Error: cannot understand (PS3.4 B.2.3, C000-CFFF): the identifiers contradict what is stored; held
    # for an administrator, not worth a retry by the sender
    RejectReason.PATIENT_MISMATCH: 0xC010,
    RejectReason.UID_CONFLICT: 0xC011,
}


class InstanceRejected(Exception):
    """An instance was refused; ``reason`` names why. Never carries PHI."""

    def __init__(self, reason: RejectReason, detail: str) -> None:
        super().__init__(f"{reason.value}: {detail}")
        self.reason = reason
        self.detail = detail


@dataclass(frozen=True)
class InstanceHeader(InstanceIds):
    """What the index needs to know about one instance: its identifiers and the data set they came from."""

    dataset: Dataset

    def study_fields(self) -> dict[str, str | None]:
        """Patient and study keywords for the index (read only for a new study)."""
        ds = self.dataset
        return {
            "accession_number": _text(ds, "AccessionNumber", 64),
            "patient_id": _text(ds, "PatientID", 64),
            "patient_id_issuer": _text(ds, "IssuerOfPatientID", 64),
            "patient_name": _text(ds, "PatientName", 324),
            "patient_birth_date": _text(ds, "PatientBirthDate", 8),
            "patient_sex": _text(ds, "PatientSex", 16),
            "study_date": _text(ds, "StudyDate", 8),
            "study_time": _text(ds, "StudyTime", 16),
            "study_description": _text(ds, "StudyDescription", 64),
        }

    def series_header(self) -> dict[str, Any]:
        """The routing header of the series (read only for a new series)."""
        header: dict[str, Any] = {}
        for kw in SERIES_HEADER_KEYWORDS:
            try:
                value = self.dataset.get(kw)
            except Exception:  # noqa: BLE001 - a malformed optional value is left out
                continue
            if value is None or value == "":
                continue
            if kw in SERIES_COLUMNS:  # one text value, as wide as its column in the index
                header[kw] = _joined(value)[: SERIES_COLUMNS[kw]] or None
            else:
                header[kw] = _jsonable(value)
        return header


def valid_uid(value: str) -> bool:
    return 0 < len(value) <= 64 and _UID_RE.fullmatch(value) is not None


def _text(ds: Dataset, keyword: str, limit: int = 64) -> str | None:
    try:
        value = ds.get(keyword)
    except Exception:  # noqa: BLE001 - a malformed optional value is dropped
        return None
    if value is None or value == "":
        return None
    return _joined(value)[:limit] or None


def _clean(text: str) -> str:
    """Text as the index keeps it: NUL and other control characters (which PostgreSQL refuses, or
    which would break a log line or an e-mail header) become spaces, and the ends are trimmed."""
    return _CONTROL.sub(" ", text).strip()


def _joined(value: Any) -> str:
    """A possibly multi-valued element as one text, its values joined with a backslash as in DICOM."""
    if _is_multi(value):
        return "\\".join(_clean(str(v)) for v in value)
    return _clean(str(value))


def _is_multi(value: Any) -> bool:
    return isinstance(value, (list, tuple)) or type(value).__name__ == "MultiValue"


def _jsonable(value: Any) -> Any:
    if _is_multi(value):
        return [_jsonable(v) for v in value]
    if isinstance(value, str):
        return _clean(value)
    if isinstance(value, (int, float)):
        return value
    if isinstance(value, bytes):
        return None
    return _clean(str(value))


def _raw_text(ds: Dataset, keyword: str) -> str | None:
    """An element's value as text, read from its raw bytes (no pydicom value
    conversion: that validates and builds objects, ~10x the cost)."""
    tag = keyword_dict[keyword]
    if tag not in ds:
        return None
    elem = ds.get_item(tag)
    value = elem.value
    if isinstance(value, (bytes, bytearray)):
        return value.decode("ascii", "replace").strip("\x00 ")
    return None if value is None else str(value).strip("\x00 ")


def _uid(ds: Dataset, keyword: str) -> str:
    value = _raw_text(ds, keyword)
    if not value:
        raise InstanceRejected(RejectReason.MISSING_UID, f"{keyword} missing")
    if not valid_uid(value):
        raise InstanceRejected(RejectReason.INVALID_UID, f"{keyword} is not a valid UID")
    return value


def _check_lengths(ds: Dataset, total: int) -> None:
    """Every top-level element's declared length must be present in the stream,
    and the elements must account for the stream to its last byte (pydicom
    stops quietly at a cut inside an element header)."""
    last_end: int | None = 0
    count = 0
    for elem in ds.elements():  # in tag order, which is stream order
        count += 1
        if not isinstance(elem, RawDataElement):
            last_end = None  # a sequence pydicom has already parsed: end not known
            continue
        value = elem.value
        if elem.length != UNDEFINED_LENGTH:
            if isinstance(value, (bytes, bytearray)) and len(value) != elem.length:
                raise InstanceRejected(
                    RejectReason.UNPARSEABLE,
                    f"element {elem.tag} declares {elem.length} bytes, {len(value)} present",
                )
            end: int | None = elem.value_tell + elem.length
        elif isinstance(value, (bytes, bytearray)):
            # undefined-length value (encapsulated pixel data): its delimiter must follow
            end = elem.value_tell + len(value) + 8
            if end > total:
                raise InstanceRejected(
                    RejectReason.UNPARSEABLE, f"element {elem.tag} ends before its delimiter"
                )
        else:
            end = None
        last_end = end
    if count == 0:
        raise InstanceRejected(RejectReason.UNPARSEABLE, "no data set elements could be read")
    if last_end is not None and last_end != total:
        raise InstanceRejected(
            RejectReason.UNPARSEABLE,
            f"elements end at byte {last_end} of {total}: stream cut or corrupt",
        )


def parse_part10(data: bytes, max_inflated: int | None = None) -> tuple[Dataset, InstanceHeader]:
    """Parse a Part 10 stream (preamble, meta, data set) and check its structure.

    A deflated data set is inflated piece by piece and refused (`RejectReason.TOO_LARGE`)
    as soon as it passes ``max_inflated`` bytes (the store's size limit)."""
    try:
        meta_end, ts = file_meta_extent(data)
        if ts == DEFLATED:
            ds, total = _read_deflated(data, meta_end, max_inflated)
        else:
            ds, total = pydicom.dcmread(io.BytesIO(data)), len(data)
            ts = str(ds.file_meta.TransferSyntaxUID)
        _check_lengths(ds, total)
    except InstanceRejected:
        raise
    except (InvalidDicomError, Exception) as exc:  # noqa: BLE001 - any parse failure
        raise InstanceRejected(RejectReason.UNPARSEABLE, type(exc).__name__) from exc
    return ds, header_of(ds, ts)


def file_meta_extent(data: bytes) -> tuple[int, str | None]:
    """Where the File Meta group after the preamble ends, and the Transfer Syntax UID it
    names (``None`` without one, or without ``DICM``; pydicom then says what is wrong)."""
    if data[128:132] != b"DICM":
        return 0, None
    pos, ts = 132, None
    while pos + 8 <= len(data):
        group, element = struct.unpack_from("<HH", data, pos)
        if group != 0x0002:
            break
        if data[pos + 4 : pos + 6] in _LONG_LENGTH_VRS:
            (length,) = struct.unpack_from("<I", data, pos + 8)
            start = pos + 12
        else:
            (length,) = struct.unpack_from("<H", data, pos + 6)
            start = pos + 8
        if element == 0x0010:
            ts = data[start : start + length].decode("ascii", "replace").strip("\x00 ")
        pos = start + length
    return pos, ts


def _read_deflated(data: bytes, meta_end: int, limit: int | None) -> tuple[Dataset, int]:
    """The data set of a Deflated Explicit VR Little Endian stream and its inflated size.

    pydicom inflates the whole stream in one call; a few MB of zeros become GBs.
    Here zlib gets the stream in pieces and gives back at most `_INFLATE_PIECE` at a
    time, and inflating stops as soon as the output passes ``limit``."""
    meta = pydicom.dcmread(io.BytesIO(data[:meta_end])).file_meta  # the meta alone
    inflater = zlib.decompressobj(-zlib.MAX_WBITS)
    out = io.BytesIO()
    view = memoryview(data)[meta_end:]
    for at in range(0, len(view), _DEFLATE_FEED):
        pending: bytes | memoryview = view[at : at + _DEFLATE_FEED]
        while True:
            piece = inflater.decompress(pending, _INFLATE_PIECE)
            out.write(piece)
            if limit is not None and out.tell() > limit:
                raise InstanceRejected(RejectReason.TOO_LARGE, f"deflated data set inflates past {limit} bytes")
            pending = inflater.unconsumed_tail
            if not pending and len(piece) < _INFLATE_PIECE:
                break
        if inflater.eof:
            break
    if not inflater.eof:
        raise InstanceRejected(RejectReason.UNPARSEABLE, "deflated data set cut short")
    total = out.tell()
    out.seek(0)
    ds = read_dataset(out, is_implicit_VR=False, is_little_endian=True)
    ds.file_meta = meta
    return ds, total


def header_of(ds: Dataset, transfer_syntax_uid: str) -> InstanceHeader:
    """Extract the identifiers and the routing header from a parsed data set."""
    uids = {k: _uid(ds, k) for k in ("SOPClassUID", "SOPInstanceUID", "StudyInstanceUID", "SeriesInstanceUID")}
    image_type = (_raw_text(ds, "ImageType") or "").upper().split("\\")
    try:
        instance_number = int(_raw_text(ds, "InstanceNumber") or "")
    except ValueError:
        instance_number = None
    return InstanceHeader(uids["StudyInstanceUID"], uids["SeriesInstanceUID"], uids["SOPInstanceUID"],
                          uids["SOPClassUID"], transfer_syntax_uid, instance_number, "LOCALIZER" in image_type, ds)
