"""Results out to a real MLLP listener and a real FHIR server, both on 127.0.0.1 in this process.

The MLLP listener answers each message as its script says (an ACK whole or in pieces, AE, AR, another
control id, nothing); the FHIR server takes transaction Bundles of conditional updates, validates every
resource with fhir.resources (R4B), resolves the Bundle's urn:uuid references and keeps the resources,
so a resend can be seen to update rather than duplicate.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import json
import socketserver
import ssl
import threading
import time
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

import pytest
from fhir.resources.R4B import get_fhir_model_class
from fhir.resources.R4B.bundle import Bundle

from radtriage.exports.fhir import FhirClient, FhirOptions, build_bundle
from radtriage.exports.hl7 import MllpClient, oru_er7
from radtriage.exports.model import CORRECTED, WITHDRAWN
from radtriage.outbox import SendError
from tests.unit.test_export_hl7 import SENT, TASKS, exported

# --------------------------------------------------------------------------- an MLLP listener


class Listener(socketserver.ThreadingTCPServer):
    daemon_threads = allow_reuse_address = True

    def __init__(self, tls: ssl.SSLContext | None = None) -> None:
        super().__init__(("127.0.0.1", 0), MllpHandler)
        self.tls, self.script, self.received = tls, [], []

    @property
    def port(self) -> int:
        return self.server_address[1]


class MllpHandler(socketserver.BaseRequestHandler):
    def handle(self) -> None:
        server: Listener = self.server  # type: ignore[assignment]
        sock = server.tls.wrap_socket(self.request, server_side=True) if server.tls else self.request
        buf = b""
        while b"\x1c\x0d" not in buf:
            chunk = sock.recv(4096)
            if not chunk:
                return
            buf += chunk
        er7 = buf[buf.index(b"\x0b") + 1:buf.index(b"\x1c\x0d")].decode()
        server.received.append(er7)
        how = server.script.pop(0) if server.script else "AA"
        msh = er7.split("\r")[0].split("|")
        control = "OTHER-ID" if how == "wrong-id" else msh[9]
        if how == "silent":
            time.sleep(1.0)
            return
        code = "AA" if how in ("split", "wrong-id") else how
        ack = (f"MSH|^~\\&|RIS|HOSP|{msh[2]}|{msh[3]}|20261207120000||ACK^R01^ACK|ACK{control}|P|2.5.1\r"
               f"MSA|{code}|{control}\r").encode()
        frame = b"\x0b" + ack + b"\x1c\x0d"
        if how == "split":  # the ACK in pieces, the end block itself split across two writes
            for piece in (frame[:1], frame[1:20], frame[20:-1], frame[-1:]):
                sock.sendall(piece)
                time.sleep(0.02)
        else:
            sock.sendall(frame)


@pytest.fixture
def listener() -> Iterator[Listener]:
    server = Listener()
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def test_each_task_is_delivered_and_acknowledged(listener: Listener) -> None:
    client = MllpClient("127.0.0.1", listener.port, read_timeout_s=5)
    for i, task in enumerate(TASKS):
        ack = client.send(oru_er7(exported(task), f"RT41-{i}", sent_at=SENT))
        assert (ack.code, ack.control_id) == ("AA", f"RT41-{i}")
    assert [m.split("\r")[0].split("|")[9] for m in listener.received] == [f"RT41-{i}" for i in range(4)]
    assert all("|PAT-77^^^HOSP-A^MR|" in m for m in listener.received)


def test_an_ack_in_several_reads_is_read_whole(listener: Listener) -> None:
    listener.script = ["split"]
    assert MllpClient("127.0.0.1", listener.port, read_timeout_s=5).send(
        oru_er7(exported("ich"), "RT-S", sent_at=SENT)).code == "AA"


def test_ae_is_retried_and_then_accepted_ar_is_permanent(listener: Listener) -> None:
    client = MllpClient("127.0.0.1", listener.port, read_timeout_s=5)
    message = oru_er7(exported("lvo"), "RT-AE", sent_at=SENT)
    listener.script = ["AE", "AA", "AR", "wrong-id"]
    with pytest.raises(SendError) as err:
        client.send(message)
    assert not err.value.permanent
    assert client.send(message).code == "AA"  # the resend of the same row: the same control id
    with pytest.raises(SendError) as err:
        client.send(message)
    assert err.value.permanent
    with pytest.raises(SendError) as err:
        client.send(message)
    assert not err.value.permanent and "MSA-2" in str(err.value)
    assert len(set(listener.received)) == 1 and len(listener.received) == 4


def test_no_ack_or_no_listener_is_retried(listener: Listener) -> None:
    listener.script = ["silent"]
    with pytest.raises(SendError) as err:
        MllpClient("127.0.0.1", listener.port, read_timeout_s=0.3).send(oru_er7(exported("ich"), "T1", sent_at=SENT))
    assert not err.value.permanent and "timed out" in str(err.value)
    port = listener.port
    listener.shutdown()
    listener.server_close()
    with pytest.raises(SendError) as err:
        MllpClient("127.0.0.1", port, connect_timeout_s=1).send(oru_er7(exported("ich"), "T2", sent_at=SENT))
    assert not err.value.permanent


def _certificate(folder: Path) -> tuple[Path, Path]:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = dt.datetime.now(dt.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(hours=1))
            .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), True)
            .sign(key, hashes.SHA256()))
    cert_path, key_path = folder / "cert.pem", folder / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_path, key_path


def test_mllp_over_tls(tmp_path: Path) -> None:
    pytest.importorskip("cryptography")
    cert, key = _certificate(tmp_path)
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_ctx.load_cert_chain(cert, key)
    server = Listener(tls=server_ctx)
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    try:
        trusted = ssl.create_default_context(cafile=str(cert))
        ack = MllpClient("127.0.0.1", server.port, ssl_context=trusted, read_timeout_s=5).send(
            oru_er7(exported("nodule"), "RT-TLS", sent_at=SENT))
        assert ack.code == "AA" and "RT-TLS" in server.received[0]
        with pytest.raises(SendError) as err:  # a receiver we do not trust: trying again cannot help
            MllpClient("127.0.0.1", server.port, ssl_context=ssl.create_default_context(), read_timeout_s=5).send(
                oru_er7(exported("nodule"), "RT-TLS", sent_at=SENT))
        assert err.value.permanent
    finally:
        server.shutdown()
        server.server_close()


# --------------------------------------------------------------------------- a FHIR server

TOKEN = "secret-token"


class FhirServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), FhirHandler)
        self.store: dict[str, dict[str, dict[str, Any]]] = {}
        self.answer: int | None = None  # an HTTP status to answer with instead of working
        self.lock = threading.Lock()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/fhir"

    def find(self, rtype: str, system: str, value: str) -> str | None:
        for rid, res in self.store.get(rtype, {}).items():
            if any(i.get("system") == system and i.get("value") == value for i in res.get("identifier", [])):
                return rid
        return None

    def transaction(self, body: dict[str, Any]) -> dict[str, Any]:
        Bundle.model_validate(body)  # every resource, as R4B
        assert body["type"] == "transaction"
        ids, plan = {}, []
        for e in body["entry"]:
            assert e["request"]["method"] == "PUT"
            rtype, _, query = e["request"]["url"].partition("?")
            system, _, value = parse_qs(query)["identifier"][0].partition("|")
            assert rtype == e["resource"]["resourceType"]
            rid = self.find(rtype, system, value)
            plan.append((e, rtype, rid or uuid.uuid4().hex, rid is None))
            ids[e["fullUrl"]] = f"{rtype}/{plan[-1][2]}"
        out = []
        for e, rtype, rid, created in plan:
            resource = json.loads(json.dumps(e["resource"]), object_hook=lambda d: _resolve(d, ids))
            resource["id"] = rid
            get_fhir_model_class(rtype).model_validate(resource)
            self.store.setdefault(rtype, {})[rid] = resource
            out.append({"response": {"status": "201 Created" if created else "200 OK", "location": f"{rtype}/{rid}"}})
        return {"resourceType": "Bundle", "type": "transaction-response", "entry": out}


def _resolve(d: dict[str, Any], ids: dict[str, str]) -> dict[str, Any]:
    ref = d.get("reference")
    if isinstance(ref, str) and ref.startswith("urn:uuid:"):
        if ref not in ids:
            raise ValueError(f"unresolved reference {ref}")
        d["reference"] = ids[ref]
    return d


class FhirHandler(BaseHTTPRequestHandler):
    def log_message(self, *args: Any) -> None:
        pass

    def _reply(self, status: int, body: dict[str, Any]) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/fhir+json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_POST(self) -> None:
        server: FhirServer = self.server  # type: ignore[assignment]
        body = self.rfile.read(int(self.headers["Content-Length"]))
        if self.headers.get("Authorization") != f"Bearer {TOKEN}":
            return self._reply(401, _outcome("security", "bad token"))
        if server.answer is not None:
            return self._reply(server.answer, _outcome("transient", "as the test says"))
        if self.path.rstrip("/") != "/fhir" or self.headers.get("Content-Type") != "application/fhir+json":
            return self._reply(400, _outcome("invalid", "not a FHIR transaction"))
        try:
            with server.lock:
                return self._reply(200, server.transaction(json.loads(body)))
        except Exception as exc:  # noqa: BLE001 - a bad Bundle is the client's fault
            return self._reply(422, _outcome("invalid", str(exc)[:200]))


def _outcome(code: str, text: str) -> dict[str, Any]:
    return {"resourceType": "OperationOutcome", "issue": [{"severity": "error", "code": code, "diagnostics": text}]}


@pytest.fixture
def fhir_server() -> Iterator[FhirServer]:
    server = FhirServer()
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    yield server
    server.shutdown()
    server.server_close()


def _counts(server: FhirServer) -> dict[str, int]:
    return {k: len(v) for k, v in server.store.items()}


def _report(server: FhirServer) -> dict[str, Any]:
    (report,) = server.store["DiagnosticReport"].values()
    return report


def test_each_task_becomes_a_diagnostic_report_with_its_observations(fhir_server: FhirServer) -> None:
    with FhirClient(fhir_server.url, TOKEN, timeout=5) as client:
        for i, task in enumerate(TASKS):
            reply = client.send(build_bundle(exported(task, result_id=100 + i)))
            assert reply["type"] == "transaction-response"
    store = fhir_server.store
    assert len(store["DiagnosticReport"]) == 4 and len(store["Device"]) == 4
    for report in store["DiagnosticReport"].values():
        assert report["status"] == "preliminary"
        assert report["imagingStudy"][0]["identifier"] == {"system": "urn:dicom:uid",
                                                            "value": "urn:oid:1.2.826.0.1.3680043.8.498.1"}
        assert report["subject"]["identifier"] == {"system": "urn:radtriage:issuer:HOSP-A", "value": "PAT-77"}
        assert report["conclusion"].startswith("AI result - not for diagnosis")
        for ref in report["result"]:  # every result reference resolves to a stored Observation
            rtype, rid = ref["reference"].split("/")
            assert rtype == "Observation" and rid in store["Observation"]
    devices = {(d["deviceName"][0]["name"], d["version"][0]["value"]) for d in store["Device"].values()}
    assert devices == {(t.model_id, t.model_version) for t in TASKS.values()}


def test_a_nodule_is_a_measurement_group_with_a_tracked_body_structure(fhir_server: FhirServer) -> None:
    with FhirClient(fhir_server.url, TOKEN, timeout=5) as client:
        client.send(build_bundle(exported("nodule"), FhirOptions(site_key=b"SITE-AE")))
    uids = pytest.importorskip("radtriage.exports.dicom.uids")  # the DICOM SR's tracking UIDs are the same
    sr_tracking = {f"urn:oid:{uids.Uids(exported('nodule'), b'SITE-AE').tracking(i)}" for i in range(2)}
    obs = fhir_server.store["Observation"]
    bodies = fhir_server.store["BodyStructure"]
    assert len(bodies) == 2  # one per nodule
    groups = [o for o in obs.values() if o.get("hasMember")]
    assert len(groups) == 2
    for g in groups:
        site = g["extension"][0]["valueReference"]["reference"]
        body = bodies[site.split("/")[1]]
        types = {i["type"]["coding"][0]["code"]: i for i in body["identifier"]}
        assert types["112039"]["value"].startswith("nodule-")
        assert types["112040"]["system"] == "urn:dicom:uid" and types["112040"]["value"] in sr_tracking
        assert body["location"]["coding"][0]["code"] == "39607008"
        members = [obs[m["reference"].split("/")[1]] for m in g["hasMember"]]
        units = {m["code"]["coding"][0]["code"]: m.get("valueQuantity", {}).get("code") for m in members}
        assert units["nodule.longest_diameter_mm"] == "mm" and units["nodule.volume_mm3"] == "mm3"
        for m in members:
            assert {"reference": f"Observation/{_id_of(obs, g)}"} in m["derivedFrom"]
            assert m["partOf"][0]["type"] == "ImagingStudy"


def _id_of(store: dict[str, dict[str, Any]], resource: dict[str, Any]) -> str:
    return next(rid for rid, r in store.items() if r is resource)


def test_a_resend_updates_and_a_correction_amends_and_a_withdrawal_marks_in_error(fhir_server: FhirServer) -> None:
    with FhirClient(fhir_server.url, lambda: TOKEN, timeout=5) as client:
        client.send(build_bundle(exported("ich")))
        first = _counts(fhir_server)
        report_id = next(iter(fhir_server.store["DiagnosticReport"]))
        client.send(build_bundle(exported("ich")))
        assert _counts(fhir_server) == first
        client.send(build_bundle(exported("ich", CORRECTED, revision=1)))
        assert _counts(fhir_server) == first and _report(fhir_server)["status"] == "amended"
        client.send(build_bundle(exported("ich", WITHDRAWN, revision=2)))
    assert _counts(fhir_server) == first and list(fhir_server.store["DiagnosticReport"]) == [report_id]
    assert _report(fhir_server)["status"] == "entered-in-error"
    assert {o["status"] for o in fhir_server.store["Observation"].values()} == {"entered-in-error"}


def test_refusals_are_permanent_and_busy_servers_are_retried(fhir_server: FhirServer) -> None:
    bundle = build_bundle(exported("lvo"))
    with FhirClient(fhir_server.url, "wrong-token", timeout=5) as client, pytest.raises(SendError) as err:
        client.send(bundle)
    assert err.value.permanent and "401" in str(err.value)
    with FhirClient(fhir_server.url, TOKEN, timeout=5) as client:
        for status, permanent in ((503, False), (429, False), (408, False), (400, True), (404, True)):
            fhir_server.answer = status
            with pytest.raises(SendError) as err:
                client.send(bundle)
            assert err.value.permanent is permanent, status
        fhir_server.answer = None
        client.send(bundle)
    assert len(fhir_server.store["DiagnosticReport"]) == 1


def test_no_fhir_server_is_retried() -> None:
    server = FhirServer()
    url = server.url
    server.server_close()
    with FhirClient(url, TOKEN, timeout=1) as client, pytest.raises(SendError) as err:
        client.send(build_bundle(exported("bone_age")))
    assert not err.value.permanent
