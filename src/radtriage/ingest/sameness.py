"""Whether two encodings of an instance hold the same data set.

A PACS resends what it holds in the transfer syntax it prefers, with its own file meta: the bytes
differ, the instance does not. Two instances are the same when every data element other than the pixel
data has the same value bytes (explicit and implicit VR little endian, deflated and encapsulated syntaxes
all encode them alike; sequences are compared item by item, so their length encoding does not matter)
and the pixel data decode to the same array. Group lengths, trailing padding and Planar Configuration
(how colour samples are laid out in the encoding, not what they are) are left out; the file meta is not
part of the data set.

Runs only when a SOP Instance UID arrives again with other bytes, never on the first arrival.
"""

from __future__ import annotations

import hashlib
import io
import logging
from pathlib import Path

import numpy as np
import pydicom
from pydicom.datadict import dictionary_VR
from pydicom.dataelem import RawDataElement
from pydicom.dataset import Dataset
from pydicom.tag import Tag

log = logging.getLogger("radtriage.ingest")

PIXEL_TAGS = frozenset(Tag(t) for t in (0x7FE00010, 0x7FE00008, 0x7FE00009))
ENCODING_TAGS = frozenset(Tag(t) for t in (0xFFFCFFFC, 0x00280006))  # trailing padding, planar configuration


def _is_sequence(ds: Dataset, tag: Tag, elem: object) -> bool:
    vr = getattr(elem, "VR", None)
    if vr is None and isinstance(elem, RawDataElement):  # implicit VR: the dictionary knows
        try:
            vr = dictionary_VR(tag)
        except KeyError:
            return False
    return vr == "SQ"


def _feed(h: "hashlib._Hash", ds: Dataset) -> None:
    for tag in sorted(ds.keys()):
        if tag.element == 0 or tag in PIXEL_TAGS or tag in ENCODING_TAGS:
            continue
        h.update(int(tag).to_bytes(4, "little"))
        elem = ds.get_item(tag)
        if _is_sequence(ds, tag, elem):
            items = ds[tag].value or []
            h.update(b"SQ" + len(items).to_bytes(4, "little"))
            for item in items:
                h.update(b"IT")
                _feed(h, item)
            h.update(b"EQ")
            continue
        value = elem.value if isinstance(elem, RawDataElement) else ds[tag].value
        if value is None or value == "" or value == b"":
            value = b""  # empty: pydicom converts some empty values as it reads, some not
        elif not isinstance(value, (bytes, bytearray)):
            value = repr(value).encode()  # already converted: compare its value
        h.update(len(value).to_bytes(8, "little") + bytes(value))


def fingerprint(source: Path | bytes) -> str:
    """A digest of the decoded data set of a Part 10 file (path or bytes), independent of its encoding."""
    ds = pydicom.dcmread(source if isinstance(source, Path) else io.BytesIO(source))
    h = hashlib.sha256()
    _feed(h, ds)
    if any(tag in ds for tag in PIXEL_TAGS):
        pixels = np.ascontiguousarray(ds.pixel_array)
        pixels = pixels.astype(pixels.dtype.newbyteorder("<"), copy=False)
        h.update(b"PX" + repr((pixels.shape, pixels.dtype.str)).encode() + pixels.tobytes())
    return h.hexdigest()


def same_dataset(a: Path | bytes, b: Path | bytes) -> bool:
    """Whether two instances hold the same data set once decoded (False where either cannot be decoded)."""
    try:
        return fingerprint(a) == fingerprint(b)
    except Exception as exc:  # noqa: BLE001 - undecodable: treated as different, so nothing is lost
        log.info("instances not compared (%s): kept as a change", type(exc).__name__)
        return False
