"""`/api/v1/dose`: physicists and admins only; examinations (JSON, CSV, XLSX), local DRLs (JSON, CSV, XLSX),
each reading audited."""

from __future__ import annotations

import datetime as dt
import io
from pathlib import Path

import pytest

from radtriage.db import audit
from radtriage.dose.model import DoseEvent, DoseReport, PatientDose
from radtriage.dose.registry import load_registry
from tests.integration.test_worklist_api import api  # noqa: F401 - fixture

ROOT = Path(__file__).parents[2]


@pytest.fixture
def dose_api(api):  # noqa: F811
    from radtriage.db import accounts

    accounts.add_user(api.services.db, "physicist1", "physicist", "a-long-enough-password-1")
    api.as_["physicist"] = {"Authorization": f"Bearer {accounts.issue_token(api.services.db, 'physicist1')}"}
    return api


def _seed(db) -> None:
    registry = load_registry(db, ROOT / "configs" / "dose.yaml")
    reports = []
    for i, (facility, ctdi) in enumerate([("A", 50.0), ("A", 70.0), ("B", 40.0), ("C", 65.0)]):
        ev = DoseEvent(kind="ct", protocol="ROUTINE HEAD", target_region="Head", phantom_cm=16, ctdivol=ctdi,
                       dlp=ctdi * 15)
        reports.append(DoseReport(study_uid=f"1.2.9.{i}", series_uid=f"1.2.9.{i}.1", sop_instance_uid=f"1.2.9.{i}.1.1",
                                  modality="CT", source="rdsr", estimated=False, events=(ev,), dlp_total=ctdi * 15,
                                  patient=PatientDose(age_years=50), facility=facility, station=f"{facility}CT",
                                  performed_at=dt.datetime(2026, 11, 1 + i, tzinfo=dt.UTC), protocol="ROUTINE HEAD"))
    registry.add_reports(reports)


@pytest.mark.parametrize("role,status", [("physicist", 200), ("admin", 200), ("radiologist", 403), ("stroke", 403)])
def test_who_may_read_the_registry(dose_api, role, status):
    assert dose_api.get("/api/v1/dose/exams", headers=dose_api.as_[role]).status_code == status
    assert dose_api.get("/api/v1/dose/local-drl", headers=dose_api.as_[role]).status_code == status


def test_exams_and_local_drls(dose_api):
    api = dose_api
    _seed(api.services.db)
    who = api.as_["physicist"]
    body = api.get("/api/v1/dose/exams", headers=who).json()
    assert len(body["exams"]) == 4 and "mGy" in body["units"]
    flagged = api.get("/api/v1/dose/exams", params={"flagged": True}, headers=who).json()["exams"]
    assert sorted(e["ctdivol"] for e in flagged) == [65.0, 70.0]  # above the example's 60 mGy
    assert all("x the DRL" in e["flags"][0] for e in flagged)
    csv_text = api.get("/api/v1/dose/exams", params={"format": "csv"}, headers=who).text
    assert csv_text.splitlines()[1].startswith("study_uid,performed_at")
    table = api.get("/api/v1/dose/local-drl", headers=who).json()
    (row,) = [r for r in table["rows"] if r["quantity"] == "CTDIvol"]
    # medians: A 60, B 40, C 65 -> sorted 40, 60, 65: P75 = 60 + 0.5 * 5 = 62.5, P25 = 40 + 0.5 * 20 = 50
    assert (row["drl"], row["achievable"], row["groups"], row["exams"]) == (62.5, 50.0, 3, 4)
    assert "linear interpolation" in table["method"]
    xlsx = api.get("/api/v1/dose/local-drl", params={"format": "xlsx"}, headers=who)
    assert xlsx.status_code == 200 and xlsx.content[:2] == b"PK"
    from openpyxl import load_workbook

    assert load_workbook(io.BytesIO(api.get("/api/v1/dose/exams", params={"format": "xlsx"}, headers=who).content))
    assert audit.entries(api.services.db, action="dose_local_drl_viewed")[0] == 2
    assert api.get("/api/v1/dose/exams", params={"since": "yesterday"}, headers=who).status_code == 400
