"""Reading the assembled series of one study: what the dispatcher weighs to run a pipeline on a study's best series."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import select

from radtriage.db.engine import Database
from radtriage.db.tables import jobs, series, studies


@dataclass(frozen=True)
class AssembledSeries:
    """One assembled series as its newest job's case has it (the header and count routing saw)."""

    series_uid: str
    header: dict[str, Any]  # with LocalizerCount, as assembly adds it
    instance_count: int  # localizers left out
    job_id: int
    job_state: str


def assembled_series(db: Database, study_uid: str) -> list[AssembledSeries]:
    """The series of a study that are assembled (closed, a job written; not reopened by a late instance),
    each with its newest job, in the order their jobs were written."""
    q = (
        select(series.c.series_uid, jobs.c.id, jobs.c.state, jobs.c.case)
        .join(studies, studies.c.id == series.c.study_id)
        .join(jobs, jobs.c.series_id == series.c.id)
        .where(studies.c.study_uid == study_uid, series.c.state == "ready")
        .order_by(jobs.c.id)
    )
    newest: dict[str, AssembledSeries] = {}
    with db.read() as conn:
        for r in conn.execute(q).all():
            case = dict(r.case or {})
            newest.pop(r.series_uid, None)  # a newer version's job replaces the older one, and moves to the end
            newest[r.series_uid] = AssembledSeries(r.series_uid, dict(case.get("header") or {}),
                                                   int(case.get("instance_count") or 0), r.id, r.state)
    return sorted(newest.values(), key=lambda s: s.job_id)
