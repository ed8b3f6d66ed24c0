"""Received instances: indexing one (with its study and series) in one transaction, and reading them back.

`index_instance` is the only way an instance enters the index: it checks the
instance against what is stored (`StoreConflict`: another patient's study, a
UID stored elsewhere), creates or reopens its series, and records a
replacement when the same SOP Instance UID comes with other bytes.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, bindparam, select, update

from radtriage.db.clock import utcnow
from radtriage.db.engine import Database
from radtriage.db.tables import instance_replacements, instances, series, studies


@dataclass(frozen=True)
class StoredInstance:
    sop_instance_uid: str
    path: str
    sha256: str
    size_bytes: int
    study_uid: str
    series_uid: str


@dataclass(frozen=True)
class Origin:
    """Where an instance came from: for the index, the audit and the logs."""

    source: str  # "dimse" | "stow" | "import"
    calling_ae: str | None = None
    association_id: str | None = None


@dataclass(frozen=True)
class InstanceIds:
    """An instance's identifiers as the index keeps them; the ingest stage's parsed header extends it
    with the two readers below (`radtriage.ingest.parse.InstanceHeader`)."""

    study_uid: str
    series_uid: str
    sop_instance_uid: str
    sop_class_uid: str
    transfer_syntax_uid: str
    instance_number: int | None
    is_localizer: bool

    def study_fields(self) -> dict[str, str | None]:
        """Patient and study fields for the index (read only for a new study)."""
        raise NotImplementedError

    def series_header(self) -> dict[str, Any]:
        """The routing header of the series (read only for a new series or a localizer's)."""
        raise NotImplementedError


_HEADER_COLUMNS = ("sop_class_uid", "transfer_syntax_uid", "instance_number", "is_localizer")


@dataclass(frozen=True)
class NewInstance:
    """One received instance, already durable on disk at ``path``, to be indexed."""

    header: InstanceIds
    path: str
    size_bytes: int
    sha256: str
    origin: Origin

    def row(self, series_id: int, now: datetime) -> dict[str, Any]:
        """The instances row (without its SOP Instance UID)."""
        h = self.header
        return {"series_id": series_id, "path": self.path, "size_bytes": self.size_bytes, "sha256": self.sha256,
                "received_at": now, **{k: getattr(h, k) for k in _HEADER_COLUMNS}, **asdict(self.origin)}


class StoreConflict(Exception):
    """An instance contradicts what the index holds; nothing of it was written.

    ``kind``: ``patient_mismatch`` (its study is stored under another patient), ``sop_elsewhere`` (its
    SOP Instance UID is stored in another series or study) or ``series_elsewhere`` (its Series Instance
    UID is stored in another study). Carries field names and UIDs, never patient data.
    """

    PATIENT_MISMATCH = "patient_mismatch"
    SOP_ELSEWHERE = "sop_elsewhere"
    SERIES_ELSEWHERE = "series_elsewhere"

    def __init__(self, kind: str, mismatch: tuple[str, ...] = (), existing_study_uid: str | None = None,
                 existing_series_uid: str | None = None) -> None:
        super().__init__(f"{kind}: {', '.join(mismatch) or existing_series_uid or existing_study_uid}")
        self.kind = kind
        self.mismatch = mismatch
        self.existing_study_uid = existing_study_uid
        self.existing_series_uid = existing_series_uid


# The patient fields that name a patient, compared where both the stored study and the instance have them.
PATIENT_FIELDS = ("patient_id", "patient_id_issuer", "patient_name", "patient_birth_date")


def _person_name(value: str) -> str:
    """A Person Name compared as a PACS would: its alphabetic group, components trimmed, case ignored."""
    components = [c.strip().upper() for c in value.split("=")[0].split("^")]
    while components and not components[-1]:
        components.pop()
    return "^".join(components)


def patient_mismatch(stored: Any, incoming: dict[str, str | None]) -> tuple[str, ...]:
    """The patient fields in which an instance contradicts its stored study: () when it agrees.

    Patient ID, and its issuer where both have one; name and birth date where both have them. So a
    patient is the issuer-qualified ID: the same number under another Issuer of Patient ID (another
    site's register, at a hub that edge gateways forward to) is another patient; an ID without an
    issuer is not contradicted by one (an edge adds its site's where the scanner left it empty).
    """
    out = []
    for name in PATIENT_FIELDS:
        a, b = (str(v or "").strip() for v in (stored[name], incoming.get(name)))
        if name == "patient_name":
            a, b = _person_name(a), _person_name(b)
        if a and b and a != b:
            out.append(name)
    return tuple(out)


# Statements of the ingest hot path, built once: building an expression per
# call costs more than running it (~0.25 ms against ~0.08 ms on SQLite here).
_FIND_INSTANCE = (
    select(instances.c.path, instances.c.sha256, instances.c.size_bytes, series.c.series_uid, studies.c.study_uid)
    .join(series, series.c.id == instances.c.series_id)
    .join(studies, studies.c.id == series.c.study_id)
    .where(instances.c.sop_instance_uid == bindparam("uid"))
)
_FIND_STUDY = select(studies.c.id, *(studies.c[name] for name in PATIENT_FIELDS)).where(
    studies.c.study_uid == bindparam("uid")
)
_FIND_SERIES = (
    select(series.c.id, series.c.study_id, series.c.state, series.c.header_from_localizer, studies.c.study_uid)
    .join(studies, studies.c.id == series.c.study_id)
    .where(series.c.series_uid == bindparam("uid"))
)
_INSERT_INSTANCE = instances.insert()


def _find(conn: Connection, sop_instance_uid: str) -> StoredInstance | None:
    row = conn.execute(_FIND_INSTANCE, {"uid": sop_instance_uid}).first()
    if row is None:
        return None
    return StoredInstance(sop_instance_uid, row.path, row.sha256, row.size_bytes, row.study_uid, row.series_uid)


def _check(conn: Connection, key: InstanceIds, existing: StoredInstance | None) -> tuple[Any, Any]:
    """The instance's study and series rows (None: new); raises `StoreConflict` where it contradicts them."""
    if existing is not None and (existing.study_uid, existing.series_uid) != (key.study_uid, key.series_uid):
        raise StoreConflict(StoreConflict.SOP_ELSEWHERE, existing_study_uid=existing.study_uid,
                            existing_series_uid=existing.series_uid)
    study = conn.execute(_FIND_STUDY, {"uid": key.study_uid}).first()
    if study is not None:
        mismatch = patient_mismatch(study._mapping, key.study_fields())
        if mismatch:
            raise StoreConflict(StoreConflict.PATIENT_MISMATCH, mismatch)
    # a series is the same only within the same study: a Series Instance UID stored under another study
    # is a collision, never a reason to move the series
    row = conn.execute(_FIND_SERIES, {"uid": key.series_uid}).first()
    if row is not None and row.study_uid != key.study_uid:
        raise StoreConflict(StoreConflict.SERIES_ELSEWHERE, existing_study_uid=row.study_uid,
                            existing_series_uid=key.series_uid)
    return study, row


def _series_for(conn: Connection, inst: NewInstance, study: Any, row: Any, now: datetime) -> int:
    """The series row of an instance: created (with its study), touched or reopened as needed."""
    hdr, association_id = inst.header, inst.origin.association_id
    if study is None:
        study_id = conn.execute(
            studies.insert().values(study_uid=hdr.study_uid, created_at=now, **hdr.study_fields())
        ).inserted_primary_key[0]
    else:
        study_id = study.id
    if row is None:
        h = hdr.series_header()
        return conn.execute(
            series.insert().values(
                study_id=study_id,
                series_uid=hdr.series_uid,
                modality=(h.get("Modality") or None),
                series_number=_int_or_none(h.get("SeriesNumber")),
                series_description=(str(h["SeriesDescription"])[:64] if h.get("SeriesDescription") else None),
                body_part=(str(h["BodyPartExamined"])[:16] if h.get("BodyPartExamined") else None),
                header=h,
                header_from_localizer=hdr.is_localizer,
                state="receiving",
                version=1,
                first_received_at=now,
                last_received_at=now,
                last_association_id=association_id,
                storage_dir=str(Path(inst.path).parent),
            )
        ).inserted_primary_key[0]
    values: dict[str, Any] = {"last_received_at": now, "last_association_id": association_id}
    if row.state != "receiving":
        # a late or changed instance reopens a closed series as a new version
        values.update(state="receiving", version=series.c.version + 1, closed_at=None)
    if row.header_from_localizer and not hdr.is_localizer:
        # the series header describes the images, not the scout
        values.update(header=hdr.series_header(), header_from_localizer=False)
    conn.execute(update(series).where(series.c.id == row.id).values(**values))
    return row.id


def _int_or_none(v: Any) -> int | None:
    try:
        return int(v) if v not in (None, "") else None
    except (TypeError, ValueError):
        return None


def index_instance(
    db: Database,
    hdr: InstanceIds,
    prepare: Callable[[StoredInstance | None], NewInstance | None],
) -> tuple[NewInstance | None, StoredInstance | None]:
    """Check, look up and index one instance in a single write transaction.

    An instance that contradicts the index (see `StoreConflict`) raises before ``prepare`` runs.
    ``prepare(existing)`` then runs inside the transaction with what the index already holds for the
    SOP Instance UID (in the same series); it puts the file in place and returns the row to write, or
    None when there is nothing to write (a duplicate). Returns what was written and what it replaced.
    Raises `IntegrityError` when a concurrent writer indexed the same UID first.
    """
    now = utcnow()
    uid = hdr.sop_instance_uid
    with db.write() as conn:
        existing = _find(conn, uid)
        study, series_row = _check(conn, hdr, existing)
        inst = prepare(existing)
        if inst is None:
            return None, existing
        row = inst.row(_series_for(conn, inst, study, series_row, now), now)
        if existing is None:
            conn.execute(_INSERT_INSTANCE, {"sop_instance_uid": uid, **row})
            return inst, None
        conn.execute(update(instances).where(instances.c.sop_instance_uid == uid).values(**row))
        conn.execute(instance_replacements.insert().values(
            sop_instance_uid=uid, old_sha256=existing.sha256, new_sha256=inst.sha256, old_path=existing.path,
            calling_ae=inst.origin.calling_ae, source=inst.origin.source, replaced_at=now))
        return inst, existing


def replacements(db: Database, sop_instance_uid: str) -> list[dict[str, Any]]:
    with db.read() as conn:
        rows = conn.execute(
            select(instance_replacements)
            .where(instance_replacements.c.sop_instance_uid == sop_instance_uid)
            .order_by(instance_replacements.c.id)
        ).mappings()
        return [dict(r) for r in rows]


def instance_rows(db: Database, series_uid: str | None = None) -> list[dict[str, Any]]:
    q = select(instances, series.c.series_uid).join(series, series.c.id == instances.c.series_id)
    if series_uid is not None:
        q = q.where(series.c.series_uid == series_uid)
    with db.read() as conn:
        return [dict(r) for r in conn.execute(q.order_by(instances.c.id)).mappings()]
