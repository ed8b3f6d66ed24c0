"""The parts of forwarding, each on its own: the hub's series check and site filter, issuer-qualified patient
identity, the forwarded copy, the settings, Storage Commitment with a PACS, and the edge's sweep and sender."""

from __future__ import annotations

import datetime as dt
import threading
import time

import pydicom
import pytest
from fastapi.testclient import TestClient
from pydantic import ValidationError
from pydicom.dataset import Dataset
from pynetdicom import AE, evt
from pynetdicom.sop_class import CTImageStorage, StorageCommitmentPushModel
from sqlalchemy import select

from radtriage.api import create_app
from radtriage.assembly.assembler import _case_document
from radtriage.assembly.complete import close_ready_series
from radtriage.config.forward import ForwardSettings, HubDicom
from radtriage.db import accounts, audit
from radtriage.db import forward as rows
from radtriage.db.clock import utcnow
from radtriage.db.instances import Origin, patient_mismatch
from radtriage.db.tables import outbox
from radtriage.forward import transport
from radtriage.forward.copy import forwarded_copy
from radtriage.forward.sender import ForwardSender
from radtriage.forward.worker import ForwardSweep
from radtriage.outbox import Attempt
from radtriage.triage.live import Triage
from tests.helpers import free_port, make_ct_series


def _store(services, paths):
    for p in paths:
        services.store.store_instance([p.read_bytes()], Origin("stow"))


def test_the_hub_answers_what_it_lacks_records_the_site_and_its_worklist_filters_by_site(services, tmp_path):
    paths = make_ct_series(tmp_path / "s", 3, PatientID="P1", IssuerOfPatientID="KWC")
    _store(services, paths[:2])
    close_ready_series(services.db, dt.timedelta(0), dt.timedelta(seconds=1), _case_document,
                       now=utcnow() + dt.timedelta(seconds=5))
    Triage(services.db, inference_enabled=False, poll_s=0.05).run_once()
    accounts.add_user(services.db, "edge", "service")
    accounts.add_user(services.db, "reader", "radiologist", "a-long-enough-password-1")
    edge = {"Authorization": f"Bearer {accounts.issue_token(services.db, 'edge')}"}
    reader = {"Authorization": f"Bearer {accounts.issue_token(services.db, 'reader')}"}
    client = TestClient(create_app(services))
    ds = [pydicom.dcmread(p, stop_before_pixels=True) for p in paths]
    body = {"site": "kwc", "study_uid": ds[0].StudyInstanceUID, "series_uid": ds[0].SeriesInstanceUID,
            "sop_instance_uids": [d.SOPInstanceUID for d in ds]}
    assert client.post("/api/v1/forward/check", json=body, headers=reader).status_code == 403
    assert client.post("/api/v1/forward/check", json={**body, "site": "no site!"}, headers=edge).status_code == 422
    r = client.post("/api/v1/forward/check", json=body, headers=edge)
    assert r.status_code == 200, r.text
    assert r.json() == {"held": 2, "missing": [ds[2].SOPInstanceUID], "site_recorded": True}
    again = client.post("/api/v1/forward/check", json={**body, "site": "other"}, headers=edge).json()
    assert again["site_recorded"] is False  # a study keeps the site it came from
    page = client.get("/api/v1/worklist", params={"site": "kwc"}, headers=reader).json()
    assert page["total"] == 1 and page["items"][0]["site"] == "kwc"
    assert client.get("/api/v1/worklist", params={"site": "other"}, headers=reader).json()["total"] == 0
    assert client.get("/api/v1/worklist", params={"site": "local"}, headers=reader).json()["total"] == 0
    total, checked = audit.entries(services.db, action="series_completeness_checked")
    assert total == 2 and checked[-1]["detail"]["site"] == "kwc"  # newest first: the first call


def test_patient_identity_is_the_issuer_qualified_id():
    stored = {"patient_id": "123", "patient_id_issuer": "KWC", "patient_name": "", "patient_birth_date": ""}
    assert patient_mismatch(stored, {"patient_id": "123", "patient_id_issuer": "KWC"}) == ()
    # the same number from another site's register is another patient
    assert patient_mismatch(stored, {"patient_id": "123", "patient_id_issuer": "TMH"}) == ("patient_id_issuer",)
    assert patient_mismatch(stored, {"patient_id": "124", "patient_id_issuer": "KWC"}) == ("patient_id",)
    # an ID sent without its issuer is not contradicted by it (the edge adds the site's where it is empty)
    assert patient_mismatch(stored, {"patient_id": "123", "patient_id_issuer": None}) == ()


def test_the_forwarded_copy_carries_the_issuer_where_empty_and_is_the_same_every_time(tmp_path):
    bare, = make_ct_series(tmp_path / "a", 1, PatientID="P1")
    kept, = make_ct_series(tmp_path / "b", 1, PatientID="P1", IssuerOfPatientID="SCANNER-SITE")
    before = bare.read_bytes()
    first, second = forwarded_copy(bare, "KWC"), forwarded_copy(bare, "KWC")
    assert first.issuer_added and first.part10() == second.part10()  # a resend is the same instance
    assert pydicom.dcmread(pydicom.filebase.DicomBytesIO(first.part10())).IssuerOfPatientID == "KWC"
    assert bare.read_bytes() == before  # the edge's own copy stays as received
    untouched = forwarded_copy(kept, "KWC")
    assert not untouched.issuer_added and untouched.part10() == kept.read_bytes()
    assert not forwarded_copy(bare, None).issuer_added


def test_the_settings_name_one_hub_and_where_its_token_is():
    with pytest.raises(ValidationError, match="exactly one"):
        ForwardSettings(site="kwc")
    with pytest.raises(ValidationError, match="token_env"):
        ForwardSettings(site="kwc", stow_url="https://hub/dicomweb/studies")
    cfg = ForwardSettings(site="kwc", stow_url="https://hub.example/dicomweb/studies", token_env="HUB_TOKEN")
    assert cfg.channel == "stow" and cfg.check_url == "https://hub.example/api/v1/forward/check"
    pacs = ForwardSettings(site="kwc", dicom=HubDicom(ae_title="PACS", host="pacs", port=104))
    assert pacs.channel == "dicom" and pacs.check_url is None  # a PACS: Storage Commitment


def _pacs(lacks: set[str], commitment: bool = True):
    """A PACS (pynetdicom) that answers Storage Commitment on the same association, lacking ``lacks``."""
    ae = AE(ae_title="PACS")
    ae.add_supported_context(StorageCommitmentPushModel if commitment else CTImageStorage)

    def on_action(event):
        req = event.action_information

        def report() -> None:
            time.sleep(0.1)  # after the N-ACTION response
            info = Dataset()
            info.TransactionUID = req.TransactionUID
            bad = [r for r in req.ReferencedSOPSequence if r.ReferencedSOPInstanceUID in lacks]
            info.ReferencedSOPSequence = [r for r in req.ReferencedSOPSequence if r not in bad]
            if bad:
                info.FailedSOPSequence = bad
            event.assoc.send_n_event_report(info, 2 if bad else 1, StorageCommitmentPushModel,
                                            transport.STORAGE_COMMITMENT_INSTANCE)

        threading.Thread(target=report, daemon=True).start()
        return 0x0000, None

    port = free_port()
    return ae.start_server(("127.0.0.1", port), block=False, evt_handlers=[(evt.EVT_N_ACTION, on_action)]), port


def test_storage_commitment_tells_what_a_pacs_lacks_and_none_where_it_is_not_offered():
    refs = [(CTImageStorage, "1.2.3.1"), (CTImageStorage, "1.2.3.2")]
    server, port = _pacs({"1.2.3.2"})
    try:
        assert transport.commitment(HubDicom(ae_title="PACS", host="127.0.0.1", port=port, timeout_s=5),
                                    "EDGE", refs, 5) == ["1.2.3.2"]
    finally:
        server.shutdown()
    server, port = _pacs(set(), commitment=False)
    try:
        assert transport.commitment(HubDicom(ae_title="PACS", host="127.0.0.1", port=port, timeout_s=5),
                                    "EDGE", refs, 5) is None
    finally:
        server.shutdown()


def test_the_sweep_queues_each_instance_once_and_a_check_requeues_what_the_hub_lacks(services, tmp_path):
    cfg = ForwardSettings(site="kwc", issuer="KWC", stow_url="http://127.0.0.1:9/dicomweb/studies",
                          token_env="NONE", check_rounds=2)
    paths = make_ct_series(tmp_path / "s", 4, PatientID="P1")
    _store(services, paths)
    sweep = ForwardSweep(services.db, cfg, "hub", lambda: None)
    assert sweep.run_once() == 4 and sweep.run_once() == 0  # each instance's bytes once
    with services.db.read() as conn:
        pending = conn.execute(select(outbox).where(outbox.c.kind == "forward")).mappings().all()
    assert {r["channel"] for r in pending} == {"stow"} and len(pending) == 4
    series = pending[0]["subject"]
    sender = ForwardSender(cfg, "EDGE")
    item = {"id": 0, "channel": "check", "payload": {"study_uid": pending[0]["payload"]["study_uid"],
                                                     "series_uid": series, "version": 1, "round": 0}}
    lacking = pending[1]["payload"]["sop_instance_uid"]
    attempt = Attempt(item, outcome="delivered", notes={"missing": [lacking]})
    now = utcnow()
    with services.db.write() as conn:
        sender.record(conn, attempt, now)
        sender.record(conn, attempt, now)  # recorded twice (a lease ran out): queued once
    with services.db.read() as conn:
        keys = set(conn.execute(select(outbox.c.idempotency_key)).scalars())
    assert f"forward:{lacking}:{pending[1]['payload']['sha256']}:r1" in keys
    assert rows.check_key(series, 1, 1) in keys  # and the next round's check
    assert attempt.notes["queued_again"] == 0  # the second record found it queued
    sender.close()
