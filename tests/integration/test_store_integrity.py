"""What is stored stays whole: a resent instance is a duplicate, and an instance that contradicts what is
stored is refused, audited and listed for an administrator; nothing is moved or merged silently.

Issue 12 items 3, 5 (a) and 11. Instances arrive through the real listener (pynetdicom as the sending
PACS, so the DIMSE status of each can be read, all on one association) and through STOW-RS over HTTP.
"""

from __future__ import annotations

import json
import logging
import shutil
import threading
import time
from pathlib import Path

import pydicom
import pytest
from fastapi.testclient import TestClient
from pydicom.uid import (
    CTImageStorage,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    RLELossless,
    generate_uid,
)
from sqlalchemy import select

from radtriage.api import create_app
from radtriage.db import accounts, audit, conflicts, instances, ledger
from radtriage.db.tables import series as series_table
from radtriage.db.tables import studies as studies_table
from tests.helpers import free_port, make_ct_series, need_peer, wait_jobs_final, wait_port

REPO = Path(__file__).resolve().parents[2]
CHROMIUM = "/usr/bin/chromium"

PATIENT_MISMATCH = 0xC010
UID_CONFLICT = 0xC011
ALPHA = {"PatientID": "P-ALPHA", "PatientName": "ALPHA^ANN", "PatientBirthDate": "19500101"}
BETA = {"PatientID": "P-BETA", "PatientName": "BETA^BOB", "PatientBirthDate": "19600202"}


# --- a running service: listener + API ---------------------------------------------------------


@pytest.fixture
def live(runtime, services):
    client = TestClient(create_app(services))
    tokens = {}
    for name, role in (("pacs", "service"), ("boss", "admin"), ("dr.ng", "radiologist")):
        accounts.add_user(services.db, name, role, password=None if role == "service" else "pw-" + name * 3)
        tokens[role] = {"Authorization": "Bearer " + accounts.issue_token(services.db, name)}
    return {"runtime": runtime, "services": services, "client": client, "tokens": tokens,
            "port": runtime.scp.port, "ae": services.settings.ae_title}


def cstore(live, paths: list[Path], syntaxes: tuple[str, ...] = (ExplicitVRLittleEndian,)) -> list[int]:
    """C-STORE each file on ONE association (pynetdicom as the PACS); the status of each."""
    from pynetdicom import AE

    ae = AE(ae_title="PACS_1")
    ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = 15
    ae.add_requested_context(CTImageStorage, list(syntaxes))
    assoc = ae.associate("127.0.0.1", live["port"], ae_title=live["ae"])
    assert assoc.is_established
    out = []
    try:
        for p in paths:
            status = assoc.send_c_store(p)
            assert status, "no response: the association was lost"
            out.append(int(status.Status))
    finally:
        assoc.release()
    return out


def stow(live, parts: list[bytes]):
    boundary = "integrity-boundary"
    body = b"".join(b"--" + boundary.encode() + b"\r\nContent-Type: application/dicom\r\n\r\n" + p + b"\r\n"
                    for p in parts) + b"--" + boundary.encode() + b"--\r\n"
    headers = {"content-type": f'multipart/related; type="application/dicom"; boundary={boundary}',
               **live["tokens"]["service"]}
    return live["client"].post("/dicomweb/studies", content=body, headers=headers)


def failure_reasons(response) -> list[int]:
    return [item["00081197"]["Value"][0] for item in response.json().get("00081198", {}).get("Value", [])]


def series_rows(services) -> dict[str, dict]:
    with services.db.read() as conn:
        return {r.series_uid: dict(r._mapping) for r in conn.execute(select(series_table))}


def study_row(services, study_uid: str) -> dict:
    with services.db.read() as conn:
        return dict(conn.execute(select(studies_table).where(studies_table.c.study_uid == study_uid)).one()._mapping)


def wait_jobs(services, n: int, timeout: float = 30) -> list[dict]:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        jobs = ledger.job_rows(services.db)
        if len(jobs) >= n:
            return jobs
        time.sleep(0.05)
    raise AssertionError(f"{n} jobs not written in {timeout} s: {ledger.job_rows(services.db)}")


def resaved(path: Path, out: Path, syntax: str, **changes) -> Path:
    """The same instance written again in another transfer syntax with other file meta (as a PACS would)."""
    ds = pydicom.dcmread(path)
    for k, v in changes.items():
        setattr(ds, k, v)
    if syntax == RLELossless:
        ds.compress(RLELossless, generate_instance_uid=False)
    else:
        ds.file_meta.TransferSyntaxUID = syntax
    ds.file_meta.ImplementationClassUID = "1.2.276.0.7230010.3.0.3.6.7"
    ds.file_meta.ImplementationVersionName = "OTHER_PACS_1"
    ds.file_meta.SourceApplicationEntityTitle = "PACS_1"
    out.parent.mkdir(parents=True, exist_ok=True)
    ds.save_as(out, implicit_vr=syntax == ImplicitVRLittleEndian, little_endian=True, enforce_file_format=True)
    return out


# --- item 3: a resent study is a duplicate ---------------------------------------------------------


def test_resent_instances_in_other_encodings_are_duplicates_and_a_real_change_is_a_new_version(live, tmp_path):
    services = live["services"]
    files = make_ct_series(tmp_path / "s", 3, **ALPHA)
    assert cstore(live, files) == [0, 0, 0]
    (job,) = wait_jobs(services, 1)
    series_uid = job["case"]["series_uid"]
    before = {r["sop_instance_uid"]: r["sha256"] for r in instances.instance_rows(services.db)}

    # the PACS sends one again by STOW-RS, RLE-compressed with its own file meta ...
    r = stow(live, [resaved(files[0], tmp_path / "again" / "0.dcm", RLELossless).read_bytes()])
    assert r.status_code == 200, r.text
    # ... and another by C-STORE in implicit VR
    again = resaved(files[1], tmp_path / "again" / "1.dcm", ImplicitVRLittleEndian)
    assert cstore(live, [again], (ImplicitVRLittleEndian,)) == [0]

    row = series_rows(services)[series_uid]
    assert (row["state"], row["version"]) == ("ready", 1)  # not reopened: no new version, so no new job
    assert {r["sop_instance_uid"]: r["sha256"] for r in instances.instance_rows(services.db)} == before
    assert all(instances.replacements(services.db, uid) == [] for uid in before)

    # a real change (other pixel data under the same UIDs) still makes a new version and a new job
    ds = pydicom.dcmread(files[2])
    ds.PixelData = bytes(len(ds.PixelData))
    ds.save_as(tmp_path / "changed.dcm")
    assert cstore(live, [tmp_path / "changed.dcm"]) == [0]
    assert series_rows(services)[series_uid]["version"] == 2
    jobs = wait_jobs(services, 2)
    assert [(j["case"]["series_uid"], j["series_version"]) for j in jobs] == [(series_uid, 1), (series_uid, 2)]


@pytest.mark.browser
@pytest.mark.slow
def test_study_page_shows_the_latest_result_per_pipeline_with_earlier_ones_folded(make_settings, tmp_path):
    """A head CT read by the ICH pipeline, then sent again with one slice changed: two results of one
    pipeline. The study page shows the latest, and the earlier one folded under it."""
    need_peer(Path(CHROMIUM).exists(), "Chromium at /usr/bin/chromium (Debian package chromium)")
    import uvicorn
    from playwright.sync_api import expect, sync_playwright

    from radtriage.service import Runtime, build_services
    from radtriage.synth import synthesize

    pipelines = tmp_path / "pipelines"
    pipelines.mkdir()
    shutil.copy(REPO / "pipelines" / "stroke_ich.yaml", pipelines)
    settings = make_settings(inference={"enabled": True, "use_ray": False, "pipelines_dir": str(pipelines),
                                        "models_dir": str(REPO / "models"), "in_flight": 1, "poll_s": 0.05})
    services = build_services(settings)
    runtime = Runtime(services)
    runtime.start()
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(create_app(services, runtime), host="127.0.0.1", port=port,
                                           log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        wait_port(port)
        accounts.add_user(services.db, "dr.ng", "radiologist", password="a long enough pass phrase 7")
        head = synthesize("ct-head", 1, 31, tmp_path / "head", {"matrix": 128})[0]
        main = sorted(head.glob("002_*.dcm"))[8:20]  # 12 contiguous slices of the main series: a quick reading
        live = {"port": runtime.scp.port, "ae": settings.ae_title}
        assert cstore(live, main) == [0] * len(main)
        wait_jobs_final(services.db, 1, 180)
        # the scanner reconstructs one slice again and resends it: a real change, so a second reading
        ds = pydicom.dcmread(main[len(main) // 2])
        ds.PixelData = (ds.pixel_array + 1).astype(ds.pixel_array.dtype).tobytes()
        ds.save_as(tmp_path / "again.dcm")
        assert cstore(live, [tmp_path / "again.dcm"]) == [0]
        jobs = wait_jobs_final(services.db, 2, 180)
        assert [j["series_version"] for j in jobs] == [1, 2] and {j["state"] for j in jobs} == {"done"}
        study_uid = str(ds.StudyInstanceUID)

        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True)
            page = browser.new_page()
            errors: list[str] = []
            page.on("pageerror", lambda e: errors.append(str(e)))
            try:
                page.goto(f"http://127.0.0.1:{port}/login")
                page.get_by_label("User name").fill("dr.ng")
                page.get_by_label("Password").fill("a long enough pass phrase 7")
                page.get_by_role("button", name="Log in").click()
                page.wait_for_url(f"http://127.0.0.1:{port}/")
                page.goto(f"http://127.0.0.1:{port}/studies/{study_uid}")
                latest = page.locator("section.results > article.result")
                expect(latest).to_have_count(1, timeout=20_000)
                expect(latest).to_contain_text("ICH")
                fold = page.locator("section.results > details.earlier")
                expect(fold).to_have_count(1)
                expect(fold.locator("summary")).to_contain_text("1 earlier result")
                expect(fold.locator("article.result")).to_have_count(1)
                expect(fold.locator("article.result")).to_be_hidden()
                fold.locator("summary").click()
                expect(fold.locator("article.result")).to_be_visible()
            finally:
                browser.close()
        assert not errors, errors
    finally:
        server.should_exit = True
        thread.join(15)
        runtime.stop()
        services.close()


# --- items 5 (a) and 11: conflicts are refused, audited and listed ----------------------------------


def _conflicts(live, role: str = "admin", **params):
    return live["client"].get("/api/v1/conflicts", params=params, headers=live["tokens"][role])


def test_cstore_study_of_another_patient_is_refused_audited_listed_and_kept_refused(live, tmp_path, caplog):
    services = live["services"]
    study_uid = generate_uid()
    alpha = make_ct_series(tmp_path / "a", 2, StudyInstanceUID=study_uid, **ALPHA)
    beta = make_ct_series(tmp_path / "b", 2, StudyInstanceUID=study_uid, **BETA)
    other = make_ct_series(tmp_path / "c", 1, **BETA)
    with caplog.at_level(logging.DEBUG):
        statuses = cstore(live, [*alpha, *beta, *other])
    # refused with a status, and the association goes on: the next instance is stored
    assert statuses == [0, 0, PATIENT_MISMATCH, PATIENT_MISMATCH, 0]
    beta_series = str(pydicom.dcmread(beta[0]).SeriesInstanceUID)
    assert beta_series not in series_rows(services)
    stored = study_row(services, study_uid)
    assert (stored["patient_id"], stored["patient_name"]) == ("P-ALPHA", "ALPHA^ANN")
    assert {r["sop_instance_uid"] for r in instances.instance_rows(services.db)} == {
        str(pydicom.dcmread(p).SOPInstanceUID) for p in (*alpha, *other)}

    # audited, with identifiers only
    total, entries = audit.entries(services.db, study_uid=study_uid, action="store_refused")
    assert total == 2 and {e["detail"]["kind"] for e in entries} == {"patient_mismatch"}
    assert {e["detail"]["calling_ae"] for e in entries} == {"PACS_1"}
    text = json.dumps([e["detail"] for e in entries]) + caplog.text
    assert "BETA" not in text and "P-BETA" not in text and "19600202" not in text

    # listed for an administrator, and only for one
    assert _conflicts(live, "radiologist").status_code == 403
    assert live["client"].get("/api/v1/conflicts").status_code == 401
    r = _conflicts(live)
    assert r.status_code == 200, r.text
    items = r.json()["items"]
    assert len(items) == 2 and {i["kind"] for i in items} == {"patient_mismatch"}
    item = items[0]
    assert item["state"] == "open" and item["study_uid"] == study_uid and item["series_uid"] == beta_series
    assert item["incoming"]["patient_id"] == "P-BETA" and item["stored"]["patient_id"] == "P-ALPHA"
    assert set(item["mismatch"]) == {"patient_id", "patient_name", "patient_birth_date"}
    assert item["actions"] == ["accept", "refuse"]
    assert audit.entries(services.db, action="conflicts_viewed")[0] >= 1
    page = live["client"].get("/admin/conflicts", headers=live["tokens"]["admin"])
    assert page.status_code == 200 and "/static/conflicts.js" in page.text
    assert 'href="/admin/conflicts"' in live["client"].get("/", headers=live["tokens"]["admin"]).text
    assert live["client"].get("/admin/conflicts", headers=live["tokens"]["radiologist"]).status_code == 403

    # keep refused: closed, its quarantined copy removed, nothing stored; a resend is refused again
    r = live["client"].post(f"/api/v1/conflicts/{item['id']}/refuse", headers=live["tokens"]["admin"])
    assert r.status_code == 200 and r.json()["state"] == "refused"
    assert r.json()["resolved_by"] == "boss"
    assert live["client"].post(f"/api/v1/conflicts/{item['id']}/accept",
                               headers=live["tokens"]["admin"]).status_code == 409
    assert beta_series not in series_rows(services)
    assert len(_conflicts(live, state="open").json()["items"]) == 1
    assert cstore(live, beta[:1]) == [PATIENT_MISMATCH]
    assert study_row(services, study_uid)["patient_name"] == "ALPHA^ANN"


def test_cstore_uids_stored_in_another_study_are_refused_never_moved(live, tmp_path):
    """Item 5's repro: ct-head and ct-chest shared SOP Instance UIDs, and the head instances were moved."""
    services = live["services"]
    head = make_ct_series(tmp_path / "head", 3, **ALPHA)
    assert cstore(live, head) == [0, 0, 0]
    head_series = str(pydicom.dcmread(head[0]).SeriesInstanceUID)
    head_rows = {r["sop_instance_uid"]: r["path"] for r in instances.instance_rows(services.db)}

    # another patient's study whose instances reuse the head's SOP Instance UIDs
    chest_study, chest_series = generate_uid(), generate_uid()
    chest = [resaved(p, tmp_path / "chest" / p.name, ExplicitVRLittleEndian, StudyInstanceUID=chest_study,
                     SeriesInstanceUID=chest_series, **BETA) for p in head]
    # and a study whose series reuses the head's Series Instance UID
    reuse = make_ct_series(tmp_path / "reuse", 1, SeriesInstanceUID=head_series, **ALPHA)
    assert cstore(live, [*chest, *reuse]) == [UID_CONFLICT] * 4

    assert {r["sop_instance_uid"]: r["path"] for r in instances.instance_rows(services.db)} == head_rows
    assert series_rows(services)[head_series]["version"] == 1
    assert chest_series not in series_rows(services)
    items = _conflicts(live).json()["items"]
    assert sorted(i["kind"] for i in items) == ["series_elsewhere"] + ["sop_elsewhere"] * 3
    sop = next(i for i in items if i["kind"] == "sop_elsewhere")
    assert sop["existing_series_uid"] == head_series and sop["study_uid"] == chest_study
    assert sop["actions"] == ["refuse"]  # a UID collision is fixed at the sender, never by moving instances
    r = live["client"].post(f"/api/v1/conflicts/{sop['id']}/accept", headers=live["tokens"]["admin"])
    assert r.status_code == 409
    assert {r["sop_instance_uid"]: r["path"] for r in instances.instance_rows(services.db)} == head_rows


def test_stow_conflict_accepted_as_a_correction_updates_the_patient_then_stores(live, tmp_path):
    services = live["services"]
    study_uid = generate_uid()
    first = make_ct_series(tmp_path / "a", 2, StudyInstanceUID=study_uid, IssuerOfPatientID="HOSP-A", **ALPHA)
    assert stow(live, [p.read_bytes() for p in first]).status_code == 200
    (job,) = wait_jobs(services, 1)

    corrected = {**ALPHA, "PatientName": "ALPHA^ANNE", "PatientBirthDate": "19500110"}
    fixed = make_ct_series(tmp_path / "b", 2, StudyInstanceUID=study_uid, **corrected)
    r = stow(live, [p.read_bytes() for p in fixed])
    assert r.status_code == 409 and failure_reasons(r) == [PATIENT_MISMATCH] * 2
    items = _conflicts(live).json()["items"]
    assert len(items) == 2 and set(items[0]["mismatch"]) == {"patient_name", "patient_birth_date"}

    # the administrator accepts the new demographics as a correction: the patient is updated, then every
    # instance held for it is stored
    r = live["client"].post(f"/api/v1/conflicts/{items[0]['id']}/accept", headers=live["tokens"]["admin"])
    assert r.status_code == 200, r.text
    assert r.json()["state"] == "accepted" and r.json()["stored_instances"] == 2
    stored = study_row(services, study_uid)
    assert (stored["patient_name"], stored["patient_birth_date"]) == ("ALPHA^ANNE", "19500110")
    assert stored["patient_id_issuer"] == "HOSP-A"  # what the correcting instance lacks is kept
    assert {r["sop_instance_uid"] for r in instances.instance_rows(services.db)} >= {
        str(pydicom.dcmread(p).SOPInstanceUID) for p in fixed}
    assert {i["state"] for i in _conflicts(live, state="all").json()["items"]} == {"accepted"}
    (entry,) = audit.entries(services.db, study_uid=study_uid, action="patient_corrected")[1]
    assert entry["actor"] == "boss" and set(entry["detail"]["fields"]) == {"patient_name", "patient_birth_date"}
    assert "ANNE" not in json.dumps(entry["detail"])
    # the accepted instances are stored as any others: sent again, they are duplicates
    assert stow(live, [fixed[0].read_bytes()]).status_code == 200
    wait_jobs(services, 2)


@pytest.fixture
def any_db_services(make_settings, db_url):
    from radtriage.service import build_services

    svc = build_services(make_settings(database_url=db_url))
    yield svc
    svc.close()


def test_patient_identity_rule(any_db_services, tmp_path):
    """Patient ID with its issuer where both have one; name and birth date where both have them."""
    from radtriage.ingest.parse import InstanceRejected, RejectReason
    from radtriage.ingest.store import Origin

    services = any_db_services

    def put(**attrs):
        return services.store.store_instance([make_ct_series(tmp_path / generate_uid(), 1, StudyInstanceUID=study,
                                                             **attrs)[0].read_bytes()], Origin("import"))

    def refused(**attrs) -> bool:
        try:
            put(**attrs)
        except InstanceRejected as rej:
            assert rej.reason is RejectReason.PATIENT_MISMATCH
            return True
        return False

    study = generate_uid()
    put(PatientID="77", IssuerOfPatientID="HOSP-A", PatientName="Doe^John", PatientBirthDate="")
    assert not refused(PatientID="77", IssuerOfPatientID="HOSP-A", PatientName="DOE^JOHN^^^")  # the same name
    assert not refused(PatientID="77", PatientName="Doe^John", PatientBirthDate="19700101")  # one side lacks them
    assert refused(PatientID="77", IssuerOfPatientID="HOSP-B", PatientName="Doe^John")  # another issuer's 77
    assert refused(PatientID="78", IssuerOfPatientID="HOSP-A", PatientName="Doe^John")
    assert refused(PatientID="77", IssuerOfPatientID="HOSP-A", PatientName="Roe^John")
    assert len(conflicts.listing(services.db)) == 3 and len(instances.instance_rows(services.db)) == 3
