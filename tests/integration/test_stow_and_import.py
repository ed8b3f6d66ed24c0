"""STOW-RS and folder import go through the same store as C-STORE."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import uuid
from pathlib import Path

import pydicom
import pytest
from fastapi.testclient import TestClient
from pydicom.fileset import FileSet

from radtriage.api import create_app
from radtriage.db import accounts, instances
from radtriage.ingest.importer import import_folder
from tests.helpers import make_ct_series


def multipart(parts: list[bytes], boundary: str | None = None) -> tuple[bytes, str]:
    boundary = boundary or uuid.uuid4().hex
    body = b"".join(
        b"--" + boundary.encode() + b"\r\nContent-Type: application/dicom\r\n\r\n" + p + b"\r\n"
        for p in parts
    ) + b"--" + boundary.encode() + b"--\r\n"
    return body, f'multipart/related; type="application/dicom"; boundary={boundary}'


def stow_client(services) -> TestClient:
    """A client with the bearer token of a service account (STOW-RS needs one)."""
    accounts.add_user(services.db, "pacs", "service")
    token = accounts.issue_token(services.db, "pacs")
    return TestClient(create_app(services), headers={"authorization": f"Bearer {token}"})


@pytest.fixture
def client(services):
    return stow_client(services)


def test_stow_stores_and_answers_dicom_json(client, services, tmp_path):
    files = make_ct_series(tmp_path / "s", 3)
    body, ctype = multipart([f.read_bytes() for f in files])
    r = client.post("/dicomweb/studies", content=body, headers={"content-type": ctype})
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("application/dicom+json")
    refs = r.json()["00081199"]["Value"]
    assert len(refs) == 3
    stored = {row["sop_instance_uid"] for row in instances.instance_rows(services.db)}
    assert {ref["00081155"]["Value"][0] for ref in refs} == stored
    assert all(row["source"] == "stow" for row in instances.instance_rows(services.db))
    # the stored file is the part's bytes
    row = instances.instance_rows(services.db)[0]
    assert Path(row["path"]).read_bytes() in {f.read_bytes() for f in files}


def test_stow_partial_failure_is_202_with_reasons(client, services, tmp_path):
    good = make_ct_series(tmp_path / "s", 1)[0].read_bytes()
    truncated = good[: len(good) - 1000]
    body, ctype = multipart([good, b"\x00" * 128 + b"DICM" + b"garbage" * 10, truncated])
    r = client.post("/dicomweb/studies", content=body, headers={"content-type": ctype})
    assert r.status_code == 202
    failed = r.json()["00081198"]["Value"]
    assert sorted(f["00081197"]["Value"][0] for f in failed) == [0xC000, 0xC000]
    assert len(instances.instance_rows(services.db)) == 1


def test_stow_all_failed_is_409_and_wrong_study_refused(client, services, tmp_path):
    f = make_ct_series(tmp_path / "s", 1)[0].read_bytes()
    body, ctype = multipart([f])
    r = client.post("/dicomweb/studies/1.2.3.4", content=body, headers={"content-type": ctype})
    assert r.status_code == 409
    assert r.json()["00081198"]["Value"][0]["00081197"]["Value"] == [0xA900]
    assert instances.instance_rows(services.db) == []


@pytest.mark.parametrize(
    "ctype,status",
    [
        ("application/json", 415),
        ('multipart/related; type="application/dicom+xml"; boundary=x', 415),
        ('multipart/related; type="application/dicom"', 400),
    ],
)
def test_stow_bad_requests_are_problem_details(client, ctype, status):
    r = client.post("/dicomweb/studies", content=b"--x--\r\n", headers={"content-type": ctype})
    assert r.status_code == status
    assert r.headers["content-type"] == "application/problem+json"
    assert r.json()["status"] == status


def test_stow_part_over_the_size_limit_is_refused(make_settings, tmp_path):
    from radtriage.service import build_services

    svc = build_services(make_settings(max_upload_bytes=10_000))
    try:
        f = make_ct_series(tmp_path / "s", 1)[0].read_bytes()
        assert len(f) > 10_000
        body, ctype = multipart([f])
        r = stow_client(svc).post("/dicomweb/studies", content=body, headers={"content-type": ctype})
        assert r.status_code == 413
        assert r.json()["00081198"]["Value"][0]["00081197"]["Value"] == [0xA701]
        assert instances.instance_rows(svc.db) == []
    finally:
        svc.close()


def test_import_folder_and_dicomdir_media(services, tmp_path):
    # a CD-like medium: DICOMDIR + extensionless upper-case files, plus junk
    files = make_ct_series(tmp_path / "src", 3)
    fs = FileSet()
    for f in files:
        fs.add(pydicom.dcmread(f))
    media = tmp_path / "media"
    fs.write(media)
    (media / "README.TXT").write_text("not dicom")
    (media / "sub").mkdir()
    shutil.copy(files[0], media / "sub" / "again.dcm")  # a duplicate, recursive
    report = import_folder(services.store, media)
    assert report.stored == 3 and report.duplicates == 1
    assert {Path(p).name for p, _ in report.skipped} == {"README.TXT", "DICOMDIR"}
    assert len(instances.instance_rows(services.db)) == 3


def test_import_dicomdir_cannot_point_outside_its_medium(services, tmp_path):
    from radtriage.ingest.importer import candidate_files

    outside = make_ct_series(tmp_path / "outside", 1)[0]
    media = tmp_path / "media"
    media.mkdir()
    fs = FileSet()
    fs.add(pydicom.dcmread(make_ct_series(tmp_path / "in", 1)[0]))
    fs.write(media)
    ds = pydicom.dcmread(media / "DICOMDIR")
    for rec in ds.DirectoryRecordSequence:
        if "ReferencedFileID" in rec:
            rec.ReferencedFileID = ["..", "outside", outside.name]
    ds.save_as(media / "DICOMDIR")
    assert outside.resolve() not in candidate_files(media)


def test_cli_import_and_studies(tmp_path):
    files = make_ct_series(tmp_path / "src", 2, StudyDescription="CT CHEST")
    (tmp_path / "src" / "notes.txt").write_text("hello")
    env = {"RADTRIAGE_DATA_DIR": str(tmp_path / "data"), "RADTRIAGE_CONFIG_FILE": str(tmp_path / "none.yaml"),
           "PATH": "/usr/bin:/bin"}
    r = subprocess.run([sys.executable, "-m", "radtriage.cli", "import", str(tmp_path / "src")],
                       capture_output=True, text=True, env=env, timeout=120)
    assert r.returncode == 0, r.stderr
    assert "stored 2" in r.stdout and "notes.txt" in r.stdout
    r = subprocess.run([sys.executable, "-m", "radtriage.cli", "studies", "--json"],
                       capture_output=True, text=True, env=env, timeout=120)
    studies = json.loads(r.stdout)
    assert studies[0]["study_description"] == "CT CHEST"
    assert studies[0]["series"][0]["instances"] == 2
    assert studies[0]["series"][0]["state"] == "receiving"
    assert len(files) == 2


@pytest.mark.parametrize("http_host", ["127.0.0.1", "0.0.0.0"])
def test_stow_needs_a_service_token_wherever_the_api_listens(make_settings, tmp_path, http_host):
    from radtriage.service import build_services

    f = make_ct_series(tmp_path / "s", 1)[0].read_bytes()
    body, ctype = multipart([f])
    svc = build_services(make_settings(http_host=http_host))
    try:
        c = TestClient(create_app(svc))
        for auth in ({}, {"authorization": "Bearer wrong"}):
            r = c.post("/dicomweb/studies", content=body, headers={"content-type": ctype, **auth})
            assert r.status_code == 401
        assert instances.instance_rows(svc.db) == []
        r = stow_client(svc).post("/dicomweb/studies", content=body, headers={"content-type": ctype})
        assert r.status_code == 200
    finally:
        svc.close()
