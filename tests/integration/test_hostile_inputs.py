"""Corrupt and hostile instances over a real DICOM association.

A raw SCU (pynetdicom, sending the data set bytes from a file as they are,
without decoding them) delivers truncated, garbage, incomplete and lying
instances to the listener running in this process. Each must be refused
with its own DIMSE status (or end in a clean abort), leave nothing in the
index or the spool, be counted under the right reason, be logged without
patient identifiers, and leave the listener ready for the next, valid
instance.
"""

from __future__ import annotations

import logging
import random
import socket
import struct
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from io import BytesIO
from pathlib import Path

import pydicom
import pytest
from pydicom.data import get_testdata_file
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.filebase import DicomBytesIO
from pydicom.filewriter import write_dataset, write_file_meta_info
from pydicom.uid import ExplicitVRLittleEndian, generate_uid
from pynetdicom import AE, _config as pynetdicom_config
from pynetdicom.dimse_messages import C_STORE_RQ
from pynetdicom.dimse_primitives import C_STORE
from pynetdicom.sop_class import CTImageStorage, MRImageStorage  # type: ignore[attr-defined]
from sqlalchemy import select

from radtriage.db import instances
from radtriage.db.tables import associations
from radtriage.ingest.spool import TMP_SUFFIX

PHI_NAME = "SECRET^PATIENT"
PHI_ID = "PID-SECRET-123"
PIXEL_DATA_HEADER = b"\xe0\x7f\x10\x00OW\x00\x00"  # (7FE0,0010) OW, explicit VR little endian
HUGE_LENGTH = 0x7FFFFFF0


# --- building the bytes a hostile peer sends ---------------------------------------------


def ct_dataset(**attrs) -> Dataset:
    """A valid CT instance with new UIDs and recognisable (fake) patient identifiers."""
    ds = pydicom.dcmread(get_testdata_file("CT_small.dcm"))
    ds.PatientName = PHI_NAME
    ds.PatientID = PHI_ID
    ds.StudyInstanceUID = generate_uid()
    ds.SeriesInstanceUID = generate_uid()
    ds.SOPInstanceUID = generate_uid()
    for k, v in attrs.items():
        setattr(ds, k, v)
    return ds


def encode_body(ds: Dataset) -> bytes:
    """The data set alone (no preamble, no meta), explicit VR little endian."""
    fp = DicomBytesIO()
    fp.is_little_endian = True
    fp.is_implicit_VR = False
    write_dataset(fp, ds)
    return fp.getvalue()


def pixel_data_offset(body: bytes) -> int:
    at = body.find(PIXEL_DATA_HEADER)
    assert at > 0, "test data has no OW Pixel Data"
    return at


def request_file(
    directory: Path, name: str, sop_class: str, sop_instance: str, body: bytes
) -> Path:
    """A Part 10 file whose meta names the C-STORE's SOP class and instance and
    whose data set is ``body``, byte for byte."""
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = sop_class
    meta.MediaStorageSOPInstanceUID = sop_instance
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    meta.ImplementationClassUID = "1.2.826.0.1.3680043.9.7433.1.1"
    fp = DicomBytesIO()
    fp.is_little_endian = True
    fp.is_implicit_VR = False
    fp.write(b"\x00" * 128 + b"DICM")
    write_file_meta_info(fp, meta, enforce_standard=True)
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{name}.dcm"
    path.write_bytes(fp.getvalue() + body)
    return path


@dataclass(frozen=True)
class Hostile:
    """One hostile C-STORE: the file to send, the UIDs it may not leave behind,
    the status and the rejection reason expected."""

    path: Path
    uids: tuple[str, ...]
    status: int
    reason: str


def _truncated(d: Path) -> Hostile:
    ds = ct_dataset()
    body = encode_body(ds)
    at = pixel_data_offset(body)
    (length,) = struct.unpack_from("<I", body, at + 8)
    cut = body[: at + 12 + length // 2]  # half the pixels are missing
    uid = ds.SOPInstanceUID
    return Hostile(request_file(d, "truncated", CTImageStorage, uid, cut), (uid,), 0xC000, "unparseable")


def _cut_in_element_header(d: Path) -> Hostile:
    """The stream ends five bytes into the Pixel Data element's header."""
    ds = ct_dataset()
    body = encode_body(ds)
    at = pixel_data_offset(body)
    uid = ds.SOPInstanceUID
    return Hostile(
        request_file(d, "cut_header", CTImageStorage, uid, body[: at + 5]), (uid,), 0xC000, "unparseable"
    )


def _undefined_length_without_delimiter(d: Path) -> Hostile:
    """Native Pixel Data declared with undefined length, and no delimiter ever comes."""
    ds = ct_dataset()
    body = bytearray(encode_body(ds))
    at = pixel_data_offset(bytes(body))
    struct.pack_into("<I", body, at + 8, 0xFFFFFFFF)
    uid = ds.SOPInstanceUID
    return Hostile(
        request_file(d, "undefined_length", CTImageStorage, uid, bytes(body)), (uid,), 0xC000, "unparseable"
    )


def _unterminated_sequence(d: Path) -> Hostile:
    """A trailing undefined-length sequence whose item and sequence never end."""
    ds = ct_dataset()
    sq = (
        struct.pack("<HH", 0xFFFA, 0xFFFA) + b"SQ\x00\x00" + struct.pack("<I", 0xFFFFFFFF)
        + struct.pack("<HHI", 0xFFFE, 0xE000, 0xFFFFFFFF)
        + struct.pack("<HH", 0x0008, 0x0100) + b"SH" + struct.pack("<H", 4) + b"ABCD"
    )
    uid = ds.SOPInstanceUID
    return Hostile(
        request_file(d, "unterminated_sq", CTImageStorage, uid, encode_body(ds) + sq), (uid,), 0xC000, "unparseable"
    )


def _garbage(d: Path) -> Hostile:
    uid = generate_uid()
    junk = random.Random(20240601).randbytes(64 * 1024)
    return Hostile(request_file(d, "garbage", CTImageStorage, uid, junk), (uid,), 0xC000, "unparseable")


def _garbage_after_header(d: Path) -> Hostile:
    """Valid leading elements (with the UIDs), then noise where the rest should be."""
    ds = ct_dataset()
    body = encode_body(ds)
    at = pixel_data_offset(body)
    junk = random.Random(7).randbytes(len(body) - at)
    uid = ds.SOPInstanceUID
    return Hostile(
        request_file(d, "garbage_after_header", CTImageStorage, uid, body[:at] + junk),
        (uid,),
        0xC000,
        "unparseable",
    )


def _huge_pixel_length(d: Path) -> Hostile:
    ds = ct_dataset()
    body = bytearray(encode_body(ds))
    at = pixel_data_offset(bytes(body))
    struct.pack_into("<I", body, at + 8, HUGE_LENGTH)  # declares ~2 GB, sends 32 KB
    uid = ds.SOPInstanceUID
    return Hostile(
        request_file(d, "huge_pixel_length", CTImageStorage, uid, bytes(body)), (uid,), 0xC000, "unparseable"
    )


def _huge_private_length(d: Path) -> Hostile:
    """A ~2 GB length declared early, in a private OB element before the pixels."""
    ds = ct_dataset()
    ds.add_new(0x00091010, "OB", b"\xab" * 16)
    body = bytearray(encode_body(ds))
    marker = b"\x09\x00\x10\x10OB\x00\x00" + struct.pack("<I", 16)
    at = body.find(marker)
    assert at > 0
    struct.pack_into("<I", body, at + 8, HUGE_LENGTH)
    uid = ds.SOPInstanceUID
    return Hostile(
        request_file(d, "huge_private_length", CTImageStorage, uid, bytes(body)), (uid,), 0xC000, "unparseable"
    )


def _missing_sop_instance_uid(d: Path) -> Hostile:
    ds = ct_dataset()
    uid = ds.SOPInstanceUID
    del ds.SOPInstanceUID
    return Hostile(
        request_file(d, "no_sop_instance_uid", CTImageStorage, uid, encode_body(ds)), (uid,), 0xC001, "missing_uid"
    )


def _malformed_sop_instance_uid(d: Path) -> Hostile:
    bad = "1.2.840.abc.7"
    ds = ct_dataset(SOPInstanceUID=bad)
    return Hostile(
        request_file(d, "malformed_uid", CTImageStorage, bad, encode_body(ds)), (bad,), 0xC002, "invalid_uid"
    )


def _path_traversal_uids(d: Path) -> Hostile:
    """Study and series UIDs that would climb out of the spool if used as names."""
    ds = ct_dataset(StudyInstanceUID="..", SeriesInstanceUID="..")
    uid = ds.SOPInstanceUID
    return Hostile(
        request_file(d, "traversal", CTImageStorage, uid, encode_body(ds)), (uid,), 0xC002, "invalid_uid"
    )


def _sop_class_mismatch(d: Path) -> Hostile:
    """A CT data set sent as an MR Image Storage C-STORE."""
    ds = ct_dataset()
    uid = ds.SOPInstanceUID
    return Hostile(
        request_file(d, "class_mismatch", MRImageStorage, uid, encode_body(ds)), (uid,), 0xA900, "sop_mismatch"
    )


def _sop_instance_mismatch(d: Path) -> Hostile:
    """The command names one SOP Instance UID, the data set another."""
    ds = ct_dataset()
    claimed = generate_uid()
    return Hostile(
        request_file(d, "instance_mismatch", CTImageStorage, claimed, encode_body(ds)),
        (claimed, ds.SOPInstanceUID),
        0xA900,
        "sop_mismatch",
    )


HOSTILE_CASES: dict[str, Callable[[Path], Hostile]] = {
    "truncated_pixel_data": _truncated,
    "cut_in_element_header": _cut_in_element_header,
    "undefined_length_without_delimiter": _undefined_length_without_delimiter,
    "unterminated_sequence": _unterminated_sequence,
    "garbage_data_set": _garbage,
    "garbage_after_header": _garbage_after_header,
    "huge_pixel_data_length": _huge_pixel_length,
    "huge_private_element_length": _huge_private_length,
    "missing_sop_instance_uid": _missing_sop_instance_uid,
    "malformed_sop_instance_uid": _malformed_sop_instance_uid,
    "path_traversal_uids": _path_traversal_uids,
    "sop_class_mismatch": _sop_class_mismatch,
    "sop_instance_mismatch": _sop_instance_mismatch,
}


# --- a raw SCU ---------------------------------------------------------------------------


@pytest.fixture
def raw_send(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make pynetdicom send a file's data set bytes as they are, without decoding them."""
    monkeypatch.setattr(pynetdicom_config, "STORE_SEND_CHUNKED_DATASET", True)


@contextmanager
def association(port: int, max_pdu: int = 16384) -> Iterator:
    ae = AE(ae_title="HOSTILESCU")
    ae.acse_timeout = 10
    ae.dimse_timeout = 20
    ae.network_timeout = 20
    ae.maximum_pdu_size = max_pdu
    for sop_class in (CTImageStorage, MRImageStorage):
        ae.add_requested_context(sop_class, ExplicitVRLittleEndian)
    assoc = ae.associate("127.0.0.1", port, ae_title="RADTRIAGE", max_pdu=max_pdu)
    assert assoc.is_established, "the listener refused the association"
    try:
        yield assoc
    finally:
        if assoc.is_established:
            assoc.release()
        ae.shutdown()


def status_of(rsp: Dataset) -> int | None:
    return int(rsp.Status) if "Status" in rsp else None


def valid_file(directory: Path, name: str = "valid") -> tuple[Path, str]:
    ds = ct_dataset()
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{name}.dcm"
    ds.save_as(path, enforce_file_format=True)
    return path, ds.SOPInstanceUID


# --- what must (not) be left behind ----------------------------------------------------


def rejections(services, reason: str) -> float:
    value = services.metrics.registry.get_sample_value(
        "radtriage_rejections_total", {"source": "dimse", "reason": reason}
    )
    return value or 0.0


def indexed_uids(services) -> set[str]:
    return {r["sop_instance_uid"] for r in instances.instance_rows(services.db)}


def assert_nothing_kept(services, uids: tuple[str, ...]) -> None:
    spool: Path = services.spool.root
    rows = instances.instance_rows(services.db)
    assert not {r["sop_instance_uid"] for r in rows} & set(uids), "a refused instance was indexed"
    files = [p for p in spool.rglob("*") if p.is_file()]
    assert not [p for p in files if p.name.endswith(TMP_SUFFIX)], "partial files left in the spool"
    assert not [p for p in files if any(u in p.name for u in uids)], "a refused instance was written"
    # every file in the spool is one the index knows about
    assert {p.resolve() for p in files} == {Path(r["path"]).resolve() for r in rows}


def assert_no_phi(caplog: pytest.LogCaptureFixture) -> None:
    text = caplog.text
    for secret in (PHI_NAME, PHI_ID, "SECRET", "PID-SECRET"):
        assert secret not in text, f"log output contains patient identifier {secret!r}"


@pytest.fixture
def logs(caplog: pytest.LogCaptureFixture) -> pytest.LogCaptureFixture:
    caplog.set_level(logging.INFO)
    caplog.set_level(logging.DEBUG, logger="radtriage")
    # this process is also the SCU: keep pynetdicom's own PDU dumps out of the capture
    caplog.set_level(logging.WARNING, logger="pynetdicom")
    return caplog


def rejection_records(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [
        r
        for r in caplog.records
        if r.name.startswith("radtriage") and "reject" in r.getMessage().lower()
        and r.levelno >= logging.WARNING
    ]


# --- tests ---------------------------------------------------------------------------------


@pytest.mark.parametrize("case", list(HOSTILE_CASES))
def test_hostile_instance_is_refused_and_leaves_nothing(
    case: str, runtime, services, tmp_path: Path, raw_send, logs
) -> None:
    bad = HOSTILE_CASES[case](tmp_path / "send")
    before = rejections(services, bad.reason)
    good_path, good_uid = valid_file(tmp_path / "send", "good")

    with association(runtime.scp.port) as assoc:
        rsp = assoc.send_c_store(bad.path)
        assert status_of(rsp) == bad.status, f"{case}: status {status_of(rsp)!r}, expected {bad.status:#06x}"
        assert assoc.is_established, "the listener dropped the association after a refusal"
        # the same association goes on: a valid instance right after is stored
        ok = assoc.send_c_store(good_path)
        assert status_of(ok) == 0x0000

    assert rejections(services, bad.reason) == before + 1
    assert_nothing_kept(services, bad.uids)
    assert good_uid in indexed_uids(services)

    records = rejection_records(logs)
    assert len(records) == 1 and bad.reason in records[0].getMessage()
    assert_no_phi(logs)


def test_every_hostile_instance_in_one_association(runtime, services, tmp_path: Path, raw_send, logs) -> None:
    """All of them back to back on one association; the listener keeps serving."""
    cases = [make(tmp_path / "send") for make in HOSTILE_CASES.values()]
    expected: dict[str, int] = {}
    for c in cases:
        expected[c.reason] = expected.get(c.reason, 0) + 1
    good_path, good_uid = valid_file(tmp_path / "send", "good")

    with association(runtime.scp.port) as assoc:
        got = [status_of(assoc.send_c_store(c.path)) for c in cases]
        assert got == [c.status for c in cases]
        assert status_of(assoc.send_c_store(good_path)) == 0x0000

    for reason, n in expected.items():
        assert rejections(services, reason) == n, reason
    assert_nothing_kept(services, tuple(u for c in cases for u in c.uids))
    assert indexed_uids(services) == {good_uid}
    assert len(rejection_records(logs)) == len(cases)
    assert_no_phi(logs)


def test_no_space_left_is_refused_with_a700(make_settings, tmp_path: Path, raw_send, logs) -> None:
    from radtriage.service import Runtime, build_services

    services = build_services(make_settings(min_free_bytes=10**18))
    runtime = Runtime(services)
    runtime.start()
    try:
        path, uid = valid_file(tmp_path / "send", "one")
        with association(runtime.scp.port) as assoc:
            assert status_of(assoc.send_c_store(path)) == 0xA700
            assert assoc.is_established
            assert rejections(services, "no_space") == 1
            assert_nothing_kept(services, (uid,))
            assert [p for p in services.spool.root.rglob("*") if p.is_file()] == []

            # space comes back: the next instance is stored
            services.spool.min_free_bytes = 0
            path2, uid2 = valid_file(tmp_path / "send", "two")
            assert status_of(assoc.send_c_store(path2)) == 0x0000
        assert indexed_uids(services) == {uid2}
        assert len(rejection_records(logs)) == 1
        assert "no_space" in rejection_records(logs)[0].getMessage()
        assert_no_phi(logs)
    finally:
        runtime.stop()
        services.close()


def test_malformed_patient_fields_never_reach_the_logs(
    runtime, services, tmp_path: Path, raw_send, logs, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Patient values that break their VR's rules are stored, not logged.

    Reading them for the index must not echo them into the log (pydicom warns
    about an invalid value with the value itself)."""
    path = tmp_path / "send" / "odd.dcm"
    path.parent.mkdir(parents=True)
    with monkeypatch.context() as m:
        # the sender writes the odd values without pydicom complaining here
        m.setattr(pydicom.config.settings, "writing_validation_mode", pydicom.config.IGNORE)
        ds = ct_dataset(
            PatientName="SECRET^PATIENT=X=Y=Z",  # too many component groups
            PatientBirthDate="SECRET1970",  # not a DA
        )
        ds.save_as(path, enforce_file_format=True)
    logs.clear()
    with association(runtime.scp.port) as assoc:
        assert status_of(assoc.send_c_store(path)) == 0x0000
    assert ds.SOPInstanceUID in indexed_uids(services)
    assert_no_phi(logs)


# --- a peer that goes away mid-transfer ---------------------------------------------------


def big_ct(side: int = 1024) -> Dataset:
    """A CT instance of about 2 MB, so that it spans many P-DATA PDUs."""
    ds = ct_dataset()
    ds.Rows = side
    ds.Columns = side
    ds.PixelData = bytes(range(256)) * (side * side * 2 // 256)
    return ds


def send_part_of_c_store(assoc, ds: Dataset, fraction: float = 0.5) -> int:
    """Send the C-STORE command and only ``fraction`` of the data set's PDUs.

    Returns the number of P-DATA PDUs the whole message needs."""
    req = C_STORE()
    req.MessageID = 1
    req.Priority = 2
    req.AffectedSOPClassUID = ds.SOPClassUID
    req.AffectedSOPInstanceUID = ds.SOPInstanceUID
    req.DataSet = BytesIO(encode_body(ds))
    msg = C_STORE_RQ()
    msg.primitive_to_message(req)
    cx = next(c for c in assoc.accepted_contexts if c.abstract_syntax == ds.SOPClassUID)
    pdu_size = min(16384, assoc.acceptor.maximum_length or 16384)
    pdus = list(msg.encode_msg(cx.context_id, pdu_size))
    assert len(pdus) > 10, "the data set must span many PDUs"
    for p in pdus[: int(len(pdus) * fraction)]:
        assoc.dul.send_pdu(p)
    return len(pdus)


def wait_association_closed(services, timeout: float = 10.0) -> list[dict]:
    deadline = time.monotonic() + timeout
    while True:
        with services.db.read() as conn:
            rows = [dict(r) for r in conn.execute(select(associations)).mappings()]
        if rows and all(r["closed_at"] is not None for r in rows):
            return rows
        if time.monotonic() > deadline:
            raise AssertionError(f"association not recorded as closed: {rows}")
        time.sleep(0.05)


@pytest.mark.parametrize("how", ["a_abort", "tcp_close"])
def test_peer_going_away_mid_transfer_leaves_nothing(
    how: str, runtime, services, tmp_path: Path, raw_send, logs
) -> None:
    ds = big_ct()
    uid = ds.SOPInstanceUID
    with association(runtime.scp.port, max_pdu=16384) as assoc:
        send_part_of_c_store(assoc, ds)
        time.sleep(0.3)  # let the listener take in what was sent
        if how == "a_abort":
            assoc.abort()
        else:
            # the peer vanishes: no A-ABORT, the connection just ends
            sock: socket.socket = assoc.dul.socket.socket
            sock.shutdown(socket.SHUT_RDWR)
            deadline = time.monotonic() + 10
            while not (assoc.is_aborted or assoc.is_released) and time.monotonic() < deadline:
                time.sleep(0.05)
            if assoc.is_established:
                assoc.abort()

    rows = wait_association_closed(services)
    assert len(rows) == 1
    assert rows[0]["how_closed"] != "released"
    assert_nothing_kept(services, (uid,))
    assert indexed_uids(services) == set()

    # a valid transfer right after, on a new association, is stored
    path, good_uid = valid_file(tmp_path / "send", "after")
    with association(runtime.scp.port) as assoc:
        assert status_of(assoc.send_c_store(path)) == 0x0000
    assert indexed_uids(services) == {good_uid}
    assert_nothing_kept(services, (uid,))
    assert_no_phi(logs)


def test_association_end_is_recorded_as_released_or_aborted(runtime, services, tmp_path: Path, raw_send) -> None:
    """The association ledger tells a release from a peer's A-ABORT mid-transfer."""
    path, _ = valid_file(tmp_path / "send", "released")
    with association(runtime.scp.port) as assoc:
        assert status_of(assoc.send_c_store(path)) == 0x0000
    first = wait_association_closed(services)
    assert [r["how_closed"] for r in first] == ["released"]

    with association(runtime.scp.port) as assoc:
        send_part_of_c_store(assoc, big_ct())
        time.sleep(0.3)
        assoc.abort()
    rows = wait_association_closed(services)
    aborted = [r for r in rows if r["id"] != first[0]["id"]]
    assert len(aborted) == 1
    assert aborted[0]["how_closed"] == "aborted"
