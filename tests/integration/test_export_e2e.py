"""Results out, end to end: a synthetic head with a bleed C-STOREd to the service (inference in this process,
the reference model, live in development) ends as a TID 1500 SR, key images (SC) and their KOS in a real
Orthanc, an ORU^R01 at an MLLP receiver and a DiagnosticReport at a FHIR receiver; a reader's disagree then
withdraws it everywhere (an SR marked withdrawn, OBX-11 W, entered-in-error)."""

from __future__ import annotations

import json
import subprocess
import urllib.request
from pathlib import Path

import highdicom as hd
import pydicom
import pytest
from sqlalchemy import select

from radtriage.db.tables import outbox
from radtriage.synth import synthesize
from tests.helpers import (need_binary, start_orthanc, stop_process, storescu, three_destinations, wait_jobs_final,
                           wait_settled)
from tests.integration.test_export_fhir_hl7 import TOKEN, fhir_server, listener  # noqa: F401 - fixtures

REPO = Path(__file__).resolve().parents[2]
SR, SC, KOS = "1.2.840.10008.5.1.4.1.1.88.34", "1.2.840.10008.5.1.4.1.1.7", "1.2.840.10008.5.1.4.1.1.88.59"

pytestmark = [pytest.mark.dcmtk, pytest.mark.slow]


def _orthanc_classes(http_port: int) -> list[str]:
    with urllib.request.urlopen(f"http://127.0.0.1:{http_port}/instances?expand", timeout=10) as r:
        instances = json.load(r)
    out = []
    for i in instances:
        with urllib.request.urlopen(f"http://127.0.0.1:{http_port}/instances/{i['ID']}/metadata/SopClassUid",
                                    timeout=10) as r:
            out.append(r.read().decode())
    return sorted(out)


def _orthanc_files(http_port: int, sop_class: str, folder: Path) -> list[Path]:
    """The files Orthanc holds of one SOP class, fetched through its REST API."""
    out = []
    with urllib.request.urlopen(f"http://127.0.0.1:{http_port}/instances", timeout=10) as r:
        ids = json.load(r)
    for i in ids:
        with urllib.request.urlopen(f"http://127.0.0.1:{http_port}/instances/{i}/metadata/SopClassUid",
                                    timeout=10) as r:
            if r.read().decode() != sop_class:
                continue
        path = folder / f"{i}.dcm"
        with urllib.request.urlopen(f"http://127.0.0.1:{http_port}/instances/{i}/file", timeout=10) as r:
            path.write_bytes(r.read())
        out.append(path)
    return out


def _items(ds):
    """Every content item of an SR tree, depth first."""
    for item in getattr(ds, "ContentSequence", []):
        yield item
        yield from _items(item)


def _exports(db) -> list[tuple[str, str, str, str]]:
    with db.read() as conn:
        return [(r.target, r.channel, r.payload["status"], r.state)
                for r in conn.execute(select(outbox).where(outbox.c.kind == "export").order_by(outbox.c.id))]


def _wait_delivered(db, n: int, timeout: float = 120) -> list[tuple[str, str, str, str]]:
    return wait_settled(lambda: _exports(db), n, timeout)


def test_a_positive_head_reaches_the_pacs_the_ris_and_the_emr(make_settings, tmp_path, listener, fhir_server,
                                                              monkeypatch):  # noqa: F811
    from radtriage.api.studies import _withdraw_if_wrong
    from radtriage.db import accounts, ledger, worklist
    from radtriage.service import Runtime, build_services

    monkeypatch.setenv("RADTRIAGE_TEST_FHIR_TOKEN", TOKEN)
    proc, dicom_port, http_port = start_orthanc(tmp_path / "orthanc")
    folder = synthesize("ct-head", 1, 21, tmp_path / "study", {"positive": True, "subtypes": ["intraparenchymal"]})[0]
    settings = make_settings(
        inference={"enabled": True, "use_ray": False, "pipelines_dir": str(REPO / "pipelines"),
                   "models_dir": str(REPO / "models"), "poll_s": 0.1},
        exports=three_destinations(dicom_port, listener.port, fhir_server.url, "RADTRIAGE_TEST_FHIR_TOKEN"))
    services = build_services(settings)
    runtime = Runtime(services)
    runtime.start()
    try:
        r = storescu(runtime.scp.port, sorted(folder.glob("*.dcm")), "SCANNER", settings.ae_title, timeout=300)
        assert r.returncode == 0, r.stderr[-2000:]
        truth = json.loads((folder / "truth.json").read_text())
        wait_jobs_final(services.db, len(truth["series"]), timeout=300)
        (result,) = [x for x in ledger.result_rows(services.db) if x["pipeline_id"] == "stroke_ich"]
        assert result["positive"] and result["state"] == "live"
        rows = _wait_delivered(services.db, 3)
        assert sorted(rows) == [("emr", "fhir", "preliminary", "delivered"), ("pacs", "dicom", "preliminary", "delivered"),
                                ("ris", "hl7", "preliminary", "delivered")]
        classes = _orthanc_classes(http_port)
        assert SR in classes and KOS in classes and SC in classes
        sr = _orthanc_files(http_port, SR, tmp_path)[0]
        dump = subprocess.run([need_binary("dsrdump"), "-Ec", str(sr)], capture_output=True, text=True, timeout=60)
        assert dump.returncode == 0 and "Error" not in dump.stderr, dump.stderr
        volume = result["result"]["findings"][0]["measurements"]["estimated_volume_ml"]
        values = [float(item.MeasuredValueSequence[0].NumericValue) for item in _items(hd.sr.srread(sr))
                  if item.ValueType == "NUM" and item.ConceptNameCodeSequence[0].CodeMeaning == "Volume"]
        assert values == [pytest.approx(volume, abs=0.05)]
        (oru,) = listener.received
        assert "ORU^R01" in oru and any(seg.split("|")[11] == "P" for seg in oru.split("\r") if seg.startswith("OBX"))
        (report,) = fhir_server.store["DiagnosticReport"].values()
        assert report["status"] == "preliminary"

        accounts.add_user(services.db, "reader", "radiologist", "a long enough password 1", "Reader")
        worklist.add_feedback(services.db, result["study_uid"], result["id"], "ich", accounts.get_user(services.db, "reader").id,
                              "reader", "radiologist", "disagree", "calcification", then=_withdraw_if_wrong)
        runtime.exports.wake()
        rows = _wait_delivered(services.db, 6)
        assert sorted(r[:3] for r in rows[3:]) == [("emr", "fhir", "withdrawn"), ("pacs", "dicom", "withdrawn"),
                                                   ("ris", "hl7", "withdrawn")]
        assert all(r[3] == "delivered" for r in rows[3:])
        assert any(seg.split("|")[11] == "W" for seg in listener.received[-1].split("\r") if seg.startswith("OBX"))
        assert next(iter(fhir_server.store["DiagnosticReport"].values()))["status"] == "entered-in-error"
        assert _orthanc_classes(http_port).count(SR) == 2  # the first SR and the one that withdraws it
        first_sc = {str(pydicom.dcmread(f).SOPInstanceUID) for f in _orthanc_files(http_port, SC, tmp_path)}
        notes = [pydicom.dcmread(f) for f in _orthanc_files(http_port, KOS, tmp_path)]
        (rejection,) = [k for k in notes if k.ConceptNameCodeSequence[0].CodeValue == "113037"]  # IOCM
        named = {str(i.ReferencedSOPInstanceUID) for s in rejection.CurrentRequestedProcedureEvidenceSequence
                 for se in s.ReferencedSeriesSequence for i in se.ReferencedSOPSequence}
        assert first_sc and first_sc <= named  # the key images sent first are rejected
    finally:
        runtime.stop()
        services.close()
        stop_process(proc)
