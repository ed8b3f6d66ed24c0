"""Series as plain rows: those still receiving and closing one into a job (assembly decides which), and the
assembled series of a study (what the dispatcher weighs to run a pipeline on a study's best series)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, func, select, update

from radtriage.db.clock import aware
from radtriage.db.engine import Database
from radtriage.db.tables import associations, instances, jobs, series, studies


@dataclass(frozen=True)
class Receiving:
    """A series still receiving, with what assembly's completeness rule needs."""

    id: int
    series_uid: str
    study_uid: str
    version: int
    header: dict[str, Any]
    accession: str | None
    storage_dir: str
    first_received_at: datetime
    last_received_at: datetime
    association_id: str | None  # the association that last delivered to it (None: STOW-RS, import)
    association_closed_at: datetime | None
    calling_ae: str | None


def receiving(conn: Connection, last_before: datetime) -> list[Receiving]:
    """Series in state ``receiving`` whose last instance arrived at or before ``last_before``."""
    a = associations
    q = (
        select(series.c.id, series.c.series_uid, series.c.version, series.c.header, series.c.storage_dir,
               series.c.first_received_at, series.c.last_received_at, series.c.last_association_id,
               studies.c.study_uid, studies.c.accession_number, a.c.calling_ae, a.c.closed_at)
        .join(studies, studies.c.id == series.c.study_id)
        .outerjoin(a, a.c.id == series.c.last_association_id)
        .where(series.c.state == "receiving", series.c.last_received_at <= last_before)
        .order_by(series.c.id)
    )
    return [Receiving(id=r.id, series_uid=r.series_uid, study_uid=r.study_uid, version=r.version,
                      header=dict(r.header or {}), accession=r.accession_number, storage_dir=r.storage_dir,
                      first_received_at=aware(r.first_received_at), last_received_at=aware(r.last_received_at),
                      association_id=r.last_association_id, association_closed_at=aware(r.closed_at),
                      calling_ae=r.calling_ae)
            for r in conn.execute(q).all()]


def instance_counts(conn: Connection, series_id: int) -> tuple[int, int]:
    """(instances, localizers) of a series."""
    row = conn.execute(select(func.count(), func.count().filter(instances.c.is_localizer.is_(True)))
                       .where(instances.c.series_id == series_id)).one()
    return row[0], row[1]


def close(conn: Connection, series_id: int, version: int, case: dict[str, Any], now: datetime) -> None:
    """Mark the series ready and write its ``ready`` job with ``case`` as the job's case document."""
    conn.execute(update(series).where(series.c.id == series_id).values(state="ready", closed_at=now))
    conn.execute(jobs.insert().values(case_id=case["case_id"], series_id=series_id, series_version=version,
                                      state="ready", attempts=0, case=case, created_at=now, updated_at=now))


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
