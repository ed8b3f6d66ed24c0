"""The pregnancy statuses the site's RIS sent (`radtriage.dose.ris`): kept as received, found for an
examination by its accession (else its patient's one-way key, near the examination's time), and those not
yet applied to the examinations already judged. Plain reads and writes.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from typing import Any

from sqlalchemy import Connection, select, update

from radtriage.db.tables import dose_exams, ris_pregnancy, studies

# a status sent for the patient (no accession) counts for an examination performed within this of it
PATIENT_STATUS_BEFORE = dt.timedelta(days=7)
PATIENT_STATUS_AFTER = dt.timedelta(days=1)


def keep(conn: Connection, values: Mapping[str, Any]) -> int:
    """Keep one status (the table's columns but id and applied_at); its id."""
    return int(conn.execute(ris_pregnancy.insert().values(**values)).inserted_primary_key[0])


def status_for(conn: Connection, accession: str | None, patient_key: str | None,
               performed_at: dt.datetime) -> str | None:
    """The RIS's latest status for the order ``accession``; where it sent none for it, its latest for the
    patient recorded from `PATIENT_STATUS_BEFORE` before ``performed_at`` to `PATIENT_STATUS_AFTER` after; None
    when the RIS said nothing."""
    r = ris_pregnancy.c
    performed_at = performed_at.astimezone(dt.UTC)
    latest = (r.recorded_at.desc(), r.id.desc())
    if accession:
        got = conn.execute(select(r.status).where(r.accession_number == accession).order_by(*latest).limit(1)).scalar()
        if got is not None:
            return str(got)
    if patient_key:
        q = (select(r.status).where(r.accession_number.is_(None), r.patient_key == patient_key,
                                    r.recorded_at >= performed_at - PATIENT_STATUS_BEFORE,
                                    r.recorded_at <= performed_at + PATIENT_STATUS_AFTER)
             .order_by(*latest).limit(1))
        got = conn.execute(q).scalar()
        if got is not None:
            return str(got)
    return None


def unapplied(conn: Connection, limit: int = 20) -> list[dict[str, Any]]:
    """Statuses not yet applied to the examinations already judged, oldest first."""
    q = (select(ris_pregnancy.c.id, ris_pregnancy.c.accession_number, ris_pregnancy.c.patient_key)
         .where(ris_pregnancy.c.applied_at.is_(None)).order_by(ris_pregnancy.c.id).limit(limit))
    return [dict(row._mapping) for row in conn.execute(q)]


def judged_studies(conn: Connection, accession: str | None, patient_key: str | None) -> list[str]:
    """The studies of the registry's examinations that a status names: its order's where it names one, else
    its patient's."""
    if accession:
        cond = dose_exams.c.study_uid.in_(select(studies.c.study_uid).where(studies.c.accession_number == accession))
    elif patient_key:
        cond = dose_exams.c.patient_key == patient_key
    else:
        return []
    return list(conn.execute(select(dose_exams.c.study_uid).where(cond).order_by(dose_exams.c.id)).scalars())


def mark_applied(conn: Connection, status_id: int, now: dt.datetime) -> None:
    conn.execute(update(ris_pregnancy).where(ris_pregnancy.c.id == status_id).values(applied_at=now))
