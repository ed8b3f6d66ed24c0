"""Reads for DICOMweb (QIDO-RS searches and WADO-RS retrievals), from the index only.

A search names its level (``study``, ``series``, ``instance``), the UIDs it is
scoped to and a `Criterion` per DICOM keyword of `ATTRIBUTES`; it returns one
dict per match, keyed by DICOM keyword, with the counts a QIDO-RS answer
carries (series and instances of a study, instances of a series, the
modalities of a study). Retrievals get the stored files of a study, series or
instance (`instance_files`). Matching is on what the index holds: no file is
opened here.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from sqlalchemy import ColumnElement, Select, and_, distinct, exists, func, or_, select

from radtriage.db.engine import Database
from radtriage.db.tables import instances, series, studies

LEVELS = ("study", "series", "instance")

# DICOM keyword -> (level, column): what a search can match on and answer with
ATTRIBUTES: dict[str, tuple[str, Any]] = {
    "StudyInstanceUID": ("study", studies.c.study_uid),
    "PatientID": ("study", studies.c.patient_id),
    "IssuerOfPatientID": ("study", studies.c.patient_id_issuer),
    "PatientName": ("study", studies.c.patient_name),
    "PatientBirthDate": ("study", studies.c.patient_birth_date),
    "PatientSex": ("study", studies.c.patient_sex),
    "AccessionNumber": ("study", studies.c.accession_number),
    "StudyDate": ("study", studies.c.study_date),
    "StudyTime": ("study", studies.c.study_time),
    "StudyDescription": ("study", studies.c.study_description),
    "SeriesInstanceUID": ("series", series.c.series_uid),
    "Modality": ("series", series.c.modality),
    "SeriesNumber": ("series", series.c.series_number),
    "SeriesDescription": ("series", series.c.series_description),
    "BodyPartExamined": ("series", series.c.body_part),
    "SOPInstanceUID": ("instance", instances.c.sop_instance_uid),
    "SOPClassUID": ("instance", instances.c.sop_class_uid),
    "InstanceNumber": ("instance", instances.c.instance_number),
}
# what a result at each level carries besides its columns (ModalitiesInStudy is also matched on)
COMPUTED = {"study": ("ModalitiesInStudy", "NumberOfStudyRelatedSeries", "NumberOfStudyRelatedInstances"),
            "series": ("NumberOfSeriesRelatedInstances",), "instance": ()}
_ESCAPE = "\\"


@dataclass(frozen=True)
class Criterion:
    """How one attribute must match: any of ``values`` exactly, a ``pattern`` with ``*`` and ``?``,
    or a ``low``..``high`` range (either end open). ``fold`` ignores case (person names);
    ``fuzzy`` also lets a name match by the start of any of its components."""

    values: tuple[str, ...] = ()
    pattern: str | None = None
    low: str | None = None
    high: str | None = None
    is_range: bool = False
    fold: bool = False
    fuzzy: bool = False


@dataclass(frozen=True)
class Scope:
    """The UIDs of the resource path a search or retrieval is under."""

    study_uid: str | None = None
    series_uid: str | None = None
    sop_instance_uid: str | None = None


@dataclass(frozen=True)
class InstanceFile:
    study_uid: str
    series_uid: str
    sop_instance_uid: str
    sop_class_uid: str
    transfer_syntax_uid: str
    path: str
    size_bytes: int


def _like(text: str) -> str:
    """A DICOM wildcard pattern as a LIKE pattern (``_escape``d)."""
    out = []
    for ch in text:
        if ch in ("%", "_", _ESCAPE):
            out.append(_ESCAPE + ch)
        else:
            out.append({"*": "%", "?": "_"}.get(ch, ch))
    return "".join(out)


def _condition(column: Any, c: Criterion) -> ColumnElement[bool]:
    if c.is_range:
        parts = [column >= c.low] if c.low else []
        parts += [column <= c.high] if c.high else []
        return and_(column.is_not(None), *parts)
    col = func.lower(column) if c.fold else column
    if c.pattern is not None:
        pattern = _like(c.pattern.lower() if c.fold else c.pattern)
        return col.like(pattern, escape=_ESCAPE)
    values = [v.lower() for v in c.values] if c.fold else list(c.values)
    if c.fuzzy:
        starts = [col.like(_like(v) + "%", escape=_ESCAPE) for v in values]
        starts += [col.like("%^" + _like(v) + "%", escape=_ESCAPE) for v in values]
        return or_(*starts)
    if column.type.python_type is int:
        values = [int(v) for v in values]  # checked by the caller
    return col.in_(values)


def _modalities_in_study(c: Criterion) -> ColumnElement[bool]:
    return exists().where(series.c.study_id == studies.c.id, _condition(series.c.modality, c))


def _base(level: str) -> Select[Any]:
    if level == "study":
        return select(studies)
    if level == "series":
        return select(series, studies).join(studies, studies.c.id == series.c.study_id)
    return (select(instances, series, studies).join(series, series.c.id == instances.c.series_id)
            .join(studies, studies.c.id == series.c.study_id))


def _scoped(q: Select[Any], scope: Scope) -> Select[Any]:
    if scope.study_uid is not None:
        q = q.where(studies.c.study_uid == scope.study_uid)
    if scope.series_uid is not None:
        q = q.where(series.c.series_uid == scope.series_uid)
    return q


def _order(level: str) -> tuple[Any, ...]:
    if level == "study":  # the most recently received first, stable for paging
        return (studies.c.id.desc(),)
    if level == "series":
        return (studies.c.id.desc(), series.c.series_number, series.c.id)
    return (studies.c.id.desc(), series.c.series_number, series.c.id, instances.c.instance_number, instances.c.id)


def answers(level: str, keyword: str) -> bool:
    """Whether a result at ``level`` can carry ``keyword`` (its own level's, the levels' above, its counts)."""
    return keyword in COMPUTED[level] or (keyword != "ModalitiesInStudy" and searchable(level, keyword))


def searchable(level: str, keyword: str) -> bool:
    """Whether a search at ``level`` can match on ``keyword`` (its own level and the levels above)."""
    if keyword == "ModalitiesInStudy":
        return level == "study"
    found = ATTRIBUTES.get(keyword)
    return found is not None and LEVELS.index(found[0]) <= LEVELS.index(level)


def search(db: Database, level: str, scope: Scope, filters: Mapping[str, Criterion], limit: int, offset: int
           ) -> list[dict[str, Any]]:
    """Up to ``limit`` matches after ``offset``, each a dict keyed by DICOM keyword (None: not held)."""
    q = _scoped(_base(level), scope)
    for keyword, criterion in filters.items():
        if keyword == "ModalitiesInStudy":
            q = q.where(_modalities_in_study(criterion))
        else:
            q = q.where(_condition(ATTRIBUTES[keyword][1], criterion))
    q = q.order_by(*_order(level)).limit(limit).offset(offset)
    wanted = [k for k, (lvl, _) in ATTRIBUTES.items() if LEVELS.index(lvl) <= LEVELS.index(level)]
    with db.read() as conn:
        rows = conn.execute(q).mappings().all()
        out = [{k: row[ATTRIBUTES[k][1]] for k in wanted} for row in rows]
        if level == "study":
            _study_counts(conn, out, [row[studies.c.id] for row in rows])
        elif level == "series":
            _series_counts(conn, out, [row[series.c.id] for row in rows])
    return out


def _study_counts(conn: Any, out: list[dict[str, Any]], ids: list[int]) -> None:
    counts = {r.study_id: r for r in conn.execute(
        select(series.c.study_id, func.count(distinct(series.c.id)).label("n_series"),
               func.count(instances.c.id).label("n_instances"))
        .join(instances, instances.c.series_id == series.c.id)
        .where(series.c.study_id.in_(ids)).group_by(series.c.study_id))}
    modalities: dict[int, list[str]] = {}
    for r in conn.execute(select(series.c.study_id, series.c.modality).distinct()
                          .where(series.c.study_id.in_(ids), series.c.modality.is_not(None))
                          .order_by(series.c.modality)):
        modalities.setdefault(r.study_id, []).append(r.modality)
    for item, study_id in zip(out, ids, strict=True):
        c = counts.get(study_id)
        item["NumberOfStudyRelatedSeries"] = c.n_series if c else 0
        item["NumberOfStudyRelatedInstances"] = c.n_instances if c else 0
        item["ModalitiesInStudy"] = modalities.get(study_id, [])


def _series_counts(conn: Any, out: list[dict[str, Any]], ids: list[int]) -> None:
    counts = dict(conn.execute(select(instances.c.series_id, func.count(instances.c.id))
                               .where(instances.c.series_id.in_(ids)).group_by(instances.c.series_id)).all())
    for item, series_id in zip(out, ids, strict=True):
        item["NumberOfSeriesRelatedInstances"] = counts.get(series_id, 0)


def known(db: Database, scope: Scope) -> bool:
    """Whether the index holds the study (and series, and instance) that ``scope`` names."""
    q = _scoped(_base("instance" if scope.sop_instance_uid else "series" if scope.series_uid else "study"), scope)
    if scope.sop_instance_uid is not None:
        q = q.where(instances.c.sop_instance_uid == scope.sop_instance_uid)
    with db.read() as conn:
        return conn.execute(q.limit(1)).first() is not None


def instance_files(db: Database, scope: Scope) -> list[InstanceFile]:
    """The stored files under ``scope`` (a study, a series or one instance), in series and instance order."""
    q = _scoped(_base("instance"), scope)
    if scope.sop_instance_uid is not None:
        q = q.where(instances.c.sop_instance_uid == scope.sop_instance_uid)
    q = q.with_only_columns(studies.c.study_uid, series.c.series_uid, instances.c.sop_instance_uid,
                            instances.c.sop_class_uid, instances.c.transfer_syntax_uid, instances.c.path,
                            instances.c.size_bytes).order_by(*_order("instance")[1:])
    with db.read() as conn:
        return [InstanceFile(**r) for r in conn.execute(q).mappings()]
