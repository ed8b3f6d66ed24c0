"""The alert rows (the only path to those tables): one per alert, its deliveries as outbox rows.

An alert is ``open`` (paging, escalating on timeout), ``acknowledged`` (someone
is taking it) or ``resolved``. Each page or "taken" notice is an outbox row of
kind ``alert`` (`radtriage.db.outbox`: pending -> sending -> delivered | failed,
or cancelled when an acknowledgement made it moot), about the alert's id, to a
member on a channel; `as_delivery` reads one as the alert code does.
``alert_decisions`` marks each positive result whose alert decision was made,
so that the recovery sweep finds those that never were. The tables are in
`tables.py`; migrations 0004, 0005 and 0006 create them.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import Connection, select, update

from radtriage.db import outbox
from radtriage.db.clock import aware
from radtriage.db.engine import Database
from radtriage.db.outbox import CANCELLED, DELIVERED, FAILED, PENDING, SENDING  # noqa: F401 - the states alerts use
from radtriage.db.tables import alert_decisions, alerts, jobs, results, studies

_TIMES = ("next_escalation_at", "received_at", "created_at", "updated_at", "first_delivered_at", "acked_at",
          "resolved_at")

OPEN, ACKNOWLEDGED, RESOLVED = "open", "acknowledged", "resolved"
PAGE, TAKEN = "page", "taken"  # delivery kinds: the alert itself; "X is taking it" to those already paged
WITHDRAWN = "withdrawn"  # delivery kind: "the AI finding is under review" to those already paged
ALERT = "alert"  # the alerts' kind of outbox row


def _row(r: Any) -> dict[str, Any]:
    out = dict(r._mapping if hasattr(r, "_mapping") else r)
    for k in _TIMES:
        if k in out:
            out[k] = aware(out[k])
    return out


def delivery_key(alert_id: int, kind: str, level: int, member: str, channel: str) -> str:
    return f"rt-alert-{alert_id}-{kind}-l{level + 1}-{member}-{channel}"


# --- alerts -----------------------------------------------------------------------------


def alerts_for_finding(conn: Connection, study_uid: str, policy: str, finding_code: str) -> list[dict[str, Any]]:
    """Earlier alerts of one finding code on a study under a policy, newest first."""
    q = (select(alerts).where(alerts.c.study_uid == study_uid, alerts.c.policy == policy,
                              alerts.c.finding_code == finding_code).order_by(alerts.c.id.desc()))
    return [_row(r) for r in conn.execute(q)]


def unresolved_of_pipeline(conn: Connection, pipeline_id: str) -> list[dict[str, Any]]:
    """The pipeline's alerts not yet resolved (open or acknowledged), oldest first."""
    q = (select(alerts).where(alerts.c.pipeline_id == pipeline_id, alerts.c.state.in_((OPEN, ACKNOWLEDGED)))
         .order_by(alerts.c.id))
    return [_row(r) for r in conn.execute(q)]


def insert_alert(conn: Connection, **values: Any) -> int:
    return conn.execute(alerts.insert().values(**values)).inserted_primary_key[0]


def get_alert(conn: Connection, alert_id: int, lock: bool = False) -> dict[str, Any] | None:
    q = select(alerts).where(alerts.c.id == alert_id)
    if lock and conn.dialect.name != "sqlite":
        q = q.with_for_update()
    r = conn.execute(q).first()
    return _row(r) if r else None


def update_alert(conn: Connection, alert_id: int, expect: dict[str, Any] | None = None, **values: Any) -> bool:
    """Change an alert if it still has the ``expect``-ed values (compare and set); True when it did."""
    q = update(alerts).where(alerts.c.id == alert_id)
    for k, v in (expect or {}).items():
        q = q.where(alerts.c[k] == v)
    return conn.execute(q.values(**values)).rowcount == 1


def due_escalations(conn: Connection, now: dt.datetime, limit: int = 20) -> list[dict[str, Any]]:
    q = (select(alerts).where(alerts.c.state == OPEN, alerts.c.next_escalation_at <= now)
         .order_by(alerts.c.next_escalation_at).limit(limit))
    if conn.dialect.name != "sqlite":
        q = q.with_for_update(skip_locked=True)
    return [_row(r) for r in conn.execute(q)]


def list_alerts(db: Database, since: dt.datetime | None = None, states: tuple[str, ...] = (OPEN, ACKNOWLEDGED),
                study_uid: str | None = None, limit: int = 200) -> list[dict[str, Any]]:
    q = select(alerts).where(alerts.c.state.in_(states)).order_by(alerts.c.id.desc()).limit(limit)
    if since is not None:
        q = q.where(alerts.c.created_at >= since)
    if study_uid is not None:
        q = q.where(alerts.c.study_uid == study_uid)
    with db.read() as conn:
        return [_row(r) for r in conn.execute(q)]


def alert_row(db: Database, alert_id: int) -> dict[str, Any] | None:
    with db.read() as conn:
        return get_alert(conn, alert_id)


def study_fields(conn: Connection, study_uid: str) -> dict[str, Any]:
    """The study's patient and accession fields (masked before they go anywhere)."""
    q = select(studies.c.patient_id, studies.c.patient_name, studies.c.patient_sex, studies.c.accession_number
               ).where(studies.c.study_uid == study_uid)
    r = conn.execute(q).first()
    return dict(r._mapping) if r else {}


# --- deliveries (outbox rows of kind "alert", about the alert's id) -----------------------------------


def as_delivery(row: dict[str, Any]) -> dict[str, Any]:
    """An alert's outbox row as the alert code reads it: with ``alert_id``, ``kind`` (page | taken),
    ``level`` and ``member``."""
    return {**row, "alert_id": int(row["subject"]), "kind": row["payload"]["kind"], "level": row["payload"]["level"],
            "member": row["target"]}


def add_deliveries(conn: Connection, rows: list[dict[str, Any]], now: dt.datetime) -> None:
    for r in rows:
        outbox.add(conn, ALERT, delivery_key(r["alert_id"], r["kind"], r["level"], r["member"], r["channel"]),
                   subject=str(r["alert_id"]), target=r["member"], channel=r["channel"],
                   payload={"kind": r["kind"], "level": r["level"]}, now=now)


def deliveries_of(conn: Connection, alert_id: int) -> list[dict[str, Any]]:
    return [as_delivery(r) for r in outbox.of_subjects(conn, ALERT, [str(alert_id)])]


def deliveries_for(db: Database, alert_ids: list[int]) -> list[dict[str, Any]]:
    with db.read() as conn:
        return [as_delivery(r) for r in outbox.of_subjects(conn, ALERT, [str(i) for i in alert_ids])]


def claim_delivery(conn: Connection, now: dt.datetime, lease_s: float) -> dict[str, Any] | None:
    """Take the next due alert delivery with a lease (as the outbox worker does)."""
    row = outbox.claim(conn, now, {ALERT: lease_s})
    return as_delivery(row) if row else None


def cancel_pending(conn: Connection, alert_id: int, now: dt.datetime, kind: str = PAGE) -> int:
    ids = [d["id"] for d in deliveries_of(conn, alert_id) if d["kind"] == kind and d["state"] == PENDING]
    return outbox.cancel(conn, ids, now)


def escalation_due(db: Database, now: dt.datetime) -> bool:
    """Whether an open alert's deadline passed: a read that spares idle workers a write transaction."""
    with db.read() as conn:
        q = select(alerts.c.id).where(alerts.c.state == OPEN, alerts.c.next_escalation_at <= now).limit(1)
        return conn.execute(q).first() is not None


# --- alert decisions on the results the dispatcher recorded (recovery after a crash) -------------


def result_of_case(conn: Connection, case_id: str, pipeline_id: str) -> int | None:
    """The id of the result a pipeline recorded for a case (None when there is none, e.g. a direct call)."""
    q = (select(results.c.id).join(jobs, jobs.c.id == results.c.job_id)
         .where(jobs.c.case_id == case_id, results.c.pipeline_id == pipeline_id))
    return conn.execute(q).scalar()


def decided(conn: Connection, result_id: int) -> bool:
    q = select(alert_decisions.c.id).where(alert_decisions.c.result_id == result_id)
    return conn.execute(q).first() is not None


def record_decision(conn: Connection, result_id: int, now: dt.datetime, via: str, outcome: str) -> None:
    """Mark a result's alert decision made, in the transaction that wrote its alerts (unique per result)."""
    conn.execute(alert_decisions.insert().values(result_id=result_id, decided_at=now, via=via[:16],
                                                 outcome=outcome[:32]))


def undecided_positive_results(db: Database, pipeline_ids: list[str], until: dt.datetime, limit: int = 100
                               ) -> list[dict[str, Any]]:
    """Positive results of these pipelines recorded before ``until`` that have no alert decision, however
    old, with their job's case, oldest first."""
    if not pipeline_ids:
        return []
    d = alert_decisions
    q = (select(results.c.id, results.c.pipeline_id, results.c.priority, results.c.result, results.c.study_uid,
                jobs.c.case)
         .join(jobs, jobs.c.id == results.c.job_id)
         .outerjoin(d, d.c.result_id == results.c.id)
         .where(d.c.id.is_(None), results.c.positive.is_(True), results.c.pipeline_id.in_(pipeline_ids),
                results.c.state == "live", results.c.created_at < until)  # a shadow result pages nobody
         .order_by(results.c.id).limit(limit))
    with db.read() as conn:
        return [dict(r._mapping) for r in conn.execute(q)]

