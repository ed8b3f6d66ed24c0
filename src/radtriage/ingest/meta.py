"""The Part 10 header (preamble, prefix, File Meta group) of a received instance.

pynetdicom's ``Event.encoded_dataset(include_meta=True)`` builds this through
pydicom's general writer, which costs ~0.9 ms an instance on the project's
machines (`scripts/bench_ingest.py`); the group has six fixed elements, so it
is packed directly here (PS3.10 section 7.1, explicit VR little endian). The
result is read back by pydicom in the tests.
"""

from __future__ import annotations

import struct

from radtriage import __version__
from radtriage.ingest.parse import InstanceRejected, RejectReason, valid_uid

# radtriage's Implementation Class UID (under the UUID-derived 2.25 root)
IMPLEMENTATION_CLASS_UID = "2.25.205719281723049384129577604396728405217"
IMPLEMENTATION_VERSION = f"RADTRIAGE_{__version__}"[:16]
_PREFIX = b"\x00" * 128 + b"DICM"


def _element(element: int, vr: bytes, value: bytes, pad: bytes) -> bytes:
    if len(value) % 2:
        value += pad
    if vr == b"OB":
        return struct.pack("<HH2sHI", 0x0002, element, vr, 0, len(value)) + value
    return struct.pack("<HH2sH", 0x0002, element, vr, len(value)) + value


def part10_header(sop_class_uid: str, sop_instance_uid: str, transfer_syntax_uid: str, source_ae: str) -> bytes:
    """Preamble, ``DICM`` and the File Meta group for a data set received by C-STORE."""
    for name, uid in (("SOP Class", sop_class_uid), ("SOP Instance", sop_instance_uid),
                      ("Transfer Syntax", transfer_syntax_uid)):
        if not valid_uid(uid):
            raise InstanceRejected(RejectReason.INVALID_UID, f"{name} UID of the request is not a UID")
    ae = source_ae.strip().encode("ascii", "replace")[:16]
    body = b"".join((
        _element(0x0001, b"OB", b"\x00\x01", b"\x00"),
        _element(0x0002, b"UI", sop_class_uid.encode(), b"\x00"),
        _element(0x0003, b"UI", sop_instance_uid.encode(), b"\x00"),
        _element(0x0010, b"UI", transfer_syntax_uid.encode(), b"\x00"),
        _element(0x0012, b"UI", IMPLEMENTATION_CLASS_UID.encode(), b"\x00"),
        _element(0x0013, b"SH", IMPLEMENTATION_VERSION.encode(), b" "),
        _element(0x0016, b"AE", ae, b" ") if ae else b"",
    ))
    group_length = struct.pack("<HH2sHI", 0x0002, 0x0000, b"UL", 4, len(body))
    return _PREFIX + group_length + body
