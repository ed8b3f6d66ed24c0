"""The alert outbox: one row per alert and one per delivery (the only path to those tables).

An alert is ``open`` (paging, escalating on timeout), ``acknowledged`` (someone
is taking it) or ``resolved``. A delivery is ``pending`` -> ``sending`` (with a
lease) -> ``delivered`` | ``failed``, or ``cancelled`` when an acknowledgement
made it moot; a ``sending`` row whose lease ran out (its sender died) is sent
again with the same idempotency key. ``alert_decisions`` marks each positive result whose alert decision
was made, so that the recovery sweep finds those that never were. The tables are in `tables.py`;
migrations 0004 and 0005 create them.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import Connection, and_, or_, select, update

from radtriage.db.clock import aware
from radtriage.db.engine import Database
from radtriage.db.tables import alert_decisions, alert_deliveries, alerts, jobs, results, studies

_TIMES = ("next_escalation_at", "received_at", "created_at", "updated_at", "first_delivered_at", "acked_at",
          "resolved_at", "next_attempt_at", "lease_until", "first_attempt_at", "delivered_at", "finished_at")

OPEN, ACKNOWLEDGED, RESOLVED = "open", "acknowledged", "resolved"
PENDING, SENDING, DELIVERED, FAILED, CANCELLED = "pending", "sending", "delivered", "failed", "cancelled"
PAGE, TAKEN = "page", "taken"  # delivery kinds: the alert itself; "X is taking it" to those already paged



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


# --- deliveries ---------------------------------------------------------------------------


def add_deliveries(conn: Connection, rows: list[dict[str, Any]], now: dt.datetime) -> None:
    for r in rows:
        conn.execute(alert_deliveries.insert().values(
            idempotency_key=delivery_key(r["alert_id"], r["kind"], r["level"], r["member"], r["channel"]),
            state=PENDING, attempts=0, next_attempt_at=now, created_at=now, **r))


def deliveries_of(conn: Connection, alert_id: int) -> list[dict[str, Any]]:
    q = select(alert_deliveries).where(alert_deliveries.c.alert_id == alert_id).order_by(alert_deliveries.c.id)
    return [_row(r) for r in conn.execute(q)]


def deliveries_for(db: Database, alert_ids: list[int]) -> list[dict[str, Any]]:
    if not alert_ids:
        return []
    q = select(alert_deliveries).where(alert_deliveries.c.alert_id.in_(alert_ids)).order_by(alert_deliveries.c.id)
    with db.read() as conn:
        return [_row(r) for r in conn.execute(q)]


def _due_delivery(now: dt.datetime) -> Any:
    d = alert_deliveries
    return or_(and_(d.c.state == PENDING, d.c.next_attempt_at <= now), and_(d.c.state == SENDING, d.c.lease_until < now))


def work_due(db: Database, now: dt.datetime) -> tuple[bool, bool]:
    """(a delivery is due, an escalation is due): a read that spares idle workers a write transaction."""
    with db.read() as conn:
        delivery = conn.execute(select(alert_deliveries.c.id).where(_due_delivery(now)).limit(1)).first()
        escalation = conn.execute(select(alerts.c.id).where(alerts.c.state == OPEN,
                                                            alerts.c.next_escalation_at <= now).limit(1)).first()
    return delivery is not None, escalation is not None


def claim_delivery(conn: Connection, now: dt.datetime, lease_s: float) -> dict[str, Any] | None:
    """Take the next due delivery (pending and due, or sending with its lease run out) with a lease."""
    d = alert_deliveries
    q = select(d).where(_due_delivery(now)).order_by(d.c.next_attempt_at, d.c.id).limit(1)
    if conn.dialect.name != "sqlite":
        q = q.with_for_update(skip_locked=True)
    r = conn.execute(q).first()
    if r is None:
        return None
    row = _row(r)
    row["attempts"] += 1
    values: dict[str, Any] = {"state": SENDING, "attempts": row["attempts"],
                              "lease_until": now + dt.timedelta(seconds=lease_s)}
    if row["first_attempt_at"] is None:
        values["first_attempt_at"] = now
    conn.execute(update(d).where(d.c.id == row["id"]).values(**values))
    return {**row, **values}


def finish_delivery(conn: Connection, delivery_id: int, attempts: int, **values: Any) -> bool:
    """Record a send's outcome if the delivery is still this sender's (state sending, same attempt)."""
    d = alert_deliveries
    q = update(d).where(d.c.id == delivery_id, d.c.state == SENDING, d.c.attempts == attempts)
    return conn.execute(q.values(lease_until=None, **values)).rowcount == 1


def cancel_pending(conn: Connection, alert_id: int, now: dt.datetime, kind: str = PAGE) -> int:
    d = alert_deliveries
    q = update(d).where(d.c.alert_id == alert_id, d.c.kind == kind, d.c.state == PENDING)
    return conn.execute(q.values(state=CANCELLED, finished_at=now)).rowcount


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
                results.c.created_at < until)
         .order_by(results.c.id).limit(limit))
    with db.read() as conn:
        return [dict(r._mapping) for r in conn.execute(q)]

