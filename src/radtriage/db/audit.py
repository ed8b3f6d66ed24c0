"""The audit trail: who did what to which study, and when. Rows are only ever added.

Details hold identifiers (UIDs, ids, verdicts), never patient names or IDs.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Connection, func, select

from radtriage.db.access import _aware, utcnow
from radtriage.db.engine import Database
from radtriage.db.tables import audit_log

SYSTEM = "system"


def record(conn: Connection, action: str, actor: str = SYSTEM, role: str | None = None,
           study_uid: str | None = None, detail: dict[str, Any] | None = None, client: str | None = None,
           at: datetime | None = None) -> None:
    """Add one entry inside the caller's transaction (so the action and its record commit together)."""
    conn.execute(audit_log.insert().values(
        at=at or utcnow(), actor=actor[:64], role=role, action=action[:32], study_uid=study_uid,
        detail=detail or {}, client=(client or None) and client[:64]))


def log(db: Database, action: str, **kwargs: Any) -> None:
    """`record` in a transaction of its own."""
    with db.write() as conn:
        record(conn, action, **kwargs)


def entries(db: Database, study_uid: str | None = None, actor: str | None = None, action: str | None = None,
            since: datetime | None = None, until: datetime | None = None, limit: int = 100, offset: int = 0
            ) -> tuple[int, list[dict[str, Any]]]:
    """(total, page) of audit entries, newest first."""
    q = select(audit_log)
    for col, value in ((audit_log.c.study_uid, study_uid), (audit_log.c.actor, actor), (audit_log.c.action, action)):
        if value is not None:
            q = q.where(col == value)
    if since is not None:
        q = q.where(audit_log.c.at >= since)
    if until is not None:
        q = q.where(audit_log.c.at < until)
    with db.read() as conn:
        total = conn.execute(select(func.count()).select_from(q.subquery())).scalar_one()
        rows = conn.execute(q.order_by(audit_log.c.id.desc()).limit(limit).offset(offset)).mappings().all()
    return total, [{**dict(r), "at": _aware(r["at"])} for r in rows]
