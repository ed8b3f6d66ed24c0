"""Odd header values a scanner may send are stored safely, on SQLite and PostgreSQL, and a database
error never writes the values it was given into the log."""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path

import pydicom
import pytest
from sqlalchemy import insert, select
from sqlalchemy.exc import IntegrityError

from radtriage.db import open_database
from radtriage.db.studies import list_studies
from radtriage.db.tables import studies
from radtriage.service import Runtime, build_services
from tests.integration.test_hostile_inputs import (  # noqa: F401 - fixtures
    PHI_ID,
    assert_no_phi,
    association,
    ct_dataset,
    logs,
    raw_send,
    status_of,
)


def _odd_instances(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, pydicom.Dataset]:
    cases = {
        "multi-valued modality": dict(Modality=["CT", "MR"]),
        "over-long modality": dict(Modality="COMPUTED_TOMOGRAPHY_SECRET"),
        "NUL inside the name": dict(PatientName="SECRET\x00PATIENT", StudyDescription="CT\x00HEAD"),
        "over-long body part": dict(BodyPartExamined="HEAD_AND_NECK_AND_MORE_SECRET", SeriesDescription="X" * 90),
    }
    out = {}
    with monkeypatch.context() as m:
        m.setattr(pydicom.config.settings, "writing_validation_mode", pydicom.config.IGNORE)
        for name, attrs in cases.items():
            ds = ct_dataset(**attrs)
            path = tmp_path / "send" / f"{len(out)}.dcm"
            path.parent.mkdir(parents=True, exist_ok=True)
            ds.save_as(path, enforce_file_format=True)
            out[name] = (ds, path)
    return out


def test_odd_header_values_are_stored_not_refused(make_settings, db_url, tmp_path, monkeypatch, raw_send, logs):
    services = build_services(make_settings(database_url=db_url))
    runtime = Runtime(services)
    runtime.start()
    try:
        sent = _odd_instances(tmp_path, monkeypatch)
        logs.clear()
        with association(runtime.scp.port) as assoc:
            statuses = {name: status_of(assoc.send_c_store(path)) for name, (_ds, path) in sent.items()}
        assert statuses == {name: 0x0000 for name in sent}, statuses
        studies_by_uid = {s["study_uid"]: s for s in list_studies(services.db)}
        for name, (ds, _path) in sent.items():
            study = studies_by_uid[ds.StudyInstanceUID]
            series = study["series"][0]
            assert series["instances"] == 1, name
        with services.db.read() as conn:
            names = conn.execute(select(studies.c.patient_name, studies.c.study_description)).all()
        assert all("\x00" not in (v or "") for row in names for v in row)
        assert ("SECRET PATIENT", "CT HEAD") in [tuple(r) for r in names]
        multi = studies_by_uid[sent["multi-valued modality"][0].StudyInstanceUID]["series"][0]
        assert multi["modality"] == "CT\\MR"
        long = studies_by_uid[sent["over-long modality"][0].StudyInstanceUID]["series"][0]
        assert long["modality"] == "COMPUTED_TOMOGRA"
        assert_no_phi(logs)
    finally:
        runtime.stop()
        services.close()


def test_database_errors_do_not_carry_the_values_into_the_log(db_url):
    db = open_database(db_url)
    try:
        now = datetime.now(timezone.utc)
        with pytest.raises(IntegrityError) as err:  # the same study twice
            with db.write() as conn:
                conn.execute(insert(studies).values(study_uid="1.2.3", patient_id=PHI_ID, created_at=now))
                conn.execute(insert(studies).values(study_uid="1.2.3", patient_id=PHI_ID, created_at=now))
        assert PHI_ID not in str(err.value)
    finally:
        db.dispose()
