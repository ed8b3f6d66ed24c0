"""The job ledger on SQLite and PostgreSQL: leases, retries with backoff, results recorded once."""

from __future__ import annotations

import datetime as dt

import pytest

from radtriage.db import ledger, open_database
from radtriage.db.tables import jobs, series, studies

T0 = dt.datetime(2026, 12, 1, 8, 0, tzinfo=dt.UTC)


def _job(db, n: int = 1) -> list[int]:
    """``n`` ready jobs, each on its own series of one study."""
    ids = []
    with db.write() as conn:
        study_id = conn.execute(studies.insert().values(study_uid="1.2.3", created_at=T0)).inserted_primary_key[0]
        for i in range(n):
            sid = conn.execute(series.insert().values(
                study_id=study_id, series_uid=f"1.2.3.{i}", header={}, header_from_localizer=False, state="ready",
                version=1, first_received_at=T0, last_received_at=T0, storage_dir="/nowhere")).inserted_primary_key[0]
            ids.append(conn.execute(jobs.insert().values(
                case_id=f"1.2.3.{i}/v1", series_id=sid, series_version=1, state="ready", attempts=0,
                case={"case_id": f"1.2.3.{i}/v1"}, created_at=T0, updated_at=T0)).inserted_primary_key[0])
    return ids


def _row(pipeline: str = "stroke_ich") -> dict:
    return {"pipeline_id": pipeline, "pipeline_version": "1", "study_uid": "1.2.3", "series_uid": "1.2.3.0",
            "task": "ich", "model_id": "ich-densenet2d", "model_version": "0.2.0", "positive": True,
            "priority": "STAT", "result": {"score": 0.9}}


@pytest.fixture
def db(db_url):
    d = open_database(db_url)
    yield d
    d.dispose()


def test_claim_takes_each_ready_job_once_in_order(db):
    a, b = _job(db, 2)
    first = ledger.claim_job(db, "w1", lease_s=60, now=T0)
    second = ledger.claim_job(db, "w2", lease_s=60, now=T0)
    assert (first.id, second.id) == (a, b) and first.attempts == 1 and first.case["case_id"] == "1.2.3.0/v1"
    assert ledger.claim_job(db, "w3", lease_s=60, now=T0) is None
    assert ledger.job_state(db, a)["state"] == "running" and ledger.job_state(db, a)["worker"] == "w1"


def test_a_job_whose_worker_died_is_taken_again_after_its_lease(db):
    (a,) = _job(db)
    ledger.claim_job(db, "dead", lease_s=30, now=T0)
    assert ledger.claim_job(db, "w2", lease_s=30, now=T0 + dt.timedelta(seconds=29)) is None
    again = ledger.claim_job(db, "w2", lease_s=30, now=T0 + dt.timedelta(seconds=31))
    assert again.id == a and again.attempts == 2
    assert not ledger.renew_lease(db, a, "dead", 30, now=T0 + dt.timedelta(seconds=32))  # no longer its job
    assert ledger.renew_lease(db, a, "w2", 30, now=T0 + dt.timedelta(seconds=32))


def test_results_are_recorded_once_even_when_a_retried_job_records_again(db):
    (a,) = _job(db)
    ledger.claim_job(db, "w1", 60, now=T0)
    assert ledger.record_results(db, a, [_row("stroke_ich")], now=T0) == ["stroke_ich"]
    # a second worker that had taken it after a lease ran out records the same and one more
    assert ledger.record_results(db, a, [_row("stroke_ich"), _row("other")], now=T0) == ["other"]
    rows = ledger.result_rows(db, study_uid="1.2.3")
    assert [r["pipeline_id"] for r in rows] == ["stroke_ich", "other"]
    assert ledger.job_state(db, a)["state"] == "done"


def test_retries_back_off_then_fail_with_the_reason(db):
    (a,) = _job(db)
    now = T0
    for attempt, delay in ((1, 10), (2, 20)):
        job = ledger.claim_job(db, "w", 60, now=now)
        assert job.attempts == attempt
        assert ledger.fail_attempt(db, a, f"boom {attempt}", max_attempts=3, backoff_s=10, now=now) == "ready"
        assert ledger.claim_job(db, "w", 60, now=now + dt.timedelta(seconds=delay - 1)) is None  # not yet due
        now = now + dt.timedelta(seconds=delay)
    ledger.claim_job(db, "w", 60, now=now)
    assert ledger.fail_attempt(db, a, "model raised ValueError", max_attempts=3, backoff_s=10, now=now) == "failed"
    state = ledger.job_state(db, a)
    assert state["state"] == "failed" and state["attempts"] == 3 and state["last_error"] == "model raised ValueError"
    assert ledger.claim_job(db, "w", 60, now=now + dt.timedelta(hours=1)) is None


def test_no_ai_applicable_is_a_state_not_an_error(db):
    (a,) = _job(db)
    ledger.claim_job(db, "w", 60, now=T0)
    assert ledger.record_results(db, a, [], state="no_ai", note="no AI applicable", now=T0) == []
    assert ledger.job_state(db, a)["state"] == "no_ai"
