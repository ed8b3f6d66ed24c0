"""Series assembly: quiet period after the association closes, stable-age
fallback, reopening on a late instance, localizers marked. Runs on SQLite and
PostgreSQL; the clock is passed in, so no test sleeps for the periods."""

from __future__ import annotations

import time
from datetime import timedelta
from pathlib import Path

import pydicom
import pytest

from radtriage.assembly.complete import close_ready_series
from radtriage.db import associations, clock, instances, ledger
from radtriage.ingest.store import Origin
from radtriage.service import build_services
from tests.helpers import make_ct_series, storescu

QUIET = timedelta(seconds=1)
STABLE = timedelta(seconds=15)


@pytest.fixture
def svc(make_settings, db_url):
    s = build_services(make_settings(database_url=db_url, quiet_period_s=1.0, stable_age_s=15.0))
    yield s
    s.close()


def _store_all(svc, files: list[Path], assoc_id: str | None) -> None:
    origin = Origin("dimse", "CT1", assoc_id)
    for f in files:
        svc.store.store_instance([f.read_bytes()], origin)


def _close(svc, after: timedelta):
    last = max(r["received_at"] for r in instances.instance_rows(svc.db))
    last = clock.aware(last)
    return close_ready_series(
        svc.db, QUIET, STABLE, lambda c: {"case_id": f"{c.series_uid}/v{c.version}"}, now=last + after
    )


def test_open_association_holds_the_series_until_stable_age(svc, tmp_path):
    associations.open_association(svc.db, "a1", "CT1", "127.0.0.1")
    _store_all(svc, make_ct_series(tmp_path / "s", 5), "a1")
    assert _close(svc, timedelta(seconds=5)) == []  # association still open
    closed = _close(svc, STABLE + timedelta(seconds=1))
    assert [c.reason for c in closed] == ["stable_age"]
    assert closed[0].instance_count == 5


def test_quiet_period_after_release(svc, tmp_path):
    associations.open_association(svc.db, "a2", "CT1", "127.0.0.1")
    _store_all(svc, make_ct_series(tmp_path / "s", 4), "a2")
    associations.close_association(svc.db, "a2", "released")
    # within the quiet period: not yet (the close happened "now", so look from there)
    assert close_ready_series(svc.db, QUIET, STABLE, lambda c: {"case_id": "x"}) == []
    closed = _close(svc, QUIET + timedelta(seconds=2))
    assert len(closed) == 1 and closed[0].reason == "quiet"
    jobs = ledger.job_rows(svc.db)
    assert [(j["state"], j["series_version"]) for j in jobs] == [("ready", 1)]
    # closing again finds nothing: one job per series version
    assert _close(svc, QUIET + timedelta(seconds=3)) == []


def test_late_instance_reopens_as_new_version(svc, tmp_path):
    files = make_ct_series(tmp_path / "s", 6)
    _store_all(svc, files[:5], None)  # STOW / import: no association
    assert len(_close(svc, QUIET + timedelta(seconds=1))) == 1
    _store_all(svc, files[5:], None)
    closed = _close(svc, QUIET + timedelta(seconds=1))
    assert len(closed) == 1 and closed[0].version == 2 and closed[0].instance_count == 6
    jobs = ledger.job_rows(svc.db)
    assert [j["case_id"].rsplit("/", 1)[1] for j in jobs] == ["v1", "v2"]
    assert len(instances.instance_rows(svc.db)) == 6  # nothing dropped


def test_localizers_are_stored_and_marked(svc, tmp_path):
    images = make_ct_series(tmp_path / "s", 3)
    series_uid = pydicom.dcmread(images[0]).SeriesInstanceUID
    study_uid = pydicom.dcmread(images[0]).StudyInstanceUID
    scout = make_ct_series(
        tmp_path / "scout", 1, StudyInstanceUID=study_uid, SeriesInstanceUID=series_uid,
        ImageType=["ORIGINAL", "PRIMARY", "LOCALIZER"],
    )
    _store_all(svc, scout + images, None)
    rows = instances.instance_rows(svc.db)
    assert sorted(r["is_localizer"] for r in rows) == [False, False, False, True]
    closed = _close(svc, QUIET + timedelta(seconds=1))
    assert closed[0].localizer_count == 1
    # the series header describes the images, not the scout
    assert "LOCALIZER" not in closed[0].header["ImageType"]


@pytest.mark.dcmtk
def test_storescu_series_becomes_a_triage_case(runtime, services, tmp_path):
    files = make_ct_series(tmp_path / "s", 8, StudyDescription="CT HEAD", BodyPartExamined="HEAD")
    r = storescu(runtime.scp.port, files, "CT_ED_1")
    assert r.returncode == 0, r.stderr
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and not ledger.job_rows(services.db):
        time.sleep(0.05)
    jobs = ledger.job_rows(services.db)
    assert len(jobs) == 1
    case = jobs[0]["case"]
    assert case["instance_count"] == 8 and case["calling_ae"] == "CT_ED_1"
    assert case["header"]["Modality"] == "CT" and case["header"]["BodyPartExamined"] == "HEAD"
    assert jobs[0]["state"] == "ready" and "status" not in case  # the job row says where it stands
    folder = Path(case["instances_uri"].removeprefix("file://"))
    assert len(list(folder.glob("*.dcm"))) == 8
    # no patient identifiers ride in the case header
    assert "PatientName" not in case["header"] and "PatientID" not in case["header"]
