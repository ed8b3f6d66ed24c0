"""The dose registry's rows: which closed series it has read, the dose reports, the examinations, their
flags, and the imported DRL sets. Plain reads and writes; what to write is `radtriage.dose`'s to decide.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, and_, delete, func, literal, select, union_all, update

from radtriage.db.clock import aware
from radtriage.db.tables import (dose_exams, dose_flags, dose_reads, dose_reports, drl_sets, instances, jobs, series,
                                 studies)


@dataclass(frozen=True)
class ClosedSeries:
    """A closed series version (its job) the registry has not read yet."""

    job_id: int
    series_id: int
    study_uid: str
    series_uid: str
    modality: str | None


def unread(conn: Connection, limit: int = 20) -> list[ClosedSeries]:
    """Jobs (closed series versions) with no ``dose_reads`` row, oldest first."""
    q = (select(jobs.c.id, jobs.c.series_id, series.c.series_uid, series.c.modality, studies.c.study_uid)
         .join(series, series.c.id == jobs.c.series_id).join(studies, studies.c.id == series.c.study_id)
         .outerjoin(dose_reads, dose_reads.c.job_id == jobs.c.id)
         .where(dose_reads.c.id.is_(None)).order_by(jobs.c.id).limit(limit))
    return [ClosedSeries(r.id, r.series_id, r.study_uid, r.series_uid, r.modality) for r in conn.execute(q)]


def series_files(conn: Connection, series_id: int) -> list[dict[str, Any]]:
    """The series' instances: path, SOP class, instance number, localizer or not; by instance number."""
    q = (select(instances.c.path, instances.c.sop_class_uid, instances.c.instance_number, instances.c.is_localizer)
         .where(instances.c.series_id == series_id).order_by(instances.c.instance_number, instances.c.id))
    return [dict(r._mapping) for r in conn.execute(q)]


def mark_read(conn: Connection, job_id: int, study_uid: str, outcome: str, now: dt.datetime) -> None:
    conn.execute(dose_reads.insert().values(job_id=job_id, study_uid=study_uid, outcome=outcome, read_at=now))


def add_report(conn: Connection, report: Mapping[str, Any], now: dt.datetime) -> bool:
    """Keep one report (``report``: `radtriage.dose.model.report_json`); a newer one of the same object
    replaces it. True when it is new or changed."""
    sop = report["sop_instance_uid"]
    old = conn.execute(select(dose_reports.c.id, dose_reports.c.report)
                       .where(dose_reports.c.sop_instance_uid == sop)).first()
    if old is not None and old.report == dict(report):
        return False
    if old is not None:
        conn.execute(delete(dose_reports).where(dose_reports.c.id == old.id))
    conn.execute(dose_reports.insert().values(
        study_uid=report["study_uid"], series_uid=report["series_uid"], sop_instance_uid=sop,
        source=report["source"], estimated=report["estimated"], modality=report["modality"][:16],
        report=dict(report), received_at=now))
    return True


def reports_of(conn: Connection, study_uid: str) -> list[dict[str, Any]]:
    q = select(dose_reports.c.report).where(dose_reports.c.study_uid == study_uid).order_by(dose_reports.c.id)
    return [dict(r.report) for r in conn.execute(q)]


def patient_key(conn: Connection, study_uid: str) -> str | None:
    """A one-way key of the study's patient (issuer and ID), to find their other examinations."""
    row = conn.execute(select(studies.c.patient_id, studies.c.patient_id_issuer)
                       .where(studies.c.study_uid == study_uid)).first()
    if row is None or not row.patient_id:
        return None
    return key_of(row.patient_id_issuer, row.patient_id)


def key_of(issuer: str | None, patient_id: str) -> str:
    """The one-way key of a patient: SHA-256 of issuer and ID (what ``dose_exams.patient_key`` holds)."""
    return hashlib.sha256(f"{issuer or ''}|{patient_id}".encode()).hexdigest()


def save_exam(conn: Connection, row: Mapping[str, Any], now: dt.datetime) -> int:
    """Insert or update the examination of ``row["study_uid"]``; its id."""
    got = conn.execute(select(dose_exams.c.id).where(dose_exams.c.study_uid == row["study_uid"])).scalar()
    if got is None:
        return conn.execute(dose_exams.insert().values(**row, updated_at=now)).inserted_primary_key[0]
    conn.execute(update(dose_exams).where(dose_exams.c.id == got).values(**row, updated_at=now))
    return int(got)


def earlier_times(conn: Connection, key: str, examination: str, study_uid: str, around: dt.datetime,
                  window: dt.timedelta) -> list[dt.datetime]:
    """When the same patient had the same examination (another study) within ``window`` of ``around``."""
    e = dose_exams.c
    q = select(e.performed_at).where(e.patient_key == key, e.examination == examination, e.study_uid != study_uid,
                                     e.performed_at >= around - window, e.performed_at <= around + window)
    return [aware(t) for t in conn.execute(q).scalars()]


def add_flags(conn: Connection, study_uid: str, flags: Iterable[Mapping[str, Any]], now: dt.datetime
              ) -> list[dict[str, Any]]:
    """Keep each flag once per study, reason and quantity; the new ones."""
    have = {(r.reason, r.quantity) for r in conn.execute(
        select(dose_flags.c.reason, dose_flags.c.quantity).where(dose_flags.c.study_uid == study_uid))}
    new = [dict(f) for f in flags if (f["reason"], f["quantity"]) not in have]
    for f in new:
        f["id"] = conn.execute(dose_flags.insert().values(study_uid=study_uid, created_at=now, **f)
                               ).inserted_primary_key[0]
    return new


def undigested(conn: Connection, before: dt.datetime) -> list[dict[str, Any]]:
    """Flags not urgent and not yet in a digest, created before ``before``, with their examination."""
    f, e = dose_flags.c, dose_exams.c
    q = (select(dose_flags, e.examination, e.facility, e.scanner, e.performed_at)
         .join(dose_exams, dose_exams.c.study_uid == f.study_uid)
         .where(f.urgent.is_(False), f.digested_at.is_(None), f.created_at < before).order_by(f.id))
    return [dict(r._mapping) for r in conn.execute(q)]


def mark_digested(conn: Connection, ids: Iterable[int], now: dt.datetime) -> None:
    ids = list(ids)
    if ids:
        conn.execute(update(dose_flags).where(dose_flags.c.id.in_(ids)).values(digested_at=now))


def exam_filters(examination: str | None = None, facility: str | None = None, scanner: str | None = None,
                 band: str | None = None, since: dt.datetime | None = None, until: dt.datetime | None = None
                 ) -> list[Any]:
    e = dose_exams.c
    conds = [(e.examination, examination), (e.facility, facility), (e.scanner, scanner), (e.band, band)]
    out = [col == v for col, v in conds if v is not None]
    if since is not None:
        out.append(e.performed_at >= since)
    if until is not None:
        out.append(e.performed_at < until)
    return out


def exams(conn: Connection, *filters: Any, flagged: bool = False, limit: int | None = None) -> Iterator[dict]:
    """Examinations (newest first) with their flags' reasons; ``flagged``: only those with a flag."""
    q = select(dose_exams).where(and_(True, *filters)).order_by(dose_exams.c.performed_at.desc(), dose_exams.c.id)
    if flagged:
        q = q.where(dose_exams.c.study_uid.in_(select(dose_flags.c.study_uid)))
    if limit is not None:
        q = q.limit(limit)
    rows = [dict(r._mapping) for r in conn.execute(q)]
    reasons: dict[str, list[str]] = {}
    uids = [r["study_uid"] for r in rows]
    for i in range(0, len(uids), 500):
        for f in conn.execute(select(dose_flags.c.study_uid, dose_flags.c.detail)
                              .where(dose_flags.c.study_uid.in_(uids[i:i + 500])).order_by(dose_flags.c.id)):
            reasons.setdefault(f.study_uid, []).append(f.detail)
    for r in rows:
        r["performed_at"] = aware(r["performed_at"])
        r["flags"] = reasons.get(r["study_uid"], [])
        yield r


def group_values(conn: Connection, column: str, by: str, *filters: Any) -> Iterator[tuple]:
    """(examination, band, phantom, group, value) of every mapped examination with a ``column`` value,
    sorted by the first four (the input of a local DRL; ``by`` is facility or scanner)."""
    e = dose_exams.c
    value, group = getattr(e, column), getattr(e, by)
    q = (select(e.examination, e.band, e.phantom_cm, group, value)
         .where(e.examination.is_not(None), e.band.is_not(None), value.is_not(None), *filters)
         .order_by(e.examination, e.band, e.phantom_cm, group, value))
    yield from conn.execute(q)


def local_drl_sql(conn: Connection, columns: Mapping[str, str], by: str, *filters: Any, min_groups: int = 1
                  ) -> list[tuple]:
    """The local DRL table in one PostgreSQL query: (quantity, examination, band, phantom, P75, P25, P50 of the
    medians per group, groups, examinations) for each quantity -> column of ``columns``. The medians per
    examination, band, phantom and group (``by``: facility or scanner) come from one scan of the covering index
    ``ix_dose_exams_local_drl_<by>`` in its order; percentile_cont is the linear interpolation between order
    statistics in both steps."""
    e = dose_exams.c
    group = getattr(e, by)
    keys = (e.examination, e.band, e.phantom_cm, group)
    per_group = [agg for c in columns.values() for agg in (func.percentile_cont(0.5).within_group(getattr(e, c))
                                                           .label(f"m_{c}"), func.count(getattr(e, c)).label(f"n_{c}"))]
    m = (select(*keys, *per_group).where(e.examination.is_not(None), e.band.is_not(None), *filters)
         .group_by(*keys).cte("medians"))
    parts = []
    for quantity, c in columns.items():
        median = m.c[f"m_{c}"]
        parts.append(select(literal(quantity).label("quantity"), m.c.examination, m.c.band, m.c.phantom_cm,
                            *[func.percentile_cont(p).within_group(median) for p in (0.75, 0.25, 0.5)],
                            func.count(), func.sum(m.c[f"n_{c}"]))
                     .where(median.is_not(None)).group_by(m.c.examination, m.c.band, m.c.phantom_cm)
                     .having(func.count() >= min_groups))
    return [tuple(r) for r in conn.execute(union_all(*parts))]


# --- DRL sets ---------------------------------------------------------------------------


def import_set(conn: Connection, name: str, version: str, sha256: str, document: Mapping[str, Any], by: str,
               now: dt.datetime) -> str:
    """Keep a DRL set: ``imported``, ``same`` (these bytes again) or ``conflict`` (that name and version
    with other contents: a set is never changed, a correction is a new version)."""
    old = conn.execute(select(drl_sets.c.sha256).where(drl_sets.c.name == name, drl_sets.c.version == version)
                       ).scalar()
    if old is not None:
        return "same" if old == sha256 else "conflict"
    conn.execute(drl_sets.insert().values(name=name, version=version, sha256=sha256, document=dict(document),
                                          imported_at=now, imported_by=by[:64]))
    return "imported"


def get_set(conn: Connection, name: str, version: str) -> dict[str, Any] | None:
    doc = conn.execute(select(drl_sets.c.document).where(drl_sets.c.name == name, drl_sets.c.version == version)
                       ).scalar()
    return dict(doc) if doc is not None else None


def list_sets(conn: Connection) -> list[dict[str, Any]]:
    q = select(drl_sets.c.name, drl_sets.c.version, drl_sets.c.sha256, drl_sets.c.imported_at,
               drl_sets.c.imported_by).order_by(drl_sets.c.id)
    return [dict(r._mapping) for r in conn.execute(q)]


def accession_of(conn: Connection, study_uid: str) -> str | None:
    return conn.execute(select(studies.c.accession_number).where(studies.c.study_uid == study_uid)).scalar()


def drl_verdict(conn: Connection, study_uid: str) -> tuple[bool, list[str]] | None:
    """Whether the study's examination was judged above its reference level, with those flags' details;
    None when the registry holds no examination for it."""
    if conn.execute(select(dose_exams.c.id).where(dose_exams.c.study_uid == study_uid)).first() is None:
        return None
    details = list(conn.execute(select(dose_flags.c.detail).where(
        dose_flags.c.study_uid == study_uid, dose_flags.c.reason == "above_drl").order_by(dose_flags.c.id)).scalars())
    return bool(details), details
