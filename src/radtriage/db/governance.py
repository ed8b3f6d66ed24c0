"""Rows of pipeline governance: the decisions taken on each pipeline (never updated or deleted), the
shadow results only commissioning readers see, and the unread studies a demotion re-triages.

The rules (what state a pipeline is in, what a promotion needs) live in `radtriage.governance`.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Connection, func, select

from radtriage.db.clock import aware, utcnow
from radtriage.db.engine import Database
from radtriage.db.tables import decision_reports, model_decisions, results, worklist

DECISION_KEYS = ("pipeline_id", "fingerprint", "model_id", "model_version", "model_sha256", "thresholds", "state",
                 "action", "reason", "evidence", "decided_by")


def record_decision(conn: Connection, decision: dict[str, Any], at: datetime | None = None) -> int:
    """Add one decision inside the caller's transaction (with its audit entry); returns its id."""
    values = {k: decision.get(k) for k in DECISION_KEYS}
    return conn.execute(model_decisions.insert().values(decided_at=at or utcnow(), **values)).inserted_primary_key[0]


def record_report(conn: Connection, decision_id: int, signed: str, signature: str, report: str) -> None:
    """Keep a decision's signature and commissioning report, in the decision's transaction."""
    conn.execute(decision_reports.insert().values(decision_id=decision_id, signed=signed, signature=signature,
                                                  report=report, created_at=utcnow()))


def decision_report(db: Database, decision_id: int) -> dict[str, Any] | None:
    """A decision's kept signature and report: ``{"signed", "signature", "report", "created_at"}``, or None."""
    q = select(decision_reports).where(decision_reports.c.decision_id == decision_id)
    with db.read() as conn:
        row = conn.execute(q).mappings().first()
    return {**dict(row), "created_at": aware(row["created_at"])} if row is not None else None


def _decision(row: Any) -> dict[str, Any]:
    return {**dict(row._mapping), "decided_at": aware(row.decided_at)}


def decisions(db: Database, pipeline_id: str | None = None) -> list[dict[str, Any]]:
    """Every decision (of one pipeline), oldest first."""
    q = select(model_decisions).order_by(model_decisions.c.id)
    if pipeline_id is not None:
        q = q.where(model_decisions.c.pipeline_id == pipeline_id)
    with db.read() as conn:
        return [_decision(r) for r in conn.execute(q)]


def latest_decisions(db: Database) -> dict[str, dict[str, Any]]:
    """The newest decision of each pipeline that has one, whatever its fingerprint."""
    newest = select(func.max(model_decisions.c.id)).group_by(model_decisions.c.pipeline_id)
    with db.read() as conn:
        rows = conn.execute(select(model_decisions).where(model_decisions.c.id.in_(newest)))
        return {r.pipeline_id: _decision(r) for r in rows}


def withdrawn(db: Database) -> dict[str, str]:
    """Pipelines whose newest decision took them out of live use (demoted or suspended): id -> reason."""
    return {p: d["reason"] for p, d in latest_decisions(db).items() if d["state"] != "live"}


def shadow_results(db: Database, pipeline_id: str | None = None, limit: int = 200) -> list[dict[str, Any]]:
    """The newest results recorded while their pipeline was in shadow."""
    q = (select(results.c.id, results.c.pipeline_id, results.c.pipeline_version, results.c.study_uid,
                results.c.series_uid, results.c.task, results.c.model_id, results.c.model_version,
                results.c.positive, results.c.priority, results.c.result, results.c.created_at)
         .where(results.c.state == "shadow").order_by(results.c.id.desc()).limit(limit))
    if pipeline_id is not None:
        q = q.where(results.c.pipeline_id == pipeline_id)
    with db.read() as conn:
        return [{**dict(r), "created_at": aware(r.created_at)} for r in conn.execute(q).mappings()]


def unread_studies_with(db: Database, pipeline_id: str) -> list[int]:
    """Ids of the unread worklist studies holding a live result of ``pipeline_id``."""
    q = (select(worklist.c.study_id).distinct()
         .join(results, results.c.study_uid == worklist.c.study_uid)
         .where(worklist.c.status == "unread", results.c.pipeline_id == pipeline_id, results.c.state == "live"))
    with db.read() as conn:
        return list(conn.execute(q).scalars())
