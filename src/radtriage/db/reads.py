"""Rows of the silent trial and of stored-case validation: readers' truths for shadow results, and the stored
cases (study, series header, result) they are about.

What a truth means and what the evidence is are decided in `radtriage.validation.truth` and
`radtriage.governance.reads`; this module reads and writes rows.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection, func, select

from radtriage.db import audit
from radtriage.db.clock import aware, utcnow
from radtriage.db.engine import Database
from radtriage.db.tables import reads, results, series, studies


def shadow_result(db: Database, result_id: int) -> dict[str, Any] | None:
    """A result with its state and its study's accession, or None."""
    q = (select(results.c.id, results.c.pipeline_id, results.c.study_uid, results.c.series_uid, results.c.task,
                results.c.state, results.c.result, results.c.model_id, results.c.model_version)
         .where(results.c.id == result_id))
    with db.read() as conn:
        row = conn.execute(q).mappings().first()
    return dict(row) if row is not None else None


def record_read(db: Database, result: dict[str, Any], truth: dict[str, Any], user_id: int, username: str,
                role: str, client: str | None = None) -> int:
    """Keep one reader's truth for a result, with its audit entry, in one transaction; returns its id."""
    now = utcnow()
    with db.write() as conn:
        rid = conn.execute(reads.insert().values(
            result_id=result["id"], study_uid=result["study_uid"], pipeline_id=result["pipeline_id"],
            task=result["task"], truth=truth, user_id=user_id, read_by=username, read_at=now)).inserted_primary_key[0]
        audit.record(conn, "truth_recorded", username, role, result["study_uid"], client=client, at=now,
                     detail={"result_id": result["id"], "pipeline": result["pipeline_id"], "read": int(rid)})
    return int(rid)


def _newest_per_result(conn: Connection, pipeline_id: str) -> list[Any]:
    newest = select(func.max(reads.c.id)).where(reads.c.pipeline_id == pipeline_id).group_by(reads.c.result_id)
    q = (select(reads.c.id.label("read_id"), reads.c.truth, reads.c.read_by, reads.c.read_at, results.c.id,
                results.c.study_uid, results.c.series_uid, results.c.task, results.c.model_id,
                results.c.model_version, results.c.result, results.c.created_at, studies.c.accession_number,
                studies.c.patient_sex, series.c.header)
         .join(results, results.c.id == reads.c.result_id)
         .join(series, series.c.series_uid == results.c.series_uid)
         .join(studies, studies.c.id == series.c.study_id)
         .where(reads.c.id.in_(newest), results.c.state == "shadow")
         .order_by(reads.c.id))
    return list(conn.execute(q).mappings())


def read_cases(db: Database, pipeline_id: str) -> list[dict[str, Any]]:
    """The shadow results of a pipeline that a reader has read, each with its newest read, its study's
    accession and sex and its series header, oldest read first."""
    with db.read() as conn:
        return [{**dict(r), "read_at": aware(r["read_at"]), "created_at": aware(r["created_at"])}
                for r in _newest_per_result(conn, pipeline_id)]


def reads_of(db: Database, result_ids: list[int]) -> dict[int, dict[str, Any]]:
    """The newest read of each of these results: result id -> {id, truth, read_by, read_at}."""
    if not result_ids:
        return {}
    q = (select(reads.c.id, reads.c.result_id, reads.c.truth, reads.c.read_by, reads.c.read_at)
         .where(reads.c.result_id.in_(result_ids)).order_by(reads.c.id))
    with db.read() as conn:
        return {r.result_id: {"id": r.id, "truth": r.truth, "read_by": r.read_by, "read_at": aware(r.read_at)}
                for r in conn.execute(q)}


def studies_with_accession(db: Database, accession: str) -> list[dict[str, Any]]:
    """The stored studies with this accession number: uid and patient sex."""
    q = select(studies.c.study_uid, studies.c.patient_sex).where(studies.c.accession_number == accession)
    with db.read() as conn:
        return [dict(r) for r in conn.execute(q).mappings()]
