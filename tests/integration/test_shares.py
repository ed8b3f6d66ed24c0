"""Authorised QR shares of a study: a clinician issues one (consent and legal basis recorded), its holder opens it
with the link and passcode and gets the report, a frame as PNG and a zip with a DICOMDIR (dcmdump and pydicom
read it back); a receiving hospital pulls it by WADO-RS with its token; expired, revoked, used-up, locked shares
and wrong passcodes are refused with a clear page and status; the sealed copy cannot be read without the key;
each step is audited with no patient identifier in the link or the trail."""

from __future__ import annotations

import datetime as dt
import io
import subprocess
import zipfile
from email.parser import BytesParser
from email.policy import HTTP
from pathlib import Path

import pydicom
import pytest
from fastapi.testclient import TestClient
from PIL import Image
from sqlalchemy import update

from radtriage.db import accounts, audit
from radtriage.db import reports as report_rows
from radtriage.db.tables import shares
from radtriage.ingest.importer import import_folder
from radtriage.sharing.crypto import WrongKey, new_key, unseal
from radtriage.sharing.store import shares_root
from radtriage.synth import synthesize
from tests.helpers import need_binary
from tests.integration.test_dicomweb_read import database_url  # noqa: F401 - the fixture: SQLite and PostgreSQL

PASSWORD = "correct horse battery"
PATIENT = "SYNTHETIC"  # the synthetic study's patient name starts with this
FINDINGS = "No acute intracranial haemorrhage."


USERS = {"cli1": "clinician", "cli2": "clinician", "rad1": "radiologist", "ada": "admin", "stroke1": "stroke"}


def seed_study(services) -> dict:
    """A synthetic head CT stored, with its signed report in English and Traditional Chinese."""
    src = services.settings.data_dir.parent / "src"
    folder = synthesize("ct-head", 1, 7, src, {"positive": False, "matrix": 64})[0]
    assert import_folder(services.store, folder).stored > 0
    files = sorted(folder.glob("*.dcm"))
    study_uid = str(pydicom.dcmread(files[0]).StudyInstanceUID)
    now = dt.datetime.now(dt.UTC)
    body = {"en": {"sections": {"findings": FINDINGS, "impression": "Normal CT head."},
                   "headings": {"findings": "Findings", "impression": "Impression"}},
            "zh-Hant": {"sections": {"findings": "沒有急性顱內出血。", "impression": "頭部電腦掃描正常。"},
                        "headings": {"findings": "結果", "impression": "印象"}}}
    with services.db.write() as conn:
        report = report_rows.create(conn, study_uid, body, [], now, "rad1")
        report_rows.sign(conn, report, 1, "Dr Rad One", ["en", "zh-Hant"], now)
    return {"study": study_uid, "count": len(files)}


@pytest.fixture(scope="module")
def site(tmp_path_factory, database_url):
    """The API with the study, on SQLite and on PostgreSQL (`database_url`, from the DICOMweb read tests)."""
    from radtriage.api import create_app
    from radtriage.config import load_settings
    from radtriage.service import build_services

    tmp = tmp_path_factory.mktemp("shares")
    settings = load_settings(config_file=tmp / "absent.yaml", data_dir=tmp / "data", dicom_host="127.0.0.1",
                             dicom_port=0, min_free_bytes=0, inference={"enabled": False}, alerting_file=None,
                             database_url=database_url)
    services = build_services(settings)
    for name, role in USERS.items():
        accounts.add_user(services.db, name, role, PASSWORD)
    seeded = seed_study(services)
    with TestClient(create_app(services)) as api:
        tokens = {u: {"Authorization": f"Bearer {accounts.issue_token(services.db, u)}"} for u in USERS}
        yield {"api": api, "services": services, "auth": tokens, "data": settings.data_dir, **seeded}
    services.close()


def issue(site, user="cli1", **body) -> dict:
    request = {"consent": "patient", "legal_basis": "PDPO DPP3: consent to cross-boundary care",
               "audience": "anyone", "expires_in_hours": 48, "max_opens": 3, **body}
    r = site["api"].post(f"/api/v1/studies/{site['study']}/shares", json=request, headers=site["auth"][user])
    assert r.status_code == 201, r.text
    return r.json()


def holder(site) -> TestClient:
    """A fresh browser-like client (its own cookies) on the same app."""
    return TestClient(site["api"].app)


def open_share(client: TestClient, issued: dict, passcode: str | None = None, **form) -> object:
    path, _, key = issued["link"].partition("#")
    share_path = "/s/" + path.split("/s/")[1]
    return client.post(share_path + "/open", data={"key": key, "passcode": passcode or issued["passcode"],
                                                   "lang": "en", **form}, follow_redirects=True)


def test_a_share_opens_within_its_limits(site, tmp_path: Path) -> None:
    issued = issue(site)
    link = issued["link"]
    assert "#" in link and PATIENT not in link and site["study"] not in link
    assert issued["share"]["instances"] == site["count"] and issued["share"]["state"] == "open"
    api, auth = site["api"], site["auth"]["cli1"]
    png = api.post(issued["qr_png"], json={"link": link}, headers=auth)
    svg = api.post(issued["qr_svg"], json={"link": link}, headers=auth)
    assert png.headers["content-type"] == "image/png" and Image.open(io.BytesIO(png.content)).size[0] > 200
    assert svg.headers["content-type"].startswith("image/svg+xml") and b"<svg" in svg.content
    assert api.post(issued["qr_png"], json={"link": link.split("#")[0] + "#x" + link[-10:]},
                    headers=auth).status_code == 200  # any key: the server cannot tell (it keeps none)
    assert api.post(issued["qr_png"], json={"link": "http://x/s/other#k"}, headers=auth).status_code == 422

    client = holder(site)
    form = client.get("/s/" + link.split("/s/")[1].split("#")[0])
    assert form.status_code == 200 and 'name="passcode"' in form.text and "cannot be recalled" in form.text
    view = open_share(client, issued)
    assert view.status_code == 200 and view.url.path.endswith("/view")
    assert FINDINGS in view.text and PATIENT in view.text and "SHARED COPY" in view.text
    assert "cannot be recalled" in view.text
    zh = client.get(view.url.path, params={"lang": "zh-Hant"})
    assert "沒有急性顱內出血。" in zh.text and "已下載的副本無法收回" in zh.text

    share_path = view.url.path.rsplit("/view", 1)[0]
    frame = client.get(f"{share_path}/frames/i00010/0.png", params={"w": "brain"})
    assert frame.status_code == 200 and frame.headers["content-type"] == "image/png"
    img = Image.open(io.BytesIO(frame.content))
    assert img.mode == "L" and img.size[0] >= 64
    bone = client.get(f"{share_path}/frames/i00010/0.png", params={"w": "bone"})
    assert bone.content != frame.content  # another window, other pixels

    zipped = client.get(f"{share_path}/download.zip")
    assert zipped.status_code == 200 and zipped.headers["content-type"] == "application/zip"
    out = tmp_path / "zip"
    zipfile.ZipFile(io.BytesIO(zipped.content)).extractall(out)
    dicomdir = pydicom.dcmread(out / "DICOMDIR")
    images = [r for r in dicomdir.DirectoryRecordSequence if r.DirectoryRecordType == "IMAGE"]
    assert len(images) == site["count"]
    from pydicom.fileset import FileSet

    fs = FileSet(dicomdir)
    sops = {str(i.ReferencedSOPInstanceUIDInFile) for i in fs}
    assert len(sops) == site["count"]
    dcmdump = need_binary("dcmdump")
    for inst in fs:
        path = Path(inst.path)
        run = subprocess.run([dcmdump, "-q", str(path)], capture_output=True, text=True, timeout=60)
        assert run.returncode == 0 and "OriginalAttributesSequence" in run.stdout, run.stderr
    ds = pydicom.dcmread(next(p for p in out.rglob("IM*") if "SE000001" in str(p)))
    assert str(ds.ImageComments).startswith("SHARED COPY")
    assert ds.OriginalAttributesSequence[-1].ReasonForTheAttributeModification == "COERCE"
    assert str(ds.StudyInstanceUID) == site["study"]  # UIDs kept

    listed = api.get(f"/api/v1/studies/{site['study']}/shares", headers=auth).json()
    mine = next(s for s in listed["shares"] if s["id"] == issued["id"])
    assert mine["opens"] == 1 and mine["consent"] == "patient" and mine["legal_basis"].startswith("PDPO")
    _, trail = audit.entries(site["services"].db, study_uid=site["study"], limit=1000)
    ours = [e for e in trail if e["detail"].get("share") == issued["id"]]
    assert {"share_issued", "share_opened", "share_viewed", "share_downloaded"} <= {e["action"] for e in ours}
    for e in trail:
        assert PATIENT not in str(e["detail"]) and issued["passcode"] not in str(e["detail"])
        assert link.split("#")[1] not in str(e["detail"])


def _folder(site, share_id: int) -> str:
    with site["services"].db.read() as conn:
        return conn.execute(shares.select().where(shares.c.id == share_id)).mappings().one()["folder"]


def test_expired_revoked_used_up_and_locked_shares_are_refused_with_a_clear_page(site) -> None:
    db = site["services"].db
    expired = issue(site)
    with db.write() as conn:
        conn.execute(update(shares).where(shares.c.id == expired["id"])
                     .values(expires_at=dt.datetime.now(dt.UTC) - dt.timedelta(minutes=1)))
    r = open_share(holder(site), expired)
    assert r.status_code == 410 and "This share has expired." in r.text
    assert holder(site).get(expired["link"].split("#")[0]).status_code == 410
    folder = _folder(site, expired["id"])
    assert (shares_root(site["data"]) / folder).is_dir()
    issue(site)  # issuing purges the sealed copies of shares that ended
    assert not (shares_root(site["data"]) / folder).exists()

    revoked = issue(site)
    client = holder(site)
    assert open_share(client, revoked).status_code == 200  # opened, then revoked: the session ends too
    view_path = "/s/" + revoked["link"].split("/s/")[1].split("#")[0] + "/view"
    assert site["api"].delete(f"/api/v1/shares/{revoked['id']}", headers=site["auth"]["cli2"]).status_code == 403
    gone = site["api"].delete(f"/api/v1/shares/{revoked['id']}", headers=site["auth"]["cli1"])
    assert gone.status_code == 200 and "cannot be recalled" in gone.json()["notice"]
    assert site["api"].post(f"/api/v1/shares/{revoked['id']}/revoke",
                            headers=site["auth"]["ada"]).status_code == 409
    r = client.get(view_path)
    assert r.status_code == 410 and "revoked" in r.text
    assert holder(site).get(view_path).status_code == 410  # revoked says so before asking for a session
    live = issue(site)
    r = holder(site).get("/s/" + live["link"].split("/s/")[1].split("#")[0] + "/view")
    assert r.status_code == 403 and "opened again" in r.text and "Open the share again" in r.text
    r = open_share(holder(site), revoked)
    assert r.status_code == 410 and "revoked by the clinician" in r.text
    assert not (shares_root(site["data"]) / _folder(site, revoked["id"])).exists()  # its sealed copy deleted

    once = issue(site, max_opens=1)
    assert open_share(holder(site), once).status_code == 200
    r = open_share(holder(site), once)
    assert r.status_code == 410 and "opened as many times as allowed" in r.text

    locked = issue(site)
    for n in range(1, 5):
        r = open_share(holder(site), locked, passcode="00000000")
        assert r.status_code == 403 and "Wrong passcode." in r.text and f"locks: {5 - n}." in r.text
    r = open_share(holder(site), locked, passcode="00000000")
    assert r.status_code == 423 and "locked" in r.text
    r = open_share(holder(site), locked)  # the right passcode, too late
    assert r.status_code == 423
    bad_key = issue(site)
    path = bad_key["link"].split("#")[0]
    r = holder(site).post("/s/" + path.split("/s/")[1] + "/open",
                          data={"key": "A" * 43, "passcode": bad_key["passcode"]})
    assert r.status_code == 403 and "incomplete or damaged" in r.text
    assert holder(site).get("/s/AAAAAAAAAAAAAAAAAAAAAA").status_code == 404
    states = {s["id"]: s["state"] for s in site["api"].get(
        f"/api/v1/studies/{site['study']}/shares", headers=site["auth"]["cli1"]).json()["shares"]}
    assert [states[x["id"]] for x in (expired, revoked, once, locked, bad_key)] == \
        ["expired", "revoked", "used up", "locked", "open"]
    actions = [e["action"] for e in audit.entries(db, study_uid=site["study"], limit=1000)[1]]
    assert actions.count("share_passcode_failed") >= 5 and "share_revoked" in actions


def test_the_sealed_copy_cannot_be_read_without_the_key(site) -> None:
    issued = issue(site)
    files = sorted((shares_root(site["data"]) / _folder(site, issued["id"])).iterdir())
    assert len(files) == site["count"] + 1  # the instances and the manifest
    for f in files:
        data = f.read_bytes()
        assert b"DICM" not in data and PATIENT.encode() not in data and b"1.2.826" not in data
        with pytest.raises(WrongKey):
            unseal(new_key(), f.name, data)


def test_a_receiving_hospital_pulls_the_study_by_wado_rs_with_its_token(site) -> None:
    api = site["api"]
    issued = issue(site, audience="hospital", recipient="Shenzhen Hospital", max_opens=2)
    key = issued["link"].split("#")[1]
    base, token = issued["dicomweb"], issued["recipient_token"]
    url = base.split("://", 1)[1].split("/", 1)[1]
    study = f"/{url}/studies/{site['study']}"
    assert api.get(study).status_code == 401
    assert api.get(study, headers={"Authorization": f"Bearer rh_wrong.{key}"}).status_code == 403
    r = api.get(study, headers={"Authorization": f"Bearer {token}.{key}",
                                "Accept": 'multipart/related; type="application/dicom"'})
    assert r.status_code == 200 and r.headers["content-type"].startswith("multipart/related")
    message = BytesParser(policy=HTTP).parsebytes(
        b"Content-Type: " + r.headers["content-type"].encode() + b"\r\n\r\n" + r.content)
    parts = [pydicom.dcmread(io.BytesIO(p.get_content())) for p in message.iter_parts()]
    assert len(parts) == site["count"] and all(str(p.StudyInstanceUID) == site["study"] for p in parts)
    meta = api.get(f"{study}/metadata", headers={"Authorization": f"Bearer {token}.{key}"})
    assert meta.status_code == 200 and len(meta.json()) == site["count"]
    # the page asks the hospital's token too
    assert open_share(holder(site), issued).status_code == 403
    assert open_share(holder(site), issued, hospital_token=token).status_code == 200
    r = api.get(study, headers={"Authorization": f"Bearer {token}.{key}"})
    assert r.status_code == 410  # two opens: one by WADO-RS, one by the page
    trail = audit.entries(site["services"].db, study_uid=site["study"], limit=1000)[1]
    pulled = [e for e in trail if e["action"] == "share_retrieved" and e["detail"]["share"] == issued["id"]]
    assert pulled and all(e["actor"] == "hospital:Shenzhen Hospital" for e in pulled)


def test_who_may_issue_and_what_is_required(site) -> None:
    api, study = site["api"], site["study"]
    body = {"consent": "patient", "legal_basis": "consent", "audience": "anyone", "expires_in_hours": 24}
    assert api.post(f"/api/v1/studies/{study}/shares", json=body, headers=site["auth"]["stroke1"]).status_code == 403
    assert api.post(f"/api/v1/studies/{study}/shares", json=body).status_code == 401
    for role in ("rad1", "ada"):
        assert api.post(f"/api/v1/studies/{study}/shares", json=body, headers=site["auth"][role]).status_code == 201
    for missing in ("consent", "legal_basis", "expires_in_hours"):
        r = api.post(f"/api/v1/studies/{study}/shares", json={k: v for k, v in body.items() if k != missing},
                     headers=site["auth"]["cli1"])
        assert r.status_code == 422, missing
    for bad in ({"expires_in_hours": 24 * 31}, {"max_opens": 0}, {"audience": "hospital"},
                {"scope": "key_images"}, {"scope": "key_images", "key_images": ["1.2.3"]}):
        r = api.post(f"/api/v1/studies/{study}/shares", json={**body, **bad}, headers=site["auth"]["cli1"])
        assert r.status_code in (404, 422), (bad, r.text)
    assert api.post("/api/v1/studies/1.2.3/shares", json=body, headers=site["auth"]["cli1"]).status_code == 404
    sop = pydicom.dcmread(next((site["data"] / "spool").rglob("*.dcm"))).SOPInstanceUID
    keyed = issue(site, scope="key_images", key_images=[str(sop)])
    assert keyed["share"]["instances"] == 1


def test_a_pacs_imports_the_zip_and_dicomweb_client_pulls_the_hospitals_share(site, tmp_path: Path) -> None:
    """The receiving end with real parts: Orthanc takes every file of the zip (as a PACS imports media), and
    dicomweb-client, as a hospital's system, retrieves the share with its token."""
    import requests
    from dicomweb_client.api import DICOMwebClient

    from tests.helpers import serving, start_orthanc, stop_process

    issued = issue(site, audience="hospital", recipient="Guangzhou Hospital", max_opens=3)
    key, token = issued["link"].split("#")[1], issued["recipient_token"]
    with serving(site["api"].app) as url:
        base = url + "/s/" + issued["dicomweb"].split("/s/", 1)[1]
        client = DICOMwebClient(url=base, headers={"Authorization": f"Bearer {token}.{key}"})
        pulled = client.retrieve_study(site["study"])
        assert len(pulled) == site["count"]
        assert all(str(ds.ImageComments).startswith("SHARED COPY") for ds in pulled if "PixelData" in ds)
        holder_client = requests.Session()
        path = "/s/" + issued["link"].split("/s/")[1].split("#")[0]
        r = holder_client.post(url + path + "/open", data={"key": key, "passcode": issued["passcode"],
                                                           "hospital_token": token})
        assert r.status_code == 200
        zipped = holder_client.get(url + path + "/download.zip")
        assert zipped.status_code == 200
    out = tmp_path / "media"
    zipfile.ZipFile(io.BytesIO(zipped.content)).extractall(out)
    proc, _, http_port = start_orthanc(tmp_path / "orthanc")
    try:
        api = f"http://127.0.0.1:{http_port}"
        for f in sorted(p for p in out.rglob("*") if p.is_file() and p.name != "DICOMDIR"):
            assert requests.post(api + "/instances", data=f.read_bytes(), timeout=30).status_code == 200, f
        (study,) = requests.get(api + "/studies", timeout=30).json()
        found = requests.get(f"{api}/studies/{study}", timeout=30).json()
        assert found["MainDicomTags"]["StudyInstanceUID"] == site["study"]
        n = sum(len(requests.get(f"{api}/series/{s}", timeout=30).json()["Instances"]) for s in found["Series"])
        assert n == site["count"]
    finally:
        stop_process(proc)
