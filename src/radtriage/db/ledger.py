"""The job ledger: take a ready job with a lease, record its results once, retry or fail it.

States: ``ready -> running -> done | failed``, and ``no_ai`` when no pipeline
applies. A worker takes a job with a lease; a job whose lease ran out (its
worker died) is taken again. Results are keyed by (job, pipeline): recording
them again (a retried job) adds nothing, and `record_results` says which
pipelines were new so that alerts fire once.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from collections.abc import Callable
from typing import Any

from sqlalchemy import Connection, and_, or_, select, update

from radtriage.db.clock import aware
from radtriage.db.engine import Database
from radtriage.db.tables import jobs, results, series, studies


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


@dataclass(frozen=True)
class ClaimedJob:
    id: int
    case_id: str
    attempts: int
    case: dict[str, Any]
    lease_until: dt.datetime


def claim_job(db: Database, worker: str, lease_s: float, now: dt.datetime | None = None) -> ClaimedJob | None:
    """Take the oldest job that is ready (and due) or whose lease has run out."""
    now = now or _now()
    due = or_(
        and_(jobs.c.state == "ready", or_(jobs.c.next_attempt_at.is_(None), jobs.c.next_attempt_at <= now)),
        and_(jobs.c.state == "running", jobs.c.lease_until < now),
    )
    q = select(jobs.c.id, jobs.c.case_id, jobs.c.attempts, jobs.c.case, jobs.c.state).where(due).order_by(jobs.c.id).limit(1)
    with db.write() as conn:
        if not db.is_sqlite:
            q = q.with_for_update(skip_locked=True)
        row = conn.execute(q).first()
        if row is None:
            return None
        lease = now + dt.timedelta(seconds=lease_s)
        conn.execute(
            update(jobs).where(jobs.c.id == row.id).values(
                state="running", attempts=row.attempts + 1, lease_until=lease, worker=worker[:64], updated_at=now)
        )
    return ClaimedJob(row.id, row.case_id, row.attempts + 1, dict(row.case), lease)


def renew_lease(db: Database, job_id: int, worker: str, lease_s: float, now: dt.datetime | None = None) -> bool:
    """Extend a running job's lease; False when the job is no longer this worker's."""
    now = now or _now()
    with db.write() as conn:
        n = conn.execute(
            update(jobs).where(jobs.c.id == job_id, jobs.c.state == "running", jobs.c.worker == worker[:64])
            .values(lease_until=now + dt.timedelta(seconds=lease_s), updated_at=now)
        ).rowcount
    return n == 1


def record_results(db: Database, job_id: int, rows: list[dict[str, Any]], state: str = "done",
                   note: str | None = None, now: dt.datetime | None = None,
                   then: Callable[[Connection, list[dict[str, Any]], dt.datetime], Any] | None = None) -> list[str]:
    """Store each pipeline's result of a job (once) and close the job; returns the pipelines that were new.
    ``then(conn, recorded, now)`` runs in the same transaction with the new rows (with their ``id``): what
    the caller decides from them (the exports they queue) is written with them or not at all."""
    now = now or _now()
    new: list[str] = []
    recorded: list[dict[str, Any]] = []
    with db.write() as conn:
        have = set(conn.execute(select(results.c.pipeline_id).where(results.c.job_id == job_id)).scalars())
        for row in rows:
            if row["pipeline_id"] in have:
                continue
            rid = conn.execute(results.insert().values(job_id=job_id, created_at=now, **row)).inserted_primary_key[0]
            recorded.append({**row, "id": rid})
            have.add(row["pipeline_id"])
            new.append(row["pipeline_id"])
        if then is not None and recorded:
            then(conn, recorded, now)
        conn.execute(update(jobs).where(jobs.c.id == job_id).values(
            state=state, lease_until=None, last_error=note, updated_at=now))
    return new


def fail_attempt(db: Database, job_id: int, error: str, max_attempts: int, backoff_s: float,
                 now: dt.datetime | None = None) -> str:
    """A failed attempt: back to ``ready`` after an exponential backoff, or ``failed`` after the last attempt."""
    now = now or _now()
    with db.write() as conn:
        attempts = conn.execute(select(jobs.c.attempts).where(jobs.c.id == job_id)).scalar_one()
        if attempts >= max_attempts:
            values: dict[str, Any] = {"state": "failed", "lease_until": None}
        else:
            delay = backoff_s * 2 ** max(attempts - 1, 0)
            values = {"state": "ready", "lease_until": None, "next_attempt_at": now + dt.timedelta(seconds=delay)}
        conn.execute(update(jobs).where(jobs.c.id == job_id).values(last_error=error[:2000], updated_at=now, **values))
    return values["state"]


def requeue_noted(db: Database, study_uid: str, marker: str, note: str, now: dt.datetime | None = None) -> list[int]:
    """Make the finished jobs of a study whose note holds ``marker`` ready again (fresh attempts); their ids."""
    now = now or _now()
    with db.write() as conn:
        ids = list(conn.execute(
            select(jobs.c.id).join(series, series.c.id == jobs.c.series_id).join(studies, studies.c.id == series.c.study_id)
            .where(studies.c.study_uid == study_uid, jobs.c.state == "done", jobs.c.last_error.contains(marker))
        ).scalars())
        if ids:
            conn.execute(update(jobs).where(jobs.c.id.in_(ids)).values(
                state="ready", attempts=0, next_attempt_at=None, lease_until=None, last_error=note[:2000],
                updated_at=now))
    return ids


def job_state(db: Database, job_id: int) -> dict[str, Any]:
    with db.read() as conn:
        row = conn.execute(select(jobs).where(jobs.c.id == job_id)).mappings().one()
    out = dict(row)
    for k in ("lease_until", "next_attempt_at", "created_at", "updated_at"):
        out[k] = aware(out[k]) if out[k] is not None else None
    return out


def result_rows(db: Database, study_uid: str | None = None, job_id: int | None = None) -> list[dict[str, Any]]:
    q = select(results).order_by(results.c.id)
    if study_uid is not None:
        q = q.where(results.c.study_uid == study_uid)
    if job_id is not None:
        q = q.where(results.c.job_id == job_id)
    with db.read() as conn:
        return [dict(r) for r in conn.execute(q).mappings()]


def job_rows(db: Database, state: str | None = None) -> list[dict[str, Any]]:
    q = select(jobs).order_by(jobs.c.id)
    if state is not None:
        q = q.where(jobs.c.state == state)
    with db.read() as conn:
        return [dict(r) for r in conn.execute(q).mappings()]
