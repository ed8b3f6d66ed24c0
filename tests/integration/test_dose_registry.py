"""The dose registry through the real store and assembly, on SQLite and PostgreSQL: an RDSR that comes
before its images is kept and joined to them, a paediatric head above its level tells the physicists at
once (identifiers masked), an adult above its level waits for the digest, header-only CT is estimated,
repeats are flagged, and nothing touches the job (the clinical path)."""

from __future__ import annotations

import dataclasses
import datetime as dt
from datetime import timedelta
from pathlib import Path

import numpy as np
import pytest
import yaml
from sqlalchemy import select

from radtriage.alerts.config import parse_alerting
from radtriage.assembly.complete import close_ready_series
from radtriage.db import audit
from radtriage.db.instances import Origin
from radtriage.db.tables import dose_exams, dose_flags, jobs, outbox
from radtriage.dose.model import DoseReport, PatientDose
from radtriage.dose.notify import DOSE, DoseNotices
from radtriage.dose.registry import load_registry
from radtriage.service import build_services
from radtriage.synth.dicom import CtSeries, make_study, write_ct_series
from radtriage.synth.rdsr import ct_report, write_rdsr

ROOT = Path(__file__).parents[2]


@pytest.fixture
def svc(make_settings, db_url):
    s = build_services(make_settings(database_url=db_url))
    yield s
    s.close()


@pytest.fixture
def alerting():
    return parse_alerting(yaml.safe_load((ROOT / "configs" / "alerting.yaml").read_text()), "alerting.yaml")


def _store(svc, paths) -> None:
    for p in paths:
        svc.store.store_instance([Path(p).read_bytes()], Origin("import"))


def _close(svc) -> None:
    later = dt.datetime.now(dt.UTC) + timedelta(seconds=60)
    close_ready_series(svc.db, timedelta(seconds=1), timedelta(seconds=30), lambda c: {"case_id": f"{c.series_uid}/v{c.version}"},
                       now=later)


def _rows(svc, table):
    with svc.db.read() as conn:
        return [dict(r._mapping) for r in conn.execute(select(table).order_by(table.c.id))]


def test_child_rdsr_before_its_images_is_joined_and_told_at_once(svc, alerting, tmp_path):
    registry = load_registry(svc.db, ROOT / "configs" / "dose.yaml", DoseNotices(alerting))
    rng = np.random.default_rng(11)
    study = make_study(rng, 0, "CT HEAD", age_years=(3, 4))
    report = ct_report(rng, study, ("head",), child=True, scale=3.0)  # 3 x a child's dose: above the 1-<5 y level
    _store(svc, [write_rdsr(tmp_path / "sr", rng, study, report)])
    _close(svc)
    assert registry.read_pending() == 1
    (exam,) = _rows(svc, dose_exams)
    assert (exam["examination"], exam["band"], exam["source"], exam["phantom_cm"]) == (
        "CT head", "child 1-<5 y", "rdsr", 16)
    flags = _rows(svc, dose_flags)
    assert flags and all(f["urgent"] and f["reason"] == "above_drl" for f in flags)
    sent = [r for r in _rows(svc, outbox) if r["kind"] == DOSE]
    assert {(r["target"], r["channel"]) for r in sent} == {("lau", "webhook"), ("lau", "email")}
    text = sent[0]["payload"]["text"]
    assert study.patient.patient_id not in text and "SYNTHETIC" not in text and study.accession not in text
    assert "child 1-<5 y" in text and "CTDIvol" in text
    assert audit.entries(svc.db, study_uid=study.study_uid, action="dose_flagged")[0] == len(flags)

    # the images come later: header estimates are kept, the examination stays the RDSR's; nothing told again
    series = CtSeries(number=2, description="HEAD", protocol="ROUTINE HEAD", body_part="HEAD", kernel="H30s",
                      ctdi_vol=500.0)
    _store(svc, write_ct_series(tmp_path / "ct", rng, study, series, np.zeros((4, 8, 8)), (5.0, 0.5, 0.5)))
    _close(svc)
    assert registry.read_pending() == 1 and registry.read_pending() == 0
    (exam,) = _rows(svc, dose_exams)
    assert exam["source"] == "rdsr" and exam["ctdivol"] == pytest.approx(max(e.ctdivol or 0 for e in report.events))
    assert len([r for r in _rows(svc, outbox) if r["kind"] == DOSE]) == len(sent)
    assert {j["state"] for j in _rows(svc, jobs)} == {"ready"}  # the clinical path is untouched


def test_adult_above_waits_for_the_digest(svc, alerting, tmp_path):
    notices = DoseNotices(alerting, digest_hour=8)
    registry = load_registry(svc.db, ROOT / "configs" / "dose.yaml", notices)
    rng = np.random.default_rng(12)
    study = make_study(rng, 1, "CT HEAD", age_years=(40, 60))
    series = CtSeries(number=2, description="HEAD", protocol="ROUTINE HEAD", body_part="HEAD", kernel="H30s",
                      ctdi_vol=75.0)
    _store(svc, write_ct_series(tmp_path / "ct", rng, study, series, np.zeros((20, 8, 8)), (5.0, 0.5, 0.5)))
    _close(svc)
    registry.read_pending()
    (exam,) = _rows(svc, dose_exams)
    assert exam["estimated"] and exam["source"] == "header" and exam["dlp"] == pytest.approx(75.0 * 10.0)
    (flag,) = _rows(svc, dose_flags)
    assert flag["quantity"] == "CTDIvol" and not flag["urgent"] and "estimated" in flag["detail"]
    assert not [r for r in _rows(svc, outbox) if r["kind"] == DOSE]  # no page, at night or by day
    zone = alerting.zone()
    tomorrow = dt.datetime.now(zone).date() + timedelta(days=1)
    night = dt.datetime.combine(tomorrow, dt.time(3, 0), zone)
    with svc.db.write() as conn:
        assert notices.digest(conn, night) == 0  # before the digest hour
        morning = dt.datetime.combine(tomorrow, dt.time(8, 5), zone)
        assert notices.digest(conn, morning) == 1
        assert notices.digest(conn, morning + timedelta(minutes=1)) == 0  # told once
    digest = [r for r in _rows(svc, outbox) if r["kind"] == DOSE]
    assert len(digest) == 2 and digest[0]["payload"]["event"] == "dose.digest"


def test_repeat_within_a_day(svc, tmp_path):
    registry = load_registry(svc.db, ROOT / "configs" / "dose.yaml")
    rng = np.random.default_rng(13)
    first = make_study(rng, 2, "CT HEAD", age_years=(40, 60))
    again = dataclasses.replace(make_study(rng, 3, "CT HEAD", study_date=first.date), patient=first.patient)
    other = make_study(rng, 4, "CT HEAD", study_date=first.date)  # another patient
    for i, study in enumerate((first, again, other)):
        _store(svc, [write_rdsr(tmp_path / f"sr{i}", rng, study, ct_report(rng, study, ("head",)))])
    _close(svc)
    assert registry.read_pending() == 3
    repeats = [f["study_uid"] for f in _rows(svc, dose_flags) if f["reason"] == "repeat"]
    assert repeats == [again.study_uid]  # the same day, the same patient and examination: the later one


def test_add_reports_without_files(svc):
    registry = load_registry(svc.db, ROOT / "configs" / "dose.yaml")
    rep = DoseReport(study_uid="1.2.3", series_uid="1.2.3.1", sop_instance_uid="1.2.3.1.1", modality="DX",
                     source="header", estimated=False, dap_total=0.3, entrance_dose_total=0.1,
                     patient=PatientDose(age_years=50), protocol="CHEST PA", facility="A",
                     performed_at=dt.datetime(2026, 5, 1, tzinfo=dt.UTC))
    (flag,) = registry.add_reports([rep])
    assert flag["quantity"] == "DAP" and flag["value"] == pytest.approx(0.3) and flag["level"] == pytest.approx(0.1)
