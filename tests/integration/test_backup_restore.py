"""Backup and restore as docs/operations.md says (scripts/backup.sh, scripts/restore.sh): taken while
the service runs, restored into a new data directory (and a new database), the copy serves the same
worklist and study pages, to the same accounts, with the same stored files."""

from __future__ import annotations

import hashlib
import subprocess
import time
import uuid
from pathlib import Path

import pydicom
import pytest
from fastapi.testclient import TestClient

from radtriage.api import create_app
from radtriage.db import accounts
from radtriage.service import Runtime, build_services
from tests.helpers import REPO, make_ct_series
from tests.integration.test_stow_and_import import multipart

VOLATILE = {"waiting_min"}  # counted from now: differs between two requests


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def databases(request: pytest.FixtureRequest, tmp_path: Path):
    """(original, restored) database URLs: None is SQLite in each data directory."""
    if request.param == "sqlite":
        yield None, None
        return
    import psycopg

    server = request.getfixturevalue("postgres_server")
    original = request.getfixturevalue("postgres_url")
    name = f"rt_{uuid.uuid4().hex[:12]}_restored"
    with psycopg.connect(f"{server} dbname=test", autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    yield original, f"postgresql+psycopg://127.0.0.1:5432/{name}"
    with psycopg.connect(f"{server} dbname=test", autocommit=True) as conn:
        conn.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s", (name,))
        conn.execute(f'DROP DATABASE IF EXISTS "{name}"')


def _script(name: str, *args: str) -> str:
    done = subprocess.run(["sh", str(REPO / "scripts" / name), *args], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout + done.stderr


def _stable(value):
    """The JSON without the fields counted from now."""
    if isinstance(value, dict):
        return {k: _stable(v) for k, v in value.items() if k not in VOLATILE}
    if isinstance(value, list):
        return [_stable(v) for v in value]
    return value


def _get(client: TestClient, url: str, headers: dict):
    r = client.get(url, headers=headers)
    assert r.status_code == 200, r.text
    return _stable(r.json())


def _worklist(client: TestClient, headers: dict) -> list[dict]:
    return _get(client, "/api/v1/worklist", headers)["items"]


def _digests(root: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in root.rglob("*.dcm")}


def test_a_restored_copy_serves_the_same_worklist(make_settings, databases, tmp_path):
    original_url, restored_url = databases
    settings = make_settings(data_dir=tmp_path / "a", database_url=original_url)
    services = build_services(settings)
    runtime = Runtime(services)  # listener, assembly and triage, as `radtriage serve` runs them
    runtime.start()
    try:
        for who, role in (("pacs", "service"), ("reader", "radiologist")):
            accounts.add_user(services.db, who, role, None if role == "service" else "correct horse battery")
        pacs = {"Authorization": f"Bearer {accounts.issue_token(services.db, 'pacs')}"}
        reader = {"Authorization": f"Bearer {accounts.issue_token(services.db, 'reader')}"}
        client = TestClient(create_app(services, runtime))
        studies = []
        for i in range(2):  # two studies of three instances, stored through STOW-RS
            files = make_ct_series(tmp_path / f"sent{i}", 3)
            body, ctype = multipart([f.read_bytes() for f in files])
            r = client.post("/dicomweb/studies", content=body, headers={"content-type": ctype, **pacs})
            assert r.status_code == 200, r.text
            studies.append(pydicom.dcmread(files[0], stop_before_pixels=True).StudyInstanceUID)
        deadline = time.monotonic() + 60
        while len(_worklist(client, reader)) < 2 and time.monotonic() < deadline:
            time.sleep(0.1)  # assembly: quiet period, then the series is a job and its study a row
        assert len(_worklist(client, reader)) == 2
        r = client.post(f"/api/v1/studies/{studies[0]}/claim", headers=reader)
        assert r.status_code == 200, r.text

        out = _script("backup.sh", str(settings.data_dir), str(tmp_path / "backup"), original_url or "")
        assert "backup:" in out
    finally:
        runtime.stop()
    before = _worklist(client, reader)
    detail_before = _get(client, f"/api/v1/studies/{studies[0]}", reader)
    services.close()
    assert {i["study_uid"] for i in before} == set(studies)
    assert [i["claimed_by"] for i in before if i["study_uid"] == studies[0]] == ["reader"]

    _script("restore.sh", str(tmp_path / "backup"), str(tmp_path / "b"), restored_url or "")
    copy = build_services(make_settings(data_dir=tmp_path / "b", database_url=restored_url))
    try:
        with TestClient(create_app(copy)) as restored:  # the same tokens: the accounts came back too
            assert _worklist(restored, reader) == before
            assert _get(restored, f"/api/v1/studies/{studies[0]}", reader) == detail_before
    finally:
        copy.close()
    assert _digests(tmp_path / "b" / "spool") == _digests(tmp_path / "a" / "spool")
    assert len(_digests(tmp_path / "b" / "spool")) == 6
