"""The listener against hostile peers: idle and stalled sockets, over-long UIDs,
deflate bombs.

Each test runs a real listener in this process and talks to it over loopback
as a peer would (raw sockets, a pynetdicom SCU, an SCU in its own process),
then checks the DIMSE status, what the listener kept and ``/metrics``.
"""

from __future__ import annotations

import socket
import struct
import tempfile
import time
import tracemalloc
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from pydicom.dataset import FileMetaDataset
from pydicom.filebase import DicomBytesIO
from pydicom.filewriter import write_file_meta_info
from pydicom.uid import DeflatedExplicitVRLittleEndian, ExplicitVRLittleEndian
from prometheus_client.parser import text_string_to_metric_families
from pynetdicom import AE
from pynetdicom.sop_class import CTImageStorage  # type: ignore[attr-defined]

from radtriage.api import create_app
from radtriage.config import Peer
from radtriage.service import Runtime, build_services
from tests.helpers import storescu
from tests.integration.test_hostile_inputs import (
    assert_nothing_kept,
    association,
    big_ct,
    ct_dataset,
    encode_body,
    indexed_uids,
    raw_send,  # noqa: F401 - a fixture
    rejections,
    request_file,
    send_part_of_c_store,
    status_of,
    valid_file,
    wait_association_closed,
)

SCANNER = "HOSTILESCU"  # the allowed peer: the calling AE title of test_hostile_inputs' SCU
HOSTILE_ADDRESS = "127.0.0.2"  # another source address on loopback
IDLE_SOCKETS = 200
STALLED_SOCKETS = 50


# --- a listener with an allow-list, and its /metrics -------------------------------------


@contextmanager
def listener(make_settings, **overrides) -> Iterator[tuple[Runtime, TestClient]]:
    """A listener that admits only `SCANNER` from 127.0.0.1, and the API beside it."""
    values = dict(allowed_peers=[Peer(ae_title=SCANNER, host="127.0.0.1")], pre_association_timeout_s=1.0)
    values.update(overrides)
    services = build_services(make_settings(**values))
    rt = Runtime(services)
    rt.start()
    try:
        with TestClient(create_app(services, rt)) as api:
            yield rt, api
    finally:
        rt.stop()
        services.close()


def metric(api: TestClient, name: str, **labels: str) -> float:
    """A sample of ``/metrics`` as an HTTP client reads it (0 when absent)."""
    rsp = api.get("/metrics")
    assert rsp.status_code == 200
    for family in text_string_to_metric_families(rsp.text):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                return sample.value
    return 0.0


def settles(read, value: float, within_s: float = 10.0) -> bool:
    """Whether ``read()`` comes to ``value`` (a gauge that other threads update)."""
    deadline = time.monotonic() + within_s
    while read() != value:
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def refused(api: TestClient, reason: str) -> float:
    return metric(api, "radtriage_dicom_connections_refused_total", reason=reason)


# --- hostile sockets -----------------------------------------------------------------------


def connect_from(address: str, port: int) -> socket.socket:
    return socket.create_connection(("127.0.0.1", port), timeout=10, source_address=(address, 0))


def associate_rq_start() -> bytes:
    """The first bytes of an A-ASSOCIATE-RQ PDU whose header promises 300 bytes more."""
    return b"\x01\x00" + struct.pack(">I", 300) + b"\x00\x01\x00\x00"


def open_hostile_sockets(port: int, idle: int, stalled: int) -> list[socket.socket]:
    """``stalled`` sockets that send part of an A-ASSOCIATE-RQ and stop, then ``idle``
    sockets that send nothing, all from `HOSTILE_ADDRESS`."""
    socks = []
    for _ in range(stalled):
        s = connect_from(HOSTILE_ADDRESS, port)
        s.sendall(associate_rq_start())
        socks.append(s)
    socks.extend(connect_from(HOSTILE_ADDRESS, port) for _ in range(idle))
    return socks


def closed_by_listener(sock: socket.socket, deadline: float) -> bool:
    """Whether the listener has closed ``sock`` (EOF or reset) before ``deadline``."""
    while time.monotonic() < deadline:
        sock.settimeout(max(0.01, min(0.5, deadline - time.monotonic())))
        try:
            data = sock.recv(4096)
        except TimeoutError:
            continue
        except OSError:
            return True  # reset
        if not data:
            return True
    return False


@contextmanager
def scanner(port: int, *transfer_syntaxes: str, **associate_args) -> Iterator:
    """The allowed scanner's association (CT Image Storage in ``transfer_syntaxes``), or
    its failed attempt: ``associate_args`` go to `AE.associate` (host, tls_args)."""
    ae = AE(ae_title=SCANNER)
    ae.connection_timeout = ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = 30
    for ts in transfer_syntaxes or (ExplicitVRLittleEndian,):
        ae.add_requested_context(CTImageStorage, ts)
    host = associate_args.pop("host", "127.0.0.1")
    assoc = ae.associate(host, port, ae_title="RADTRIAGE", **associate_args)
    yield assoc
    if assoc.is_established:
        assoc.release()
    ae.shutdown()


# --- item 1: idle sockets must not lock scanners out ------------------------------------------


@pytest.mark.parametrize("per_address", [None, 1000], ids=["default_per_address_limit", "no_per_address_limit"])
def test_scanner_gets_in_while_another_address_holds_idle_and_stalled_sockets(
    make_settings, tmp_path, per_address
) -> None:
    """200 idle sockets and 50 stalled mid-PDU from 127.0.0.2 lock nobody out.

    With the default per-address limit most are refused at once; with the limit
    lifted, they all wait for their A-ASSOCIATE-RQ without taking an
    association slot. Either way the allowed scanner stores, and every hostile
    socket is closed by the listener and counted under its reason."""
    overrides = {} if per_address is None else {"max_connections_per_address": per_address}
    with listener(make_settings, **overrides) as (rt, api):
        socks = open_hostile_sockets(rt.scp.port, IDLE_SOCKETS, STALLED_SOCKETS)
        try:
            path, uid = valid_file(tmp_path / "send")
            with association(rt.scp.port) as assoc:  # fails if the scanner is refused
                assert status_of(assoc.send_c_store(path)) == 0x0000
            assert uid in indexed_uids(rt.services)
            held = metric(api, "radtriage_dicom_connections_open", state="pending")
            limit = per_address or rt.services.settings.max_connections_per_address
            assert held <= min(limit, IDLE_SOCKETS + STALLED_SOCKETS)

            deadline = time.monotonic() + 20
            still_open = [s for s in socks if not closed_by_listener(s, deadline)]
            assert still_open == [], f"{len(still_open)} hostile sockets are still open"
        finally:
            for s in socks:
                s.close()

        by_reason = {r: refused(api, r) for r in ("per_address_limit", "idle_timeout", "incomplete_pdu")}
        assert sum(by_reason.values()) == IDLE_SOCKETS + STALLED_SOCKETS, by_reason
        if per_address is None:
            # the first sockets (stalled ones) waited for their PDU; the rest were refused at once
            assert by_reason["incomplete_pdu"] >= 1 and by_reason["per_address_limit"] >= 1, by_reason
        else:
            assert by_reason == {"per_address_limit": 0, "idle_timeout": IDLE_SOCKETS,
                                 "incomplete_pdu": STALLED_SOCKETS}
        for state in ("pending", "associated"):  # every place taken is given back
            assert settles(lambda: metric(api, "radtriage_dicom_connections_open", state=state), 0), state


def self_signed_certificate(directory) -> tuple:
    """A certificate and key for ``localhost`` (files), as a site's PKI would issue."""
    from datetime import datetime, timedelta, timezone

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.now(timezone.utc)
    cert = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=1)).not_valid_after(now + timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost")]), critical=False)
        .sign(key, hashes.SHA256())
    )
    cert_file, key_file = directory / "server.crt", directory / "server.key"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_file, key_file


def test_a_silent_tls_client_does_not_stop_the_listener(make_settings, tmp_path) -> None:
    """With TLS on, a socket that never starts its handshake delays nobody, and is closed;
    so is one that completes its handshake and then says nothing."""
    import ssl

    pytest.importorskip("cryptography")
    cert_file, key_file = self_signed_certificate(tmp_path)
    with listener(make_settings, tls={"cert_file": cert_file, "key_file": key_file}) as (rt, api):
        client = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=str(cert_file))
        silent = connect_from(HOSTILE_ADDRESS, rt.scp.port)
        shy = client.wrap_socket(connect_from(HOSTILE_ADDRESS, rt.scp.port), server_hostname="localhost")
        try:
            path, uid = valid_file(tmp_path / "send")
            with scanner(rt.scp.port, host="localhost", tls_args=(client, "localhost")) as assoc:
                assert assoc.is_established, "a silent socket held up the TLS handshake of a scanner"
                assert status_of(assoc.send_c_store(path)) == 0x0000
            assert uid in indexed_uids(rt.services)
            assert closed_by_listener(silent, time.monotonic() + 20), "the silent socket was never closed"
            assert closed_by_listener(shy, time.monotonic() + 20), "the socket silent after its handshake stayed"
        finally:
            silent.close()
            shy.close()
        assert refused(api, "tls_handshake") == 1
        assert refused(api, "idle_timeout") == 1
        assert metric(api, "radtriage_associations_total", outcome="accepted") == 1


# --- item 4: an over-long UID gets a DIMSE status, and the association goes on ---------------

LONG_UID = "1.2.826.0.1.3680043.2.99." + ".".join(["123456789"] * 17)  # 194 characters

# A separate process sends, so that its relaxed UID check cannot relax the listener's.
OVERLONG_UID_SCU = r"""
import json, sys
import pydicom
from pydicom.data import get_testdata_file
from pydicom.uid import generate_uid
from pynetdicom import AE, _config
from pynetdicom.sop_class import CTImageStorage

_config.VALIDATORS["UI"] = lambda value: (True, "")  # this SCU sends what it is told to
port, long_uid = int(sys.argv[1]), sys.argv[2]
ae = AE(ae_title="HOSTILESCU")
ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = 20
ae.add_requested_context(CTImageStorage)
assoc = ae.associate("127.0.0.1", port, ae_title="RADTRIAGE")
out = {"established": assoc.is_established}
for name, uid in (("long", long_uid), ("valid", generate_uid())):
    ds = pydicom.dcmread(get_testdata_file("CT_small.dcm"))
    ds.SOPInstanceUID = uid
    rsp = assoc.send_c_store(ds) if assoc.is_established else None
    out[name] = int(rsp.Status) if rsp is not None and "Status" in rsp else None
    out[name + "_uid"] = uid
out["still_established"] = assoc.is_established
if assoc.is_established:
    assoc.release()
print(json.dumps(out))
"""


def test_overlong_sop_instance_uid_gets_c002_and_the_association_goes_on(runtime, services) -> None:
    import json
    import subprocess
    import sys

    assert len(LONG_UID) == 194
    before = rejections(services, "invalid_uid")
    proc = subprocess.run([sys.executable, "-c", OVERLONG_UID_SCU, str(runtime.scp.port), LONG_UID],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["established"]
    assert out["long"] == 0xC002, f"status {out['long']!r} for a 194-character SOP Instance UID"
    assert out["still_established"], "the listener dropped the association"
    assert out["valid"] == 0x0000
    assert rejections(services, "invalid_uid") == before + 1
    assert indexed_uids(services) == {out["valid_uid"]}


# --- item 7: a deflated data set is inflated only up to the size limit -----------------------

SIZE_LIMIT = 4 * 1024 * 1024
MiB = 1024 * 1024


def deflated_instance(directory: Path, name: str, zeros: int) -> tuple[Path, str]:
    """A CT instance in Deflated Explicit VR Little Endian whose data set ends in a private
    OB element of ``zeros`` zero bytes, compressed piece by piece (the sender never holds
    it inflated): a few hundred KB that inflate to ``zeros`` bytes."""
    ds = ct_dataset()
    ds.add_new(0x7FE10010, "LO", "RADTRIAGE TEST")
    if 0xFFFCFFFC in ds:
        del ds[0xFFFCFFFC]  # trailing padding: the appended element must be the last in tag order
    head = encode_body(ds) + struct.pack("<HH2sHI", 0x7FE1, 0x1010, b"OB", 0, zeros)
    deflate = zlib.compressobj(6, zlib.DEFLATED, -zlib.MAX_WBITS)
    parts = [deflate.compress(head)]
    for left in range(zeros, 0, -MiB):
        parts.append(deflate.compress(bytes(min(MiB, left))))
    parts.append(deflate.flush())
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = ds.SOPClassUID
    meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    meta.TransferSyntaxUID = DeflatedExplicitVRLittleEndian
    meta.ImplementationClassUID = "1.2.826.0.1.3680043.9.7433.1.1"
    fp = DicomBytesIO()
    fp.is_little_endian, fp.is_implicit_VR = True, False
    fp.write(b"\x00" * 128 + b"DICM")
    write_file_meta_info(fp, meta, enforce_standard=True)
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{name}.dcm"
    path.write_bytes(fp.getvalue() + b"".join(parts))
    return path, ds.SOPInstanceUID


def test_deflate_bomb_is_refused_at_the_size_limit(make_settings, tmp_path, raw_send) -> None:
    """64 KB that inflate to 64 MiB, with a 4 MiB limit: refused (0xA701) once the
    inflated data passes the limit, without holding the rest; the association goes on
    and a deflated instance within the limit is stored."""
    services = build_services(make_settings(max_upload_bytes=SIZE_LIMIT))
    rt = Runtime(services)
    rt.start()
    try:
        bomb, bomb_uid = deflated_instance(tmp_path / "send", "bomb", 64 * MiB)
        assert bomb.stat().st_size < SIZE_LIMIT / 8
        fine, fine_uid = deflated_instance(tmp_path / "send", "fine", MiB)
        with scanner(rt.scp.port, DeflatedExplicitVRLittleEndian, ExplicitVRLittleEndian) as assoc:
            assert assoc.is_established
            tracemalloc.start()
            try:
                status = status_of(assoc.send_c_store(bomb))
                _, peak = tracemalloc.get_traced_memory()
            finally:
                tracemalloc.stop()
            assert status == 0xA701, f"status {status!r} for a data set that inflates to 64 MiB"
            assert peak < 16 * SIZE_LIMIT, f"{peak / MiB:.0f} MiB allocated while refusing it"
            assert assoc.is_established
            assert status_of(assoc.send_c_store(fine)) == 0x0000
        assert rejections(services, "too_large") == 1
        assert indexed_uids(services) == {fine_uid}
        assert_nothing_kept(services, (bomb_uid,))
    finally:
        rt.stop()
        services.close()


# --- item 17: a UID with a trailing newline is no UID -----------------------------------------


def with_trailing_newline(body: bytes, uid: str) -> bytes:
    """``body`` with the Study Instance UID ``uid`` sent as ``uid`` + LF (pydicom would strip it)."""
    study_uid = b"\x20\x00\x0d\x00UI"  # (0020,000D) UI, explicit VR little endian
    value = uid.encode() + (b"\x00" if len(uid) % 2 else b"")
    sent = uid.encode() + b"\n" + (b"\x00" if len(uid) % 2 == 0 else b"")
    old = study_uid + struct.pack("<H", len(value)) + value
    assert body.count(old) == 1
    return body.replace(old, study_uid + struct.pack("<H", len(sent)) + sent)


def test_uid_with_trailing_newline_is_refused(runtime, services, tmp_path, raw_send) -> None:
    uid = "1.2.826.0.1.3680043.2.1143.7"
    ds = ct_dataset(StudyInstanceUID=uid)
    body = with_trailing_newline(encode_body(ds), uid)
    path = request_file(tmp_path / "send", "newline", CTImageStorage, ds.SOPInstanceUID, body)
    with association(runtime.scp.port) as assoc:
        assert status_of(assoc.send_c_store(path)) == 0xC002
        assert assoc.is_established
    assert rejections(services, "invalid_uid") == 1
    assert_nothing_kept(services, (ds.SOPInstanceUID,))


# --- item 8, DIMSE half: a C-STORE data set goes to disk as it arrives ------------------------


@pytest.mark.dcmtk
def test_dimse_data_set_is_not_held_in_memory(make_settings, tmp_path, monkeypatch) -> None:
    """A 32 MiB C-STORE over an 8 MiB limit is refused (0xA701) without the listener ever
    holding it in memory; received bytes go only to the data directory, even when the
    sender vanishes mid-transfer. dcmtk's storescu sends, so that what this process
    allocates is the listener's alone."""
    system_tmp = tmp_path / "system-tmp"
    system_tmp.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(system_tmp))
    services = build_services(make_settings(max_upload_bytes=8 * MiB))
    rt = Runtime(services)
    rt.start()
    try:
        big = big_ct(side=4096)  # 32 MiB of pixel data
        big_path = request_file(tmp_path / "send", "big", CTImageStorage, big.SOPInstanceUID, encode_body(big))
        del big
        good_path, good_uid = valid_file(tmp_path / "send", "good")
        tracemalloc.start()
        try:
            sent = storescu(rt.scp.port, [big_path, good_path], SCANNER, "RADTRIAGE", "--no-halt")
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        assert rejections(services, "too_large") == 1, sent.stderr[-2000:]
        assert indexed_uids(services) == {good_uid}
        assert peak < 8 * MiB, f"{peak / MiB:.0f} MiB allocated while receiving a 32 MiB data set"

        with association(rt.scp.port) as assoc:  # this sender goes away half-way
            send_part_of_c_store(assoc, big_ct(side=1024))
            assoc.abort()
        deadline = time.monotonic() + 10  # storescu's association and this one, both recorded closed
        while len(wait_association_closed(services)) < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert list(system_tmp.iterdir()) == [], "received data written outside the data directory"
        assert_nothing_kept(services, ())
    finally:
        rt.stop()
        services.close()
