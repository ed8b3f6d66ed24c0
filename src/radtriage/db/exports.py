"""Rows an export needs (the result, its study, its series and the series' instances) and the exports of a
study as the page lists them. The rules (what is queued when) live in `radtriage.exports`."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection, func, literal, select, update

from radtriage.db.clock import aware
from radtriage.db.tables import instances, jobs, outbox, reports, results, series, studies, worklist

KIND = "export"  # radtriage.exports.KIND: the outbox rows of results out


def result_context(conn: Connection, result_id: int) -> dict[str, Any] | None:
    """The result row with ``study`` and ``series`` rows and the series' ``instances`` (no localizers, in
    instance-number order); None when the result is gone."""
    r = conn.execute(select(results).where(results.c.id == result_id)).mappings().first()
    if r is None:
        return None
    study = conn.execute(select(studies).where(studies.c.study_uid == r["study_uid"])).mappings().first()
    s = conn.execute(select(series).where(series.c.series_uid == r["series_uid"])).mappings().first()
    version = conn.execute(select(jobs.c.series_version).where(jobs.c.id == r["job_id"])).scalar()
    inst = [] if s is None else [dict(i) for i in conn.execute(
        select(instances.c.sop_class_uid, instances.c.sop_instance_uid, instances.c.instance_number,
               instances.c.path)
        .where(instances.c.series_id == s["id"], instances.c.is_localizer.is_(False))
        .order_by(instances.c.instance_number, instances.c.id)).mappings()]
    return {**dict(r), "created_at": aware(r["created_at"]), "study": dict(study) if study else {},
            "series": dict(s) if s else {}, "series_version": version or (s["version"] if s else 1),
            "instances": inst}


def study_row(conn: Connection, study_uid: str) -> dict[str, Any]:
    """The study's row (patient, accession, description, date), {} when it is not indexed."""
    row = conn.execute(select(studies).where(studies.c.study_uid == study_uid)).mappings().first()
    return dict(row) if row else {}


def study_exports(conn: Connection, study_uid: str) -> list[dict[str, Any]]:
    """Each export row of the study's results, oldest first: result, destination, channel, status, state."""
    ids = [str(i) for i in conn.execute(select(results.c.id).where(results.c.study_uid == study_uid)).scalars()]
    if not ids:
        return []
    q = (select(outbox.c.id, outbox.c.subject, outbox.c.target, outbox.c.channel, outbox.c.payload,
                outbox.c.state, outbox.c.attempts, outbox.c.last_error, outbox.c.created_at, outbox.c.delivered_at)
         .where(outbox.c.kind == KIND, outbox.c.subject.in_(ids)).order_by(outbox.c.id))
    return [{**dict(r), "result_id": int(r["subject"]), "created_at": aware(r["created_at"]),
             "delivered_at": aware(r["delivered_at"])} for r in conn.execute(q).mappings()]


def add_notes(conn: Connection, row_id: int, notes: list[str]) -> None:
    """Keep what a destination refused (or another note of a send) on the export's outbox row."""
    payload = conn.execute(select(outbox.c.payload).where(outbox.c.id == row_id)).scalar()
    if payload is not None:
        conn.execute(update(outbox).where(outbox.c.id == row_id).values(
            payload={**payload, "notes": [*payload.get("notes", []), *notes][-10:]}))


def exported_unread_results(conn: Connection, pipeline_id: str) -> list[int]:
    """Ids of the pipeline's live results that were queued for export and whose study is not yet read."""
    q = (select(results.c.id).distinct()
         .join(worklist, worklist.c.study_uid == results.c.study_uid)
         .join(outbox, (outbox.c.kind == KIND) & (outbox.c.subject == results.c.id.cast(outbox.c.subject.type)))
         .where(results.c.pipeline_id == pipeline_id, results.c.state == "live", worklist.c.status == "unread"))
    return list(conn.execute(q).scalars())


def failed_exports(conn: Connection, limit: int = 200) -> list[dict[str, Any]]:
    """Exports given up on (or retrying after an error), newest first: for the admin's deliveries view. A row
    is about a result (subject: its id) or a signed report (subject: ``report-<id>``)."""
    text = outbox.c.subject.type
    q = (select(outbox.c.id, outbox.c.subject, outbox.c.target, outbox.c.channel, outbox.c.payload, outbox.c.state,
                outbox.c.attempts, outbox.c.last_error, outbox.c.created_at, outbox.c.finished_at,
                func.coalesce(results.c.study_uid, reports.c.study_uid).label("study_uid"), results.c.pipeline_id)
         .select_from(outbox.outerjoin(results, results.c.id.cast(text) == outbox.c.subject)
                      .outerjoin(reports, literal("report-", text) + reports.c.id.cast(text) == outbox.c.subject))
         .where(outbox.c.kind == KIND, (outbox.c.state == "failed") | ((outbox.c.state == "pending")
                                                                       & outbox.c.last_error.is_not(None)))
         .order_by(outbox.c.id.desc()).limit(limit))
    return [{**dict(r), "result_id": int(r["subject"]) if r["subject"].isdigit() else None,
             "created_at": aware(r["created_at"]), "finished_at": aware(r["finished_at"])}
            for r in conn.execute(q).mappings()]


def retry_export(conn: Connection, row_id: int, now: Any) -> bool:
    """Send a failed export again, due now, with its attempts counted afresh; whether it was failed."""
    q = update(outbox).where(outbox.c.id == row_id, outbox.c.kind == KIND, outbox.c.state == "failed")
    return conn.execute(q.values(state="pending", attempts=0, next_attempt_at=now, finished_at=None,
                                 lease_until=None)).rowcount == 1


def give_up_export(conn: Connection, row_id: int, now: Any) -> bool:
    """Stop retrying an export (an admin's decision: the destination will never take it); whether it was pending."""
    q = update(outbox).where(outbox.c.id == row_id, outbox.c.kind == KIND, outbox.c.state == "pending")
    return conn.execute(q.values(state="cancelled", finished_at=now)).rowcount == 1
