"""A radiologist's report, end to end: a synthetic head stored in the service (the listener, assembly) with
a live ICH result on its axial series; the draft in both languages; an unsigned draft sends nothing; the
signed report reaches a real Orthanc (TID 2000 Enhanced SR, verified), an MLLP receiver (ORU, OBX-11 F) and
a FHIR receiver (DiagnosticReport final); an addendum follows as an amendment (a second SR naming the first,
OBX-11 C, the same DiagnosticReport amended); removing an AI finding is a disagree."""

from __future__ import annotations

import json
import time
import urllib.request
from pathlib import Path

import pydicom
import pytest
from sqlalchemy import func, select

from radtriage.db.errors import ActionRefused
from radtriage.db.tables import instances, jobs, outbox, series
from radtriage.reports.samples import SAMPLES
from radtriage.synth import synthesize
from tests.helpers import start_orthanc, stop_process, storescu, three_destinations, wait_settled
from tests.integration.test_export_fhir_hl7 import TOKEN, fhir_server, listener  # noqa: F401 - fixtures

ENHANCED_SR = "1.2.840.10008.5.1.4.1.1.88.22"
pytestmark = [pytest.mark.dcmtk, pytest.mark.slow]


def _stored_study(make_settings, tmp_path: Path, **overrides):
    """A running service (inference off) holding a synthetic head, with a live ICH result recorded on the
    series with the most instances; (services, runtime, study_uid, result_id)."""
    from radtriage.db import ledger, worklist
    from radtriage.service import Runtime, build_services

    settings = make_settings(**overrides)
    services = build_services(settings)
    runtime = Runtime(services)
    runtime.start()
    folder = synthesize("ct-head", 1, 21, tmp_path / "study", {"positive": True, "subtypes": ["intraparenchymal"]})[0]
    assert storescu(runtime.scp.port, sorted(folder.glob("*.dcm")), "SCANNER", settings.ae_title,
                    timeout=120).returncode == 0
    study_uid = str(pydicom.dcmread(next(folder.glob("*.dcm")), stop_before_pixels=True).StudyInstanceUID)
    deadline, job = time.monotonic() + 60, None
    while time.monotonic() < deadline and (job is None or worklist.entry(services.db, study_uid) is None):
        with services.db.read() as conn:
            job = conn.execute(select(jobs.c.id, series.c.series_uid).join(series, series.c.id == jobs.c.series_id)
                               .join(instances, instances.c.series_id == series.c.id).group_by(jobs.c.id, series.c.series_uid)
                               .order_by(func.count(instances.c.id).desc())).first()
        time.sleep(0.2)
    assert job is not None
    result = SAMPLES["ich"][0]
    ledger.record_results(services.db, job.id, [{
        "pipeline_id": "stroke_ich", "pipeline_version": "1.0.0", "study_uid": study_uid, "series_uid": job.series_uid,
        "task": "ich", "model_id": result.model_id, "model_version": result.model_version, "positive": True,
        "priority": "STAT", "result": result.model_dump(mode="json"), "state": "live"}])
    rid = next(r["id"] for r in ledger.result_rows(services.db) if r["study_uid"] == study_uid)
    return services, runtime, study_uid, rid


def _report_rows(db) -> list[tuple[str, str, int, str]]:
    with db.read() as conn:
        return [(r.target, r.payload["status"], r.payload["revision"], r.state) for r in conn.execute(
            select(outbox).where(outbox.c.kind == "export", outbox.c.subject.like("report-%")).order_by(outbox.c.id))]


def _wait(db, n: int, timeout: float = 60) -> list[tuple[str, str, int, str]]:
    return wait_settled(lambda: _report_rows(db), n, timeout, "report exports")


def _orthanc_srs(http_port: int) -> list[dict]:
    with urllib.request.urlopen(f"http://127.0.0.1:{http_port}/instances?expand", timeout=10) as r:
        found = json.load(r)
    out = []
    for i in found:
        with urllib.request.urlopen(f"http://127.0.0.1:{http_port}/instances/{i['ID']}/simplified-tags", timeout=10) as r:
            tags = json.load(r)
        if tags.get("SOPClassUID") == ENHANCED_SR:
            out.append(tags)
    return out


def test_a_signed_report_reaches_pacs_ris_emr_and_an_addendum_follows_as_amendment(
        make_settings, tmp_path, listener, fhir_server, monkeypatch):  # noqa: F811
    from radtriage.db import accounts, audit
    from radtriage.exports.worker import Exports
    from radtriage.reports.signing import Reports

    monkeypatch.setenv("RADTRIAGE_TEST_FHIR_TOKEN", TOKEN)
    proc, dicom_port, http_port = start_orthanc(tmp_path / "orthanc")
    services, runtime, study_uid, rid = _stored_study(
        make_settings, tmp_path,
        exports=three_destinations(dicom_port, listener.port, fhir_server.url, "RADTRIAGE_TEST_FHIR_TOKEN"))
    exports = Exports(services.db, services.settings, [])
    exports.start()
    try:
        doctor = accounts.add_user(services.db, "dr.chan", "radiologist", "a long enough password 1", "Anna Chan")
        reports = Reports(services.db, services.settings)
        draft = reports.current(study_uid)
        assert draft["state"] == "new" and draft["result_ids"] == [rid]
        zh = draft["body"]["zh-Hant"]["sections"]["findings"]
        assert "腦實質內出血" in zh and "12.4 毫升" in zh
        saved = reports.save(study_uid, doctor, "zh-Hant", {"findings": zh + "\n中線無偏移。"}, 0)
        assert saved["state"] == "draft" and saved["revision"] == 1
        with pytest.raises(ActionRefused):
            reports.send_preliminary(study_uid, doctor)  # this site sends no drafts
        time.sleep(1.5)
        assert _report_rows(services.db) == []  # an unsigned draft sends nothing, final or otherwise

        signed = reports.sign(study_uid, doctor, ["en", "zh-Hant"], saved["revision"])
        assert signed["state"] == "signed" and signed["signed_by"] == "Anna Chan" and signed["signed_at"]
        exports.wake()
        rows = _wait(services.db, 3)
        assert sorted(rows) == [("emr", "final", 0, "delivered"), ("pacs", "final", 0, "delivered"),
                                ("ris", "final", 0, "delivered")]
        (sr,) = _orthanc_srs(http_port)
        assert (sr["VerificationFlag"], sr["CompletionFlag"], sr["PreliminaryFlag"]) == ("VERIFIED", "COMPLETE", "FINAL")
        assert sr["StudyInstanceUID"] == study_uid
        oru = listener.received[-1]
        obx = [s.split("|") for s in oru.split("\r") if s.startswith("OBX")]
        assert {o[11] for o in obx} == {"F"} and {o[2] for o in obx} == {"TX"}
        assert "中線無偏移" in oru and "intraparenchymal haemorrhage" in oru and "Anna Chan" in oru
        (report,) = fhir_server.store["DiagnosticReport"].values()
        assert report["status"] == "final" and {f["language"] for f in report["presentedForm"]} == {"en", "zh-Hant"}
        assert report["resultsInterpreter"][0]["display"] == "Anna Chan"

        with pytest.raises(ActionRefused):  # signed is final: no silent change
            reports.save(study_uid, doctor, "en", {"impression": "changed"}, signed["revision"])
        reports.addendum(study_uid, doctor, "en", "Comparison with the prior CT: new since then.")
        exports.wake()
        rows = _wait(services.db, 6)
        assert sorted(rows[3:]) == [("emr", "amended", 1, "delivered"), ("pacs", "amended", 1, "delivered"),
                                    ("ris", "amended", 1, "delivered")]
        srs = sorted(_orthanc_srs(http_port), key=lambda t: int(t["InstanceNumber"]))
        assert len(srs) == 2 and srs[1]["SeriesInstanceUID"] == srs[0]["SeriesInstanceUID"]
        obx = [s.split("|") for s in listener.received[-1].split("\r") if s.startswith("OBX")]
        assert {o[11] for o in obx} == {"C"} and "new since then" in listener.received[-1]
        (report,) = fhir_server.store["DiagnosticReport"].values()  # the same resource, updated
        assert report["status"] == "amended"
        actions = [e["action"] for e in audit.entries(services.db, study_uid=study_uid)[1]]
        assert {"report_draft_saved", "report_signed", "report_addendum", "result_exported"} <= set(actions)
    finally:
        exports.stop()
        runtime.stop()
        services.close()
        stop_process(proc)


def test_who_may_act_preliminary_drafts_and_removing_a_finding(make_settings, tmp_path):
    from radtriage.api.studies import _withdraw_if_wrong
    from radtriage.db import accounts, worklist
    from radtriage.reports.signing import Reports

    services, runtime, study_uid, rid = _stored_study(
        make_settings, tmp_path, reports={"send_drafts": True},
        exports={"hl7": [{"name": "ris", "host": "127.0.0.1", "port": 9}]})
    try:
        reports = Reports(services.db, services.settings)
        nurse = accounts.add_user(services.db, "stroke1", "stroke", "a long enough password 1")
        with pytest.raises(ActionRefused):
            reports.sign(study_uid, nurse, ["en"], 0)  # radiologists sign; others read
        doctor = accounts.add_user(services.db, "dr.wong", "radiologist", "a long enough password 1")
        reports.send_preliminary(study_uid, doctor)
        assert _report_rows(services.db) == [("ris", "preliminary", 0, "pending")]
        after = reports.remove_finding(study_uid, doctor, rid, 0, "calcification", then=_withdraw_if_wrong)
        assert after["removed"] == [f"{rid}:0"] and "12.4" not in after["body"]["en"]["sections"]["findings"]
        assert "No intracranial haemorrhage" in after["body"]["en"]["sections"]["findings"]
        (fb,) = worklist.feedback_rows(services.db, study_uid)
        assert (fb["result_id"], fb["verdict"], fb["finding_code"]) == (rid, "disagree", "ich")
        signed = reports.sign(study_uid, doctor, ["en"], after["revision"])
        assert signed["languages"] == ["en"]
        assert [r[1:3] for r in _report_rows(services.db)] == [("preliminary", 0), ("final", 1)]
    finally:
        runtime.stop()
        services.close()
