"""SSDE through the real store, assembly and dose registry (SQLite and PostgreSQL): an abdomen CT's RDSR and
its image series (a water cylinder) give the examination its water-equivalent diameter from the pixels and
its SSDE from the RDSR's CTDIvol; the API's JSON, CSV and XLSX carry both."""

from __future__ import annotations

import csv
import datetime as dt
import io
import math
from pathlib import Path

import numpy as np
import pytest

from radtriage.db.tables import dose_exams, dose_reads
from radtriage.dose.model import DoseEvent, DoseReport, PatientDose
from radtriage.dose.registry import load_registry
from radtriage.synth.dicom import CtSeries, make_study, write_ct_series
from radtriage.synth.rdsr import ct_report, write_rdsr
from tests.integration.test_dose_api import dose_api  # noqa: F401 - fixture
from tests.integration.test_dose_registry import _close, _rows, _store, svc  # noqa: F401 - fixture
from tests.integration.test_worklist_api import api  # noqa: F401 - fixture
from tests.unit.test_dose_size import PIXEL_MM, _cylinder

ROOT = Path(__file__).parents[2]


def test_rdsr_and_images_give_the_ssde(svc, tmp_path):  # noqa: F811
    registry = load_registry(svc.db, ROOT / "configs" / "dose.yaml")
    rng = np.random.default_rng(21)
    study = make_study(rng, 0, "CT ABDOMEN PELVIS", age_years=(40, 60))
    report = ct_report(rng, study, ("abdomen-pelvis",))
    series = CtSeries(number=2, description="ABD 5mm", protocol="ABDOMEN PELVIS", body_part="ABDOMEN",
                      kernel="B30f", ctdi_vol=99.0)  # the header's value loses to the RDSR's
    _store(svc, [write_rdsr(tmp_path / "sr", rng, study, report),
                 *write_ct_series(tmp_path / "ct", rng, study, series, _cylinder(28.0, slices=12),
                                  (5.0, PIXEL_MM, PIXEL_MM))])
    _close(svc)
    assert registry.read_pending() == 2
    assert sorted(r["outcome"] for r in _rows(svc, dose_reads)) == ["ct_header", "rdsr"]
    (exam,) = _rows(svc, dose_exams)
    ctdi = max(e.ctdivol for e in report.events if e.ctdivol is not None)
    assert exam["source"] == "rdsr" and exam["phantom_cm"] == 32 and exam["ctdivol"] == pytest.approx(ctdi)
    assert exam["dw_cm"] == pytest.approx(28.0, rel=0.02)
    assert exam["ssde"] == pytest.approx(ctdi * 3.704369 * math.exp(-0.03671937 * exam["dw_cm"]), rel=1e-3)


def test_exports_carry_dw_and_ssde(dose_api):  # noqa: F811
    registry = load_registry(dose_api.services.db, ROOT / "configs" / "dose.yaml")
    ev = DoseEvent(kind="ct", protocol="ABDOMEN PELVIS", target_region="Abdomen and Pelvis", phantom_cm=32,
                   ctdivol=10.0, dlp=400.0)
    common = dict(study_uid="1.2.9.1", modality="CT", patient=PatientDose(age_years=50), facility="A",
                  performed_at=dt.datetime(2026, 11, 1, tzinfo=dt.UTC), protocol="ABDOMEN PELVIS")
    registry.add_reports([
        DoseReport(series_uid="1.2.9.1.1", sop_instance_uid="1.2.9.1.1.1", source="rdsr", estimated=False,
                   events=(ev,), dlp_total=400.0, **common),
        DoseReport(series_uid="1.2.9.1.2", sop_instance_uid="1.2.9.1.2.1", source="header", estimated=True,
                   water_diameter_cm=30.0, size_slices=9, **common)])
    want = 10.0 * 3.704369 * math.exp(-0.03671937 * 30.0)
    who = dose_api.as_["physicist"]
    (row,) = dose_api.get("/api/v1/dose/exams", headers=who).json()["exams"]
    assert row["dw_cm"] == 30.0 and row["ssde"] == pytest.approx(want, abs=1e-3)
    text = dose_api.get("/api/v1/dose/exams", params={"format": "csv"}, headers=who).text
    (got,) = list(csv.DictReader(io.StringIO(text.split("\n", 1)[1])))
    assert float(got["dw_cm"]) == 30.0 and float(got["ssde"]) == pytest.approx(want, abs=1e-3)
    from openpyxl import load_workbook

    xlsx = dose_api.get("/api/v1/dose/exams", params={"format": "xlsx"}, headers=who).content
    cells = list(load_workbook(io.BytesIO(xlsx)).active.iter_rows(values_only=True))
    header = cells[1]
    assert cells[2][header.index("ssde")] == pytest.approx(want, abs=1e-3) and cells[2][header.index("dw_cm")] == 30.0
