"""An SR document's content tree as plain `Item`s, read either from a pydicom `Dataset` or, fast, straight from
a Part 10 file's bytes.

pydicom builds a `Dataset` for every sequence item (an RDSR of four irradiation events holds about 150 of
them) and converts each element on first access: most of the time of reading a dose report. `read_file`
walks the encoded data set once instead (PS3.5 7.1-7.5: explicit or implicit VR little endian, defined and
undefined lengths), keeps only what a content item says (concept name, value type, relationship, text or
UID, numeric value and unit, coded value) and gives the top-level elements to pydicom as raw elements
(converted lazily, with the document's character set), so patient and device fields are read by pydicom as
everywhere else. A file it does not read this way (no preamble, big endian, deflated, a malformed length)
is read by pydicom whole (`from_dataset`): the two give the same `Item`s.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pydicom
from pydicom.charset import convert_encodings, decode_bytes
from pydicom.datadict import dictionary_VR
from pydicom.dataelem import RawDataElement
from pydicom.dataset import Dataset
from pydicom.tag import BaseTag

CONTENT, CONCEPT_NAME, CONCEPT_CODE, MEASURED = 0x0040A730, 0x0040A043, 0x0040A168, 0x0040A300
VALUE_TYPE, RELATIONSHIP, TEXT_VALUE, UID, NUMERIC, UNITS = (0x0040A040, 0x0040A010, 0x0040A160, 0x0040A124,
                                                             0x0040A30A, 0x004008EA)
CODE_VALUE, CODE_MEANING, CHARSET = 0x00080100, 0x00080104, 0x00080005
ITEM, ITEM_END, SEQ_END = 0xFFFEE000, 0xFFFEE00D, 0xFFFEE0DD
LONG_VRS = {b"OB", b"OD", b"OF", b"OL", b"OV", b"OW", b"SQ", b"SV", b"UC", b"UN", b"UR", b"UT", b"UV"}
LITTLE_ENDIAN = {"1.2.840.10008.1.2": True, "1.2.840.10008.1.2.1": False}  # transfer syntax -> implicit VR
UNDEFINED = 0xFFFFFFFF


@dataclass(slots=True)
class Item:
    """One content item (or the document's root): its concept name code, what it holds, its children."""

    code: str | None = None
    value_type: str | None = None
    relationship: str | None = None
    text: str | None = None  # TEXT value or UIDREF
    number: float | None = None  # NUM
    unit: str | None = None  # NUM: the unit's code value (UCUM)
    concept: tuple[str, str] | None = None  # CODE: (code value, code meaning)
    children: list[Item] = field(default_factory=list)


class NotFast(ValueError):
    """The file is not read by the fast path (pydicom reads it instead)."""


# --- from a pydicom Dataset -------------------------------------------------------------


def _first_code(seq: Any) -> tuple[str, str] | None:
    return (str(seq[0].get("CodeValue", "")), str(seq[0].get("CodeMeaning", ""))) if seq else None


def from_dataset(ds: Dataset) -> Item:
    """The content tree of ``ds`` (its root and every item below)."""
    name = _first_code(ds.get("ConceptNameCodeSequence"))
    value = ds.get("TextValue") or ds.get("UID")
    mv = ds.get("MeasuredValueSequence")
    number = unit = None
    if mv:
        number = float(mv[0].NumericValue)
        units = _first_code(mv[0].get("MeasurementUnitsCodeSequence"))
        unit = units[0] if units else ""
    return Item(code=name[0] if name else None, value_type=ds.get("ValueType"), relationship=ds.get("RelationshipType"),
                text=str(value) if value is not None else None, number=number, unit=unit,
                concept=_first_code(ds.get("ConceptCodeSequence")),
                children=[from_dataset(i) for i in ds.get("ContentSequence", [])])


# --- straight from the bytes -------------------------------------------------------------

Elements = dict[int, "bytes | list[Elements]"]


class _Reader:
    def __init__(self, buf: bytes, implicit: bool) -> None:
        self.buf, self.implicit = buf, implicit
        self.raw: list[tuple[int, str | None, int, bytes, int]] = []  # top level: tag, VR, length, value, offset

    def header(self, pos: int) -> tuple[int, str | None, int, int]:
        """(tag, VR, length, position of the value) of the element at ``pos``."""
        group, elem = struct.unpack_from("<HH", self.buf, pos)
        tag = group << 16 | elem
        if self.implicit or group == 0xFFFE:
            return tag, None, struct.unpack_from("<I", self.buf, pos + 4)[0], pos + 8
        vr = self.buf[pos + 4:pos + 6]
        if vr in LONG_VRS:
            return tag, vr.decode(), struct.unpack_from("<I", self.buf, pos + 8)[0], pos + 12
        if not (b"AA" <= vr <= b"ZZ"):
            raise NotFast("not a VR")
        return tag, vr.decode(), struct.unpack_from("<H", self.buf, pos + 6)[0], pos + 8

    def dataset(self, pos: int, end: int, top: bool = False) -> tuple[Elements, int]:
        """The elements from ``pos`` up to ``end`` (or an item delimiter); the position after them."""
        out: Elements = {}
        while pos < end:
            tag, vr, length, at = self.header(pos)
            if tag == ITEM_END:
                return out, at
            is_sq = vr == "SQ" or (vr is None and _is_sequence(tag, length))
            if is_sq:
                out[tag], pos = self.sequence(at, length)
                continue
            if length == UNDEFINED:
                raise NotFast("undefined length value")
            if at + length > len(self.buf):
                raise NotFast("value past the end")
            value = self.buf[at:at + length]
            if top:
                self.raw.append((tag, vr, length, value, at))
            out[tag] = value
            pos = at + length
        return out, pos

    def sequence(self, pos: int, length: int) -> tuple[list[Elements], int]:
        end = len(self.buf) if length == UNDEFINED else pos + length
        items: list[Elements] = []
        while pos < end:
            tag, _, item_len, at = self.header(pos)
            if tag == SEQ_END:
                return items, at
            if tag != ITEM:
                raise NotFast("not an item")
            item, after = self.dataset(at, len(self.buf) if item_len == UNDEFINED else at + item_len)
            items.append(item)
            pos = after
        if length == UNDEFINED:
            raise NotFast("sequence without its delimiter")
        return items, pos


def _is_sequence(tag: int, length: int) -> bool:
    if length == UNDEFINED:
        return True
    try:
        return dictionary_VR(tag) == "SQ"
    except KeyError:
        return False


def _text(value: object, encodings: list[str]) -> str:
    return decode_bytes(value, encodings, set()).rstrip(" \x00") if isinstance(value, bytes) else ""


def _code_in(elements: Elements, tag: int, encodings: list[str]) -> tuple[str, str] | None:
    seq = elements.get(tag)
    if not isinstance(seq, list) or not seq:
        return None
    return _text(seq[0].get(CODE_VALUE, b""), encodings).strip(), _text(seq[0].get(CODE_MEANING, b""), encodings)


def _item(elements: Elements, encodings: list[str]) -> Item:
    name = _code_in(elements, CONCEPT_NAME, encodings)
    text = elements.get(TEXT_VALUE, elements.get(UID))
    number = unit = None
    mv = elements.get(MEASURED)
    if isinstance(mv, list) and mv:
        number = float(_text(mv[0].get(NUMERIC, b""), encodings).split("\\")[0])
        units = _code_in(mv[0], UNITS, encodings)
        unit = units[0] if units else ""
    kids = elements.get(CONTENT)
    return Item(code=name[0] if name else None, value_type=_text(elements.get(VALUE_TYPE), encodings).strip() or None,
                relationship=_text(elements.get(RELATIONSHIP), encodings).strip() or None,
                text=_text(text, encodings).rstrip("\x00").strip() if text is not None else None, number=number,
                unit=unit, concept=_code_in(elements, CONCEPT_CODE, encodings),
                children=[_item(k, encodings) for k in kids] if isinstance(kids, list) else [])


def _data_start(buf: bytes) -> tuple[int, bool]:
    """Where the data set starts after the file meta information, and whether it is implicit VR."""
    if buf[128:132] != b"DICM":
        raise NotFast("no preamble")
    meta = _Reader(buf, implicit=False)
    pos, syntax = 132, None
    while pos + 8 <= len(buf) and struct.unpack_from("<H", buf, pos)[0] == 0x0002:
        tag, _, length, at = meta.header(pos)
        if tag == 0x00020010:
            syntax = buf[at:at + length].decode("ascii", "replace").rstrip(" \x00")
        pos = at + length
    if syntax not in LITTLE_ENDIAN:
        raise NotFast(f"transfer syntax {syntax}")
    return pos, LITTLE_ENDIAN[syntax]


def _fast(path: Path) -> tuple[Dataset, Item]:
    buf = path.read_bytes()
    start, implicit = _data_start(buf)
    reader = _Reader(buf, implicit)
    try:
        top, _ = reader.dataset(start, len(buf), top=True)
    except struct.error as exc:
        raise NotFast("truncated") from exc
    ds = Dataset({BaseTag(t): RawDataElement(BaseTag(t), vr, n, v, at, implicit, True)
                  for t, vr, n, v, at in reader.raw})
    charset = _text(top.get(CHARSET), ["iso8859"])
    encodings = convert_encodings([c.strip() for c in charset.split("\\")] if charset else None)
    return ds, _item(top, encodings)


def read_file(path: Path | str) -> tuple[Dataset, Item]:
    """(the top-level elements as a `Dataset`, the content tree) of an SR file; pydicom reads what the fast
    path does not."""
    try:
        return _fast(Path(path))
    except NotFast:
        ds = pydicom.dcmread(path)
        return ds, from_dataset(ds)
