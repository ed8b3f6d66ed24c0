"""Refused instances that contradict the index (a PACS's "patient mismatch"), for an administrator.

An instance whose Study Instance UID is stored under another patient, or whose SOP Instance or Series
Instance UID is stored in another series or study, is refused (`radtriage.db.instances.StoreConflict`),
held, audited and listed here. An administrator either accepts it as a correction of the patient's
demographics (the study's patient fields are updated, then the held instances are stored as if they had
just arrived) or keeps it refused (the held copy is removed). A UID collision can only be kept refused:
fixing it means new UIDs at the sender, never moving instances between studies.

Audit details carry UIDs, field names and ids, never patient data.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, select, update

from radtriage.db import audit
from radtriage.db.clock import aware, utcnow
from radtriage.db.instances import PATIENT_FIELDS, StoreConflict
from radtriage.db.engine import Database
from radtriage.db.errors import ActionRefused, Refusal
from radtriage.db.tables import store_conflicts, studies

OPEN, ACCEPTED, REFUSED = "open", "accepted", "refused"
STATES = (OPEN, ACCEPTED, REFUSED)
# the demographics a correction writes to the study (the identity fields and the sex)
CORRECTED_FIELDS = (*PATIENT_FIELDS, "patient_sex")


@dataclass(frozen=True)
class Refused:
    """One refused instance, as the store saw it (its bytes already held at ``path``)."""

    conflict: StoreConflict
    study_uid: str
    series_uid: str
    sop_instance_uid: str
    sop_class_uid: str
    incoming: dict[str, str | None]  # the instance's patient and study fields
    path: str
    sha256: str
    size_bytes: int
    source: str
    calling_ae: str | None


def actions(kind: str, state: str) -> list[str]:
    """What an administrator may still do with a conflict."""
    if state != OPEN:
        return []
    return ["accept", "refuse"] if kind == StoreConflict.PATIENT_MISMATCH else ["refuse"]


def record(db: Database, r: Refused) -> tuple[int, bool]:
    """List a refused instance and audit the refusal; (conflict id, whether it is a new entry).

    The same bytes refused again while their entry is open count as another attempt on that entry.
    """
    now = utcnow()
    c = r.conflict
    with db.write() as conn:
        same = conn.execute(
            select(store_conflicts.c.id).where(
                store_conflicts.c.sop_instance_uid == r.sop_instance_uid,
                store_conflicts.c.sha256 == r.sha256,
                store_conflicts.c.kind == c.kind,
                store_conflicts.c.state == OPEN,
            )
        ).scalar_one_or_none()
        if same is None:
            conflict_id = conn.execute(
                store_conflicts.insert().values(
                    kind=c.kind, state=OPEN, study_uid=r.study_uid, series_uid=r.series_uid,
                    sop_instance_uid=r.sop_instance_uid, sop_class_uid=r.sop_class_uid,
                    existing_study_uid=c.existing_study_uid, existing_series_uid=c.existing_series_uid,
                    mismatch=list(c.mismatch), incoming=r.incoming, path=r.path, sha256=r.sha256,
                    size_bytes=r.size_bytes, source=r.source, calling_ae=r.calling_ae, attempts=1,
                    created_at=now, last_seen_at=now,
                )
            ).inserted_primary_key[0]
        else:
            conflict_id = same
            conn.execute(
                update(store_conflicts).where(store_conflicts.c.id == same)
                .values(attempts=store_conflicts.c.attempts + 1, last_seen_at=now)
            )
        audit.record(conn, "store_refused", study_uid=r.study_uid, at=now, detail={
            "conflict_id": conflict_id, "kind": c.kind, "mismatch": list(c.mismatch),
            "series_uid": r.series_uid, "sop_instance_uid": r.sop_instance_uid,
            "existing_study_uid": c.existing_study_uid, "existing_series_uid": c.existing_series_uid,
            "source": r.source, "calling_ae": r.calling_ae,
        })
    return conflict_id, same is None


def _stored_patient(conn: Connection, study_uid: str | None) -> dict[str, Any] | None:
    if study_uid is None:
        return None
    row = conn.execute(
        select(*(studies.c[f] for f in CORRECTED_FIELDS), studies.c.accession_number, studies.c.study_date,
               studies.c.study_description).where(studies.c.study_uid == study_uid)
    ).first()
    return dict(row._mapping) if row is not None else None


def _public(conn: Connection, row: Any) -> dict[str, Any]:
    d = dict(row._mapping)
    for k in ("created_at", "last_seen_at", "resolved_at"):
        d[k] = aware(d[k])
    held = d.pop("path")
    d["held"] = bool(held) and Path(held).is_file()
    d["stored"] = _stored_patient(conn, d["existing_study_uid"] or d["study_uid"])
    d["actions"] = actions(d["kind"], d["state"])
    return d


def listing(db: Database, state: str | None = OPEN, limit: int = 200) -> list[dict[str, Any]]:
    """Conflicts, newest first, each with the stored patient it contradicts (``state=None``: all)."""
    q = select(store_conflicts).order_by(store_conflicts.c.id.desc()).limit(limit)
    if state is not None:
        q = q.where(store_conflicts.c.state == state)
    with db.read() as conn:
        return [_public(conn, r) for r in conn.execute(q).all()]


def get(db: Database, conflict_id: int) -> dict[str, Any]:
    with db.read() as conn:
        row = conn.execute(select(store_conflicts).where(store_conflicts.c.id == conflict_id)).first()
        if row is None:
            raise ActionRefused(Refusal.MISSING, f"no conflict {conflict_id}")
        return _public(conn, row)


def _open_row(conn: Connection, conflict_id: int) -> Any:
    row = conn.execute(select(store_conflicts).where(store_conflicts.c.id == conflict_id)).first()
    if row is None:
        raise ActionRefused(Refusal.MISSING, f"no conflict {conflict_id}")
    if row.state != OPEN:
        raise ActionRefused(Refusal.CONFLICT, f"conflict {conflict_id} is already {row.state}")
    return row


def correct_patient(db: Database, conflict_id: int, username: str, role: str,
                    client: str | None = None) -> list[dict[str, Any]]:
    """Accept a patient mismatch as a correction: write the instance's demographics to its study.

    Returns the open conflicts held for that same study and patient (the one named and its siblings,
    e.g. the rest of the series), each with the ``path`` of its held copy, for the caller to store
    and then `close`. Audited with the names of the fields that changed.
    """
    now = utcnow()
    with db.write() as conn:
        row = _open_row(conn, conflict_id)
        if row.kind != StoreConflict.PATIENT_MISMATCH:
            raise ActionRefused(Refusal.CONFLICT, "a UID collision cannot be accepted: the sender must send new UIDs")
        incoming = dict(row.incoming)
        stored = _stored_patient(conn, row.study_uid) or {}
        new = {f: incoming[f] for f in CORRECTED_FIELDS if incoming.get(f)}  # what the instance lacks stays
        changed = sorted(f for f in new if stored.get(f) != new[f])
        conn.execute(update(studies).where(studies.c.study_uid == row.study_uid).values(**new))
        audit.record(conn, "patient_corrected", actor=username, role=role, study_uid=row.study_uid, client=client,
                     at=now, detail={"conflict_id": conflict_id, "fields": changed})
        held = conn.execute(
            select(store_conflicts).where(
                store_conflicts.c.study_uid == row.study_uid,
                store_conflicts.c.kind == StoreConflict.PATIENT_MISMATCH,
                store_conflicts.c.state == OPEN,
            ).order_by(store_conflicts.c.id)
        ).all()
    same_patient = [dict(r._mapping) for r in held
                    if all((r.incoming or {}).get(f) == incoming.get(f) for f in PATIENT_FIELDS)]
    return same_patient


def close(db: Database, conflict_id: int, state: str, username: str, role: str, client: str | None = None,
          detail: dict[str, Any] | None = None) -> None:
    """Mark an open conflict accepted (its instance stored by then) or refused, audited; its held copy goes."""
    assert state in (ACCEPTED, REFUSED)
    now = utcnow()
    with db.write() as conn:
        row = _open_row(conn, conflict_id)
        conn.execute(update(store_conflicts).where(store_conflicts.c.id == conflict_id).values(
            state=state, resolved_at=now, resolved_by=username[:64], path=None))
        audit.record(conn, f"conflict_{state}", actor=username, role=role, study_uid=row.study_uid, client=client,
                     at=now, detail={"conflict_id": conflict_id, "kind": row.kind,
                                     "sop_instance_uid": row.sop_instance_uid, **(detail or {})})
    if row.path:
        Path(row.path).unlink(missing_ok=True)
