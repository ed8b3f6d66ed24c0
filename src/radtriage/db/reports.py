"""Rows of reports (`reports`, `report_addenda`) and what a report's export needs. Plain reads and writes
inside the caller's transaction; the rules (who may edit or sign, what is sent) live in `radtriage.reports`."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Connection, select, update

from radtriage.db.clock import aware
from radtriage.db.errors import ActionRefused, Refusal
from radtriage.db.tables import outbox, report_addenda, reports, results, series, studies, worklist

KIND = "export"  # radtriage.exports.KIND: a report leaves as an outbox row of kind export


def subject(report_id: int) -> str:
    """The outbox subject of a report's exports (a result's is its bare id)."""
    return f"report-{report_id}"


def _report(row: Any) -> dict[str, Any]:
    out = dict(row)
    for k in ("created_at", "updated_at", "signed_at"):
        out[k] = aware(out[k])
    return out


def get(conn: Connection, study_uid: str, lock: bool = False) -> dict[str, Any] | None:
    """The study's report with its ``addenda`` (oldest first), or None."""
    q = select(reports).where(reports.c.study_uid == study_uid)
    if lock and conn.dialect.name != "sqlite":
        q = q.with_for_update()
    row = conn.execute(q).mappings().first()
    if row is None:
        return None
    out = _report(row)
    out["addenda"] = addenda(conn, out["id"])
    return out


def get_by_id(conn: Connection, report_id: int) -> dict[str, Any] | None:
    uid = conn.execute(select(reports.c.study_uid).where(reports.c.id == report_id)).scalar()
    return None if uid is None else get(conn, uid)


def addenda(conn: Connection, report_id: int) -> list[dict[str, Any]]:
    q = select(report_addenda).where(report_addenda.c.report_id == report_id).order_by(report_addenda.c.id)
    return [{**dict(r), "signed_at": aware(r["signed_at"])} for r in conn.execute(q).mappings()]


def create(conn: Connection, study_uid: str, body: dict[str, Any], result_ids: list[int], now: datetime,
           by: str | None) -> dict[str, Any]:
    conn.execute(reports.insert().values(study_uid=study_uid, state="draft", body=body, removed=[],
                                         result_ids=result_ids, languages=[], revision=0, created_at=now,
                                         updated_at=now, updated_by=by))
    found = get(conn, study_uid)
    assert found is not None
    return found


def save(conn: Connection, report: dict[str, Any], expected_revision: int | None, now: datetime, by: str,
         **values: Any) -> int:
    """Change a draft (``body``, ``removed``, ``result_ids``...) when its revision is still
    ``expected_revision`` (None: whatever it is); the new revision. A signed report is never changed here."""
    q = update(reports).where(reports.c.id == report["id"], reports.c.state == "draft")
    if expected_revision is not None:
        q = q.where(reports.c.revision == expected_revision)
    revision = int(report["revision"]) + 1
    if conn.execute(q.values(revision=revision, updated_at=now, updated_by=by, **values)).rowcount != 1:
        current = conn.execute(select(reports.c.revision, reports.c.state).where(reports.c.id == report["id"])).one()
        raise ActionRefused(Refusal.CONFLICT, "the report changed meanwhile (another save or a signature)",
                            revision=int(current.revision), state=current.state)
    return revision


def sign(conn: Connection, report: dict[str, Any], user_id: int, name: str, languages: list[str],
         now: datetime) -> None:
    q = update(reports).where(reports.c.id == report["id"], reports.c.state == "draft",
                              reports.c.revision == report["revision"])
    if conn.execute(q.values(state="signed", signed_by_id=user_id, signed_by=name[:128], signed_at=now,
                             languages=languages, updated_at=now)).rowcount != 1:
        raise ActionRefused(Refusal.CONFLICT, "the report is signed already or changed meanwhile")


def add_addendum(conn: Connection, report_id: int, language: str, text: str, user_id: int, name: str,
                 now: datetime) -> int:
    return int(conn.execute(report_addenda.insert().values(
        report_id=report_id, language=language, text=text, signed_by_id=user_id, signed_by=name[:128],
        signed_at=now)).inserted_primary_key[0])


def study_rows(conn: Connection, study_uid: str) -> tuple[dict[str, Any], list[dict[str, Any]], dict[str, dict]]:
    """What a draft is made from: the study row, its result rows (every state; the draft keeps the live
    ones) and the header of each of their series."""
    study = conn.execute(select(studies).where(studies.c.study_uid == study_uid)).mappings().first()
    rows = [dict(r) for r in conn.execute(
        select(results.c.id, results.c.pipeline_id, results.c.series_uid, results.c.task, results.c.state,
               results.c.result).where(results.c.study_uid == study_uid).order_by(results.c.id)).mappings()]
    uids = list({r["series_uid"] for r in rows})
    headers = {s.series_uid: dict(s.header or {}) for s in conn.execute(
        select(series.c.series_uid, series.c.header).where(series.c.series_uid.in_(uids)))} if uids else {}
    return dict(study) if study else {}, rows, headers


def exports_of(conn: Connection, report_id: int) -> list[dict[str, Any]]:
    """The report's export rows, oldest first: destination, channel, status, revision, state, error."""
    q = (select(outbox.c.id, outbox.c.target, outbox.c.channel, outbox.c.payload, outbox.c.state,
                outbox.c.attempts, outbox.c.last_error, outbox.c.created_at, outbox.c.delivered_at)
         .where(outbox.c.kind == KIND, outbox.c.subject == subject(report_id)).order_by(outbox.c.id))
    return [{**dict(r), "created_at": aware(r["created_at"]), "delivered_at": aware(r["delivered_at"])}
            for r in conn.execute(q).mappings()]


def reading_state(conn: Connection, study_uid: str) -> dict[str, Any] | None:
    """The study's worklist ``status`` and ``claimed_by``; None when it is not on the worklist."""
    row = conn.execute(select(worklist.c.status, worklist.c.claimed_by)
                       .where(worklist.c.study_uid == study_uid)).mappings().first()
    return dict(row) if row else None
