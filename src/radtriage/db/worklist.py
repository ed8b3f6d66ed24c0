"""The worklist table: one row per study, its priority kept by triage, its reading state by readers.

`refresh_study` rewrites a study's row from its jobs and results by the rule
triage passes in (idempotent) and records a priority change; `claim` / `release` / `mark_reported` change
the reading state, one reader at a time; `page` lists it with filters.
Every reader action is written to the audit trail in the same transaction.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from sqlalchemy import Connection, and_, func, or_, select, true, update

from radtriage.db import audit
from radtriage.db.clock import aware, utcnow
from radtriage.db.changes import changes
from radtriage.db.engine import Database
from radtriage.db.errors import ActionRefused, Refusal
from radtriage.db.tables import (
    edge_results,
    feedback,
    jobs,
    priority_changes,
    results,
    series,
    studies,
    users,
    worklist,
)


# --- triage -----------------------------------------------------------------------------


def touched_studies(db: Database, since: datetime | None) -> dict[int, datetime]:
    """Studies whose jobs changed at or after ``since`` (all when None), each with its newest job change."""
    q = select(series.c.study_id, func.max(jobs.c.updated_at)).join(series, series.c.id == jobs.c.series_id)
    if since is not None:
        q = q.where(jobs.c.updated_at >= since)
    with db.read() as conn:
        rows = conn.execute(q.group_by(series.c.study_id)).all()
    return {r[0]: aware(r[1]) for r in rows}


@dataclass(frozen=True)
class Change:
    study_uid: str
    old: str | None
    new: str
    reason: str | None


class Entry(Protocol):
    """A study's worklist entry as triage decides it (`radtriage.triage.StudyTriage`)."""

    priority: str
    rank: int
    reason: str | None
    ai_state: str
    flags: list[dict[str, Any]]
    tasks: tuple[str, ...]


Decide = Callable[..., Entry]
"""Triage's rule: ``(state, last_error)`` of a study's jobs and its result rows (with ``status=`` the study's
reading status) -> its `Entry`."""


def refresh_study(db: Database, study_id: int, decide: Decide, now: datetime | None = None) -> Change | None:
    """Rewrite the study's worklist row as ``decide`` makes it from the study's jobs and results, in one
    transaction; returns the priority change, if any."""
    now = now or utcnow()
    with db.write() as conn:
        study = conn.execute(select(studies.c.study_uid, studies.c.created_at).where(studies.c.id == study_id)).first()
        if study is None:
            return None
        job_rows = conn.execute(
            select(jobs.c.state, jobs.c.last_error, jobs.c.case, series.c.modality)
            .join(series, series.c.id == jobs.c.series_id).where(series.c.study_id == study_id)
            .order_by(jobs.c.id)).all()
        if not job_rows:
            return None
        result_rows = [dict(r) for r in conn.execute(
            select(results.c.id, results.c.pipeline_id, results.c.task, results.c.priority, results.c.positive,
                   results.c.result, results.c.state).where(results.c.study_uid == study.study_uid)).mappings()]
        old = conn.execute(select(worklist.c.priority, worklist.c.priority_reason, worklist.c.ai_state,
                                  worklist.c.flags, worklist.c.revision, worklist.c.status)
                           .where(worklist.c.study_id == study_id)).first()
        t = decide([(r.state, r.last_error) for r in job_rows], result_rows, status=old.status if old else "unread")
        modalities = ",".join(sorted({r.modality for r in job_rows if r.modality}))[:64]
        calling_ae = next((r.case.get("calling_ae") for r in job_rows if r.case.get("calling_ae")), None)
        values = dict(priority=t.priority, priority_rank=t.rank, priority_reason=t.reason, ai_state=t.ai_state,
                      modalities=modalities, tasks="," + ",".join(t.tasks) + "," if t.tasks else "",
                      calling_ae=calling_ae, flags=t.flags)
        if old is None:
            conn.execute(worklist.insert().values(
                study_id=study_id, study_uid=study.study_uid, status="unread", received_at=study.created_at,
                updated_at=now, revision=1, **values))
        elif (old.priority, old.priority_reason, old.ai_state, old.flags) != (t.priority, t.reason, t.ai_state, t.flags):
            conn.execute(update(worklist).where(worklist.c.study_id == study_id).values(
                updated_at=now, revision=old.revision + 1, **values))
        else:
            return None
        if old is not None and old.priority == t.priority:
            return None
        conn.execute(priority_changes.insert().values(study_uid=study.study_uid, old_priority=old and old.priority,
                                                      new_priority=t.priority, reason=t.reason, changed_at=now))
        audit.record(conn, "priority_changed", study_uid=study.study_uid, at=now,
                     detail={"from": old and old.priority, "to": t.priority, "ai_state": t.ai_state})
    return Change(study.study_uid, old and old.priority, t.priority, t.reason)


def priority_history(db: Database, study_uid: str) -> list[dict[str, Any]]:
    with db.read() as conn:
        rows = conn.execute(select(priority_changes).where(priority_changes.c.study_uid == study_uid)
                            .order_by(priority_changes.c.id)).mappings().all()
    return [{**dict(r), "changed_at": aware(r["changed_at"])} for r in rows]


# --- listing ----------------------------------------------------------------------------

SORTS = {
    "priority": (worklist.c.priority_rank, worklist.c.received_at, worklist.c.study_id),
    "received": (worklist.c.received_at, worklist.c.study_id),
    "-received": (worklist.c.received_at.desc(), worklist.c.study_id.desc()),
    "updated": (worklist.c.updated_at.desc(), worklist.c.study_id.desc()),
}

_COLUMNS = (
    worklist.c.study_uid, worklist.c.priority, worklist.c.priority_reason, worklist.c.ai_state, worklist.c.status,
    worklist.c.claimed_by, worklist.c.claimed_at, worklist.c.reported_by, worklist.c.reported_at,
    worklist.c.modalities, worklist.c.tasks, worklist.c.calling_ae, worklist.c.flags, worklist.c.received_at,
    worklist.c.updated_at, worklist.c.revision, studies.c.accession_number, studies.c.patient_id,
    studies.c.patient_name, studies.c.patient_sex, studies.c.patient_birth_date, studies.c.study_date,
    studies.c.study_time, studies.c.study_description, studies.c.site,
)

_TIMES = ("claimed_at", "reported_at", "received_at", "updated_at")


def _row(r: Any) -> dict[str, Any]:
    out = dict(r)
    for k in _TIMES:
        out[k] = aware(out[k])
    out["tasks"] = [t for t in (out["tasks"] or "").split(",") if t]
    out["modalities"] = [m for m in (out["modalities"] or "").split(",") if m]
    return out


@dataclass(frozen=True)
class Filters:
    status: tuple[str, ...] = ()
    priority: tuple[str, ...] = ()
    modality: str | None = None
    task: str | None = None
    calling_ae: str | None = None
    received_from: datetime | None = None
    received_to: datetime | None = None
    site: str | None = None  # a hub's site of origin (radtriage.forward); "local": studies of no other site


def _where(f: Filters) -> list[Any]:
    clauses: list[Any] = []
    if f.status:
        clauses.append(worklist.c.status.in_(f.status))
    if f.priority:
        clauses.append(worklist.c.priority.in_(f.priority))
    if f.modality:
        m = f.modality.upper()
        clauses.append(or_(worklist.c.modalities == m, worklist.c.modalities.like(f"{m},%"),
                           worklist.c.modalities.like(f"%,{m}"), worklist.c.modalities.like(f"%,{m},%")))
    if f.task:
        clauses.append(worklist.c.tasks.like(f"%,{f.task},%"))
    if f.calling_ae:
        clauses.append(worklist.c.calling_ae == f.calling_ae)
    if f.received_from:
        clauses.append(worklist.c.received_at >= f.received_from)
    if f.received_to:
        clauses.append(worklist.c.received_at < f.received_to)
    if f.site:
        clauses.append(studies.c.site.is_(None) if f.site == "local" else studies.c.site == f.site)
    return clauses


def page(db: Database, filters: Filters = Filters(), sort: str = "priority", limit: int = 50, offset: int = 0
         ) -> tuple[int, list[dict[str, Any]]]:
    """(total matching, one page of rows)."""
    where = and_(true(), *_where(filters))
    q = (select(*_COLUMNS).join(studies, studies.c.id == worklist.c.study_id).where(where)
         .order_by(*SORTS[sort]).limit(limit).offset(offset))
    with db.read() as conn:
        total = conn.execute(select(func.count()).select_from(worklist.join(studies, studies.c.id == worklist.c.study_id))
                             .where(where)).scalar_one()
        rows = conn.execute(q).mappings().all()
    return total, [_row(r) for r in rows]


def page_version(db: Database) -> int:
    """Moves whenever this process writes a table that a worklist page reads (`radtriage.db.changes`; the
    edge results its items say)."""
    return changes(db).version(worklist.name, studies.name, edge_results.name)


def entry(db: Database, study_uid: str) -> dict[str, Any] | None:
    q = select(*_COLUMNS).join(studies, studies.c.id == worklist.c.study_id).where(worklist.c.study_uid == study_uid)
    with db.read() as conn:
        r = conn.execute(q).mappings().first()
    return _row(r) if r else None


def study_series(db: Database, study_uid: str) -> list[dict[str, Any]]:
    q = (select(series.c.series_uid, series.c.modality, series.c.series_number, series.c.series_description,
                series.c.body_part, series.c.state, series.c.version)
         .join(studies, studies.c.id == series.c.study_id).where(studies.c.study_uid == study_uid)
         .order_by(series.c.series_number, series.c.id))
    with db.read() as conn:
        return [dict(r) for r in conn.execute(q).mappings()]


def study_results(db: Database, study_uid: str) -> list[dict[str, Any]]:
    q = (select(results.c.id, results.c.pipeline_id, results.c.pipeline_version, results.c.series_uid,
                results.c.task, results.c.model_id, results.c.model_version, results.c.positive,
                results.c.priority, results.c.result, results.c.created_at, results.c.job_id)
         .where(results.c.study_uid == study_uid, results.c.state != "shadow")  # shadow: GET /api/v1/shadow only
         .order_by(results.c.id))
    with db.read() as conn:
        return [{**dict(r), "created_at": aware(r.created_at)} for r in conn.execute(q).mappings()]


# --- reading ----------------------------------------------------------------------------


def _locked_entry(conn: Connection, db: Database, study_uid: str) -> Any:
    q = select(worklist.c.study_id, worklist.c.status, worklist.c.claimed_by, worklist.c.revision).where(
        worklist.c.study_uid == study_uid)
    if not db.is_sqlite:
        q = q.with_for_update()
    row = conn.execute(q).first()
    if row is None:
        raise ActionRefused(Refusal.MISSING, f"no study {study_uid} on the worklist")
    return row


def _reading_step(db: Database, study_uid: str, username: str, role: str, client: str | None, action: str,
                  allowed: Callable[[Any], bool], values: Callable[[datetime], dict[str, Any]],
                  detail: Callable[[Any], dict[str, Any]] | None = None) -> None:
    """One step of a study's reading state, under its row lock: ``allowed(row)`` raises `ActionRefused`
    when the step is refused and returns False when it is already done; then the row moves and the step
    is audited in the same transaction."""
    now = utcnow()
    with db.write() as conn:
        row = _locked_entry(conn, db, study_uid)
        if not allowed(row):
            return
        conn.execute(update(worklist).where(worklist.c.study_id == row.study_id).values(
            updated_at=now, revision=row.revision + 1, **values(now)))
        audit.record(conn, action, username, role, study_uid, client=client, at=now,
                     detail=detail(row) if detail else None)


def _refuse(refusal: Refusal, message: str, row: Any) -> bool:
    raise ActionRefused(refusal, message, claimed_by=row.claimed_by)


def claim(db: Database, study_uid: str, username: str, role: str, client: str | None = None) -> None:
    """Claim a study for reading: one reader at a time (409 naming the holder otherwise)."""

    def allowed(row: Any) -> bool:
        if row.status == "reported":
            raise ActionRefused(Refusal.CONFLICT, "the study is already reported")
        if row.status == "claimed" and row.claimed_by != username:
            _refuse(Refusal.CONFLICT, f"claimed by {row.claimed_by}", row)
        return row.status != "claimed"  # claimed by this reader already: nothing to do

    _reading_step(db, study_uid, username, role, client, "claimed", allowed,
                  lambda now: {"status": "claimed", "claimed_by": username, "claimed_at": now})


def release(db: Database, study_uid: str, username: str, role: str, client: str | None = None) -> None:
    """Give a claimed study back; only its holder, or an admin, can."""

    def allowed(row: Any) -> bool:
        if row.status != "claimed":
            raise ActionRefused(Refusal.CONFLICT, "the study is not claimed")
        if row.claimed_by != username and role != "admin":
            _refuse(Refusal.NOT_YOURS, f"claimed by {row.claimed_by}", row)
        return True

    _reading_step(db, study_uid, username, role, client, "released", allowed,
                  lambda now: {"status": "unread", "claimed_by": None, "claimed_at": None},
                  lambda row: {"holder": row.claimed_by})


def mark_reported(db: Database, study_uid: str, username: str, role: str, client: str | None = None) -> None:
    """Mark a study reported; the reader must hold the claim."""

    def allowed(row: Any) -> bool:
        if row.status == "reported":
            raise ActionRefused(Refusal.CONFLICT, "the study is already reported")
        if row.status != "claimed" or row.claimed_by != username:
            _refuse(Refusal.CONFLICT, "claim the study before reporting it", row)
        return True

    _reading_step(db, study_uid, username, role, client, "reported", allowed,
                  lambda now: {"status": "reported", "reported_by": username, "reported_at": now})


def add_feedback(db: Database, study_uid: str, result_id: int, finding_code: str, user_id: int, username: str,
                 role: str, verdict: str, comment: str | None, client: str | None = None,
                 then: Callable[[Connection, int, str, datetime], Any] | None = None) -> int:
    """Keep a reader's verdict on one AI finding; ``then(conn, result_id, verdict, now)`` runs in the same
    transaction (a "disagree" withdraws what was exported of the result: `radtriage.exports.plan`)."""
    now = utcnow()
    with db.write() as conn:
        hit = conn.execute(select(results.c.id).where(results.c.id == result_id,
                                                      results.c.study_uid == study_uid)).first()
        if hit is None:
            raise ActionRefused(Refusal.MISSING, f"no result {result_id} on study {study_uid}")
        fid = conn.execute(feedback.insert().values(
            study_uid=study_uid, result_id=result_id, finding_code=finding_code, user_id=user_id, verdict=verdict,
            comment=comment, created_at=now)).inserted_primary_key[0]
        audit.record(conn, "feedback", username, role, study_uid, client=client, at=now,
                     detail={"result_id": result_id, "finding": finding_code, "verdict": verdict})
        conn.execute(update(worklist).where(worklist.c.study_uid == study_uid).values(updated_at=now))
        if then is not None:
            then(conn, result_id, verdict, now)
    return int(fid)


def feedback_rows(db: Database, study_uid: str | None = None) -> list[dict[str, Any]]:
    q = (select(feedback.c.id, feedback.c.study_uid, feedback.c.result_id, feedback.c.finding_code,
                feedback.c.verdict, feedback.c.comment, feedback.c.created_at, users.c.username)
         .join(users, users.c.id == feedback.c.user_id).order_by(feedback.c.id))
    if study_uid is not None:
        q = q.where(feedback.c.study_uid == study_uid)
    with db.read() as conn:
        return [{**dict(r), "created_at": aware(r.created_at)} for r in conn.execute(q).mappings()]


def last_change(db: Database) -> tuple[datetime | None, int]:
    """The newest worklist change and the row count: what the live page polls."""
    with db.read() as conn:
        newest, n = conn.execute(select(func.max(worklist.c.updated_at), func.count()).select_from(worklist)).one()
    return aware(newest), int(n)
