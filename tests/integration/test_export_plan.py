"""Which exports a recorded result queues, on SQLite and PostgreSQL: one outbox row per destination that takes
the pipeline, only for live results, written in the transaction that records the result (or not at all);
a later result of the same pipeline and study goes as a correction of the earlier; a withdrawal follows a
result to every destination it was queued for, once; deciding twice queues nothing more."""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Iterator

import pytest
from sqlalchemy import select

from radtriage.config.exports import ExportSettings
from radtriage.db import ledger, open_database
from radtriage.db.engine import Database
from radtriage.db.tables import jobs, outbox, series, studies
from radtriage.exports import plan
from radtriage.exports.model import CORRECTED, PRELIMINARY, WITHDRAWN

NOW = dt.datetime(2026, 12, 7, 9, 0, tzinfo=dt.UTC)
DESTS = ExportSettings(
    dicom=[{"name": "pacs", "ae_title": "PACS", "host": "127.0.0.1", "port": 104}],
    hl7=[{"name": "ris", "host": "127.0.0.1", "port": 2575, "pipelines": ["stroke_ich"]}],
    fhir=[{"name": "emr", "base_url": "http://127.0.0.1:1/fhir", "pipelines": ["bone_age"]}],
)


@pytest.fixture
def db(db_url: str) -> Iterator[Database]:
    database = open_database(db_url)
    yield database
    database.dispose()


def _job(db: Database, study_uid: str, series_uid: str, version: int = 1) -> int:
    with db.write() as conn:
        sid = conn.execute(select(studies.c.id).where(studies.c.study_uid == study_uid)).scalar()
        if sid is None:
            sid = conn.execute(studies.insert().values(study_uid=study_uid, created_at=NOW)).inserted_primary_key[0]
        se = conn.execute(select(series.c.id).where(series.c.series_uid == series_uid)).scalar()
        if se is None:
            se = conn.execute(series.insert().values(
                study_id=sid, series_uid=series_uid, state="closed", version=version, header={},
                header_from_localizer=False, first_received_at=NOW, last_received_at=NOW,
                storage_dir="/nonexistent")).inserted_primary_key[0]
        return conn.execute(jobs.insert().values(
            case_id=f"{series_uid}/v{version}/{uuid.uuid4().hex[:8]}", series_id=se, series_version=version, state="running", attempts=1,
            next_attempt_at=NOW, case={}, created_at=NOW, updated_at=NOW)).inserted_primary_key[0]


def _result(pipeline: str, study_uid: str, series_uid: str, state: str = "live") -> dict:
    return {"pipeline_id": pipeline, "pipeline_version": "1.0.0", "study_uid": study_uid, "series_uid": series_uid,
            "task": "ich", "model_id": "m", "model_version": "1", "positive": True, "priority": "STAT",
            "result": {"task": "ich", "model_id": "m", "model_version": "1", "pipeline_version": "1.0.0",
                       "positive": True}, "state": state}


def _record(db: Database, job: int, *rows: dict, settings: ExportSettings = DESTS) -> None:
    ledger.record_results(db, job, list(rows), now=NOW,
                          then=lambda conn, recorded, now: plan.queue_new(conn, settings, recorded, now))


def _queued(db: Database) -> list[tuple[str, str, str, dict]]:
    with db.read() as conn:
        return [(r.subject, r.target, r.channel, dict(r.payload))
                for r in conn.execute(select(outbox).where(outbox.c.kind == "export").order_by(outbox.c.id))]


def test_live_results_queue_one_row_per_destination_that_takes_them(db: Database) -> None:
    _record(db, _job(db, "1.2.3", "1.2.3.1"), _result("stroke_ich", "1.2.3", "1.2.3.1"),
            _result("bone_age", "1.2.3", "1.2.3.1", state="shadow"))
    rows = _queued(db)
    assert [(t, c) for _, t, c, _ in rows] == [("pacs", "dicom"), ("ris", "hl7")]  # emr takes bone_age only
    assert all(p["status"] == PRELIMINARY and p["revision"] == 0 for *_, p in rows)
    rid = rows[0][0]
    _record(db, _job(db, "1.2.3", "1.2.3.1"), _result("stroke_ich", "1.2.3", "1.2.3.1"))  # a later version
    later = _queued(db)[2:]
    assert [(t, p["status"], p["replaces"]) for _, t, _, p in later] == [("pacs", CORRECTED, int(rid)),
                                                                         ("ris", CORRECTED, int(rid))]


def test_a_failed_recording_queues_nothing(db: Database) -> None:
    job = _job(db, "1.2.4", "1.2.4.1")

    def boom(conn, recorded, now):
        plan.queue_new(conn, DESTS, recorded, now)
        raise RuntimeError("crash after queueing")

    with pytest.raises(RuntimeError):
        ledger.record_results(db, job, [_result("stroke_ich", "1.2.4", "1.2.4.1")], now=NOW, then=boom)
    assert _queued(db) == [] and ledger.result_rows(db, "1.2.4") == []


def test_a_withdrawal_follows_the_result_once_and_a_new_result_after_it_is_not_a_correction(db: Database) -> None:
    _record(db, _job(db, "1.2.5", "1.2.5.1"), _result("stroke_ich", "1.2.5", "1.2.5.1"))
    rid = int(_queued(db)[0][0])
    for _ in range(2):  # demoted twice: one withdrawal
        with db.write() as conn:
            plan.queue_withdrawal(conn, [rid], "demoted: under review", NOW)
    withdrawn = [(t, p["status"], p["revision"]) for _, t, _, p in _queued(db)[2:]]
    assert withdrawn == [("pacs", WITHDRAWN, 1), ("ris", WITHDRAWN, 1)]
    _record(db, _job(db, "1.2.5", "1.2.5.1"), _result("stroke_ich", "1.2.5", "1.2.5.1"))
    assert all(p["status"] == PRELIMINARY for *_, p in _queued(db)[4:])


def test_no_destinations_queue_nothing(db: Database) -> None:
    _record(db, _job(db, "1.2.6", "1.2.6.1"), _result("stroke_ich", "1.2.6", "1.2.6.1"), settings=ExportSettings())
    assert _queued(db) == []


def test_a_reader_disagreeing_withdraws_the_exported_result(db: Database) -> None:
    from radtriage.api.studies import _withdraw_if_wrong
    from radtriage.db import accounts, worklist

    _record(db, _job(db, "1.2.7", "1.2.7.1"), _result("stroke_ich", "1.2.7", "1.2.7.1"))
    rid = int(_queued(db)[0][0])
    accounts.add_user(db, "reader", "radiologist", "a long enough password 1", "Reader")
    uid = accounts.get_user(db, "reader").id
    worklist.add_feedback(db, "1.2.7", rid, "ich", uid, "reader", "radiologist", "agree", None,
                          then=_withdraw_if_wrong)
    assert len(_queued(db)) == 2  # agreeing changes nothing
    worklist.add_feedback(db, "1.2.7", rid, "ich", uid, "reader", "radiologist", "disagree", "old infarct",
                          then=_withdraw_if_wrong)
    assert [(t, p["status"], p["reason"]) for _, t, _, p in _queued(db)[2:]] == [
        ("pacs", WITHDRAWN, "marked wrong by the reader"), ("ris", WITHDRAWN, "marked wrong by the reader")]
