"""The listener against dcmtk: C-ECHO, the peer allow-list, TLS."""

from __future__ import annotations

import subprocess

import pytest
from pynetdicom import AE
from pynetdicom.sop_class import CTImageStorage, Verification

from radtriage.config import Peer
from radtriage.service import Runtime, build_services
from tests.helpers import make_ct_series, need_binary, storescu

pytestmark = pytest.mark.dcmtk


def echoscu(port: int, aet: str = "ECHOSCU", *extra: str) -> subprocess.CompletedProcess:
    exe = need_binary("echoscu")
    return subprocess.run(
        [exe, "-v", "-aet", aet, "-aec", "RADTRIAGE", *extra, "127.0.0.1", str(port)],
        capture_output=True, text=True, timeout=30,
    )


def test_echoscu_gets_success(runtime):
    r = echoscu(runtime.scp.port)
    assert r.returncode == 0, r.stderr
    assert "Received Echo Response (Success)" in r.stderr + r.stdout


@pytest.fixture
def allow_listed(make_settings):
    settings = make_settings(allowed_peers=[Peer(ae_title="CT_ED_1"), Peer(ae_title="CT_PINNED", host="10.9.9.9")])
    services = build_services(settings)
    rt = Runtime(services)
    rt.start()
    yield rt, services
    rt.stop()
    services.close()


def test_unknown_calling_ae_is_rejected_with_reason(allow_listed, tmp_path):
    rt, services = allow_listed
    r = echoscu(rt.scp.port, "INTRUDER")
    assert r.returncode != 0
    out = r.stderr + r.stdout
    assert "Association Rejected" in out
    assert "Calling AE Title Not Recognized" in out
    # a listed AE gets in
    assert echoscu(rt.scp.port, "CT_ED_1").returncode == 0
    # a listed AE pinned to another address is refused
    assert echoscu(rt.scp.port, "CT_PINNED").returncode != 0
    # and a rejected peer cannot store anything
    files = make_ct_series(tmp_path / "s", 2)
    r = storescu(rt.scp.port, files, "INTRUDER")
    assert r.returncode != 0
    from radtriage.db import instances

    assert instances.instance_rows(services.db) == []
    samples = {s.labels["outcome"]: s.value for m in services.metrics.registry.collect()
               for s in m.samples if s.name == "radtriage_associations_total"}
    assert samples.get("rejected", 0) >= 3


def test_without_allow_list_only_local_peers(runtime):
    from radtriage.ingest.scp import PeerPolicy

    policy = runtime.scp.policy
    assert policy.local_only
    assert policy.allows("ANY", "127.0.0.1") and policy.allows("ANY", "::1")
    assert not policy.allows("ANY", "192.168.1.20")
    assert not PeerPolicy((Peer(ae_title="A"),)).allows("B", "127.0.0.1")


def test_tls_association(make_settings, tmp_path):
    """With a certificate configured the listener speaks DICOM over TLS."""
    import ssl

    cryptography = pytest.importorskip("cryptography")
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
        .serial_number(x509.random_serial_number()).not_valid_before(now - timedelta(minutes=1))
        .not_valid_after(now + timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost")]), critical=False)
        .sign(key, hashes.SHA256())
    )
    cert_file, key_file = tmp_path / "server.crt", tmp_path / "server.key"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
    settings = make_settings(tls={"cert_file": cert_file, "key_file": key_file})
    services = build_services(settings)
    rt = Runtime(services)
    rt.start()
    try:
        client = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=str(cert_file))
        ae = AE(ae_title="TLSSCU")
        ae.add_requested_context(Verification)
        assoc = ae.associate("localhost", rt.scp.port, ae_title="RADTRIAGE", tls_args=(client, "localhost"))
        assert assoc.is_established
        assert assoc.send_c_echo().Status == 0x0000
        assoc.release()
        # plain TCP to the TLS port gets no association
        ae2 = AE(ae_title="PLAIN")
        ae2.add_requested_context(CTImageStorage)
        ae2.acse_timeout = 3
        plain = ae2.associate("127.0.0.1", rt.scp.port, ae_title="RADTRIAGE")
        assert not plain.is_established
    finally:
        rt.stop()
        services.close()
