"""The RIS's pregnancy status through the API and the dose registry, on SQLite and PostgreSQL: the RIS's
integration engine (a service account) posts that the patient of an order is pregnant; a synthetic pelvis CT
dose SR for that accession, with nothing in its header, is told to the physicists at once "per the RIS"; a
status that comes after the examination was judged has it judged again; a patient-level status counts for the
patient's examination; a radiologist cannot post; bad bodies are refused; no identifier reaches the log."""

from __future__ import annotations

import datetime as dt
import logging
from pathlib import Path

import numpy as np
import pytest
import yaml
from sqlalchemy import select

from radtriage.alerts.config import parse_alerting
from radtriage.db import audit
from radtriage.db.tables import dose_exams, dose_flags, outbox, ris_pregnancy
from radtriage.dose.notify import DOSE, DoseNotices
from radtriage.dose.registry import load_registry
from radtriage.synth.dicom import make_study
from radtriage.synth.rdsr import ct_report, write_rdsr
from tests.integration.test_dose_registry import _close, _rows, _store
from tests.integration.test_worklist_api import api  # noqa: F401 - fixture

ROOT = Path(__file__).parents[2]
URL = "/api/v1/dose/pregnancy"


@pytest.fixture
def registry(api):  # noqa: F811
    alerting = parse_alerting(yaml.safe_load((ROOT / "configs" / "alerting.yaml").read_text()), "alerting.yaml")
    return load_registry(api.services.db, ROOT / "configs" / "dose.yaml", DoseNotices(alerting))


def _status(accession: str | None, status: str = "pregnant", **extra) -> dict:
    recorded = dt.datetime.now(dt.UTC) - dt.timedelta(hours=2)
    return {"accession_number": accession, "status": status, "recorded_at": recorded.isoformat(),
            "source": "RIS-TEST", **extra}


def _pelvis(api, tmp_path, seed: int):  # noqa: F811
    rng = np.random.default_rng(seed)
    study = make_study(rng, seed, "CT ABDOMEN PELVIS", age_years=(25, 35), sex="F")
    report = ct_report(rng, study, ("abdomen-pelvis",))
    assert not report.patient.pregnant  # nothing in the header says so
    _store(api.services, [write_rdsr(tmp_path / f"sr{seed}", rng, study, report)])
    _close(api.services)
    return study


def _notices(api, study_uid: str) -> list[dict]:  # noqa: F811
    return [r for r in _rows(api.services, outbox) if r["kind"] == DOSE and r["payload"].get("study_uid") == study_uid]


def _pregnancy_flags(api) -> list[dict]:  # noqa: F811
    return [f for f in _rows(api.services, dose_flags) if f["reason"] == "pregnant_abdomen_pelvis"]


def test_ris_status_before_the_examination_is_told_at_once(api, registry, tmp_path, caplog):  # noqa: F811
    caplog.set_level(logging.DEBUG)
    rng = np.random.default_rng(21)
    study = make_study(rng, 21, "CT ABDOMEN PELVIS", age_years=(25, 35), sex="F")
    got = api.post(URL, json=_status(study.accession), headers=api.as_["service"])
    assert got.status_code == 202, got.text
    (entry,) = audit.entries(api.services.db, action="ris_pregnancy_received")[1]
    assert entry["detail"]["status"] == "pregnant" and entry["actor"] == "service1"

    report = ct_report(rng, study, ("abdomen-pelvis",))
    _store(api.services, [write_rdsr(tmp_path / "sr", rng, study, report)])
    _close(api.services)
    assert registry.read_pending() == 2  # the series, and the status (no examination judged yet to apply it to)
    (flag,) = _pregnancy_flags(api)
    assert flag["study_uid"] == study.study_uid and flag["urgent"] and "per the RIS" in flag["detail"]
    sent = _notices(api, study.study_uid)
    assert sent and all(r["payload"]["event"] == "dose.urgent" for r in sent)
    text = sent[0]["payload"]["text"]
    assert "per the RIS" in text and study.accession not in text and study.patient.patient_id not in text
    assert study.accession not in caplog.text and study.patient.patient_id not in caplog.text


def test_ris_status_after_the_examination_judges_it_again(api, registry, tmp_path):  # noqa: F811
    study = _pelvis(api, tmp_path, 22)
    assert registry.read_pending() == 1
    assert not _pregnancy_flags(api) and not _notices(api, study.study_uid)
    # not pregnant: kept, judged again, nothing to tell
    assert api.post(URL, json=_status(study.accession, "not_pregnant"), headers=api.as_["service"]).status_code == 202
    assert registry.read_pending() == 1 and not _pregnancy_flags(api)
    # the RIS corrects itself: pregnant (recorded later) -> told at once, once
    later = _status(study.accession, recorded_at=(dt.datetime.now(dt.UTC) - dt.timedelta(minutes=5)).isoformat())
    assert api.post(URL, json=later, headers=api.as_["service"]).status_code == 202
    assert registry.read_pending() == 1 and registry.read_pending() == 0
    (flag,) = _pregnancy_flags(api)
    assert "per the RIS" in flag["detail"] and flag["urgent"]
    told = len(_notices(api, study.study_uid))
    assert told >= 1
    assert all(r["applied_at"] is not None for r in _rows(api.services, ris_pregnancy))
    # the same status again changes nothing: the flag is kept and told once
    assert api.post(URL, json=later, headers=api.as_["service"]).status_code == 202
    registry.read_pending()
    assert len(_pregnancy_flags(api)) == 1 and len(_notices(api, study.study_uid)) == told


def test_a_patient_level_status_counts_for_the_patients_examination(api, registry, tmp_path):  # noqa: F811
    study = _pelvis(api, tmp_path, 23)
    other = _pelvis(api, tmp_path, 24)  # another patient
    registry.read_pending()
    (performed,) = [e["performed_at"] for e in _rows(api.services, dose_exams) if e["study_uid"] == study.study_uid]
    performed = performed if performed.tzinfo else performed.replace(tzinfo=dt.UTC)
    far = _status(None, patient_id=study.patient.patient_id,  # no issuer: the study sent none either
                  recorded_at=(performed - dt.timedelta(days=30)).isoformat())
    assert api.post(URL, json=far, headers=api.as_["admin"]).status_code == 202
    registry.read_pending()
    assert not _pregnancy_flags(api)  # a patient's status a month before the examination does not count
    near = {**far, "recorded_at": (performed - dt.timedelta(hours=3)).isoformat()}
    assert api.post(URL, json=near, headers=api.as_["admin"]).status_code == 202
    registry.read_pending()
    assert [f["study_uid"] for f in _pregnancy_flags(api)] == [study.study_uid]
    assert study.patient.patient_id not in str(_rows(api.services, ris_pregnancy))  # kept as a one-way key only
    assert not _notices(api, other.study_uid)


@pytest.mark.parametrize("role", ["radiologist", "stroke", "physicist"])
def test_only_the_ris_service_or_an_admin_may_post(api, role):  # noqa: F811
    from radtriage.db import accounts

    if role not in api.as_:
        accounts.add_user(api.services.db, f"{role}9", role, "a-long-enough-password-1")
        api.as_[role] = {"Authorization": f"Bearer {accounts.issue_token(api.services.db, f'{role}9')}"}
    assert api.post(URL, json=_status("ACC1"), headers=api.as_[role]).status_code == 403
    assert api.post(URL, json=_status("ACC1")).status_code == 401
    with api.services.db.read() as conn:
        assert conn.execute(select(ris_pregnancy)).first() is None


def test_bad_bodies_are_refused(api):  # noqa: F811
    who = api.as_["service"]
    bad = api.post(URL, json=_status("ACC1", "probably"), headers=who)
    assert bad.status_code == 422 and bad.headers["content-type"].startswith("application/problem+json")
    assert api.post(URL, json=_status(None), headers=who).status_code == 422  # nobody named
    assert api.post(URL, json=_status("A" * 17), headers=who).status_code == 422
    assert api.post(URL, content=b"{" + b" " * 20000 + b"}", headers={**who, "content-type": "application/json"}
                    ).status_code == 413
    assert api.post(URL, content=b"status=pregnant", headers={**who, "content-type": "application/x-www-form-urlencoded"}
                    ).status_code == 415
    assert api.post(URL, content=b"{not json", headers={**who, "content-type": "application/json"}).status_code == 422
    with api.services.db.read() as conn:
        assert conn.execute(select(ris_pregnancy)).first() is None


def test_an_hl7_order_message_says_so_too(api, registry, tmp_path):  # noqa: F811
    from tests.unit.test_dose_ris_hl7 import OBR, orm

    rng = np.random.default_rng(25)
    study = make_study(rng, 25, "CT ABDOMEN PELVIS", age_years=(25, 35), sex="F")
    when = (dt.datetime.now(dt.UTC) - dt.timedelta(hours=1)).astimezone(dt.timezone(dt.timedelta(hours=8)))
    message = orm(when=when.strftime("%Y%m%d%H%M%S%z"), obr=OBR.replace("A1234567", study.accession))
    hl7 = {**api.as_["service"], "content-type": "text/plain"}
    assert api.post(URL, content=message.encode(), headers={**api.as_["radiologist"], "content-type": "text/plain"}
                    ).status_code == 403
    got = api.post(URL, content=message.encode(), headers=hl7)
    assert got.status_code == 202, got.text
    bad = api.post(URL, content=message.replace("LA15173-0", "Y").encode(), headers=hl7)
    assert bad.status_code == 422 and "OBX-5" in bad.json()["detail"]
    _store(api.services, [write_rdsr(tmp_path / "sr", rng, study, ct_report(rng, study, ("abdomen-pelvis",)))])
    _close(api.services)
    registry.read_pending()
    (flag,) = _pregnancy_flags(api)
    assert flag["study_uid"] == study.study_uid and "per the RIS" in flag["detail"]
    (row,) = _rows(api.services, ris_pregnancy)
    assert (row["source"], row["accession_number"]) == ("RIS-A", study.accession)
