"""Rows of authorised shares (`shares`) and the sessions that opened them (`share_sessions`). Plain reads and
writes; each change is recorded in the audit trail in the same transaction. The rules live in
`radtriage.sharing.access`."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import delete, or_, select, update

from radtriage.db import audit
from radtriage.db.clock import aware
from radtriage.db.engine import Database
from radtriage.db.tables import share_sessions, shares

WHEN = ("expires_at", "created_at", "locked_at", "revoked_at")
PUBLIC = ("id", "study_uid", "issued_by", "consent", "legal_basis", "audience", "recipient", "scope", "instances",
          "size_bytes", "max_opens", "opens", "failed_tries", "expires_at", "created_at", "locked_at", "revoked_at",
          "revoked_by")


def _row(row: Any) -> dict[str, Any]:
    out = dict(row)
    for k in WHEN:
        out[k] = aware(out[k])
    return out


def add(db: Database, values: dict[str, Any], entry: dict[str, Any]) -> int:
    """Insert a share (its sealed folder already written) with its ``share_issued`` audit entry."""
    with db.write() as conn:
        share_id = conn.execute(shares.insert().values(**values, opens=0, failed_tries=0)).inserted_primary_key[0]
        audit.record(conn, **{**entry, "detail": {**entry["detail"], "share": share_id}})
    return share_id


def by_lookup(db: Database, lookup: str) -> dict[str, Any] | None:
    with db.read() as conn:
        row = conn.execute(select(shares).where(shares.c.lookup == lookup)).mappings().first()
    return _row(row) if row else None


def get(db: Database, share_id: int) -> dict[str, Any] | None:
    with db.read() as conn:
        row = conn.execute(select(shares).where(shares.c.id == share_id)).mappings().first()
    return _row(row) if row else None


def of_study(db: Database, study_uid: str) -> list[dict[str, Any]]:
    q = select(*(shares.c[k] for k in PUBLIC)).where(shares.c.study_uid == study_uid).order_by(shares.c.id.desc())
    with db.read() as conn:
        return [_row(r) for r in conn.execute(q).mappings()]


def revoke(db: Database, share_id: int, by: str, now: datetime, entry: dict[str, Any]) -> bool:
    """Revoke (and end its sessions); False when it was already revoked."""
    with db.write() as conn:
        done = conn.execute(update(shares).where(shares.c.id == share_id, shares.c.revoked_at.is_(None))
                            .values(revoked_at=now, revoked_by=by)).rowcount == 1
        if done:
            conn.execute(delete(share_sessions).where(share_sessions.c.share_id == share_id))
            audit.record(conn, **entry)
    return done


def failed_try(db: Database, share_id: int, max_tries: int, now: datetime, entry: dict[str, Any]) -> int:
    """Count a wrong passcode or hospital token (locking the share at ``max_tries``); the tries made so far."""
    with db.write() as conn:
        conn.execute(update(shares).where(shares.c.id == share_id)
                     .values(failed_tries=shares.c.failed_tries + 1))
        tries = conn.execute(select(shares.c.failed_tries).where(shares.c.id == share_id)).scalar_one()
        if tries >= max_tries:
            conn.execute(update(shares).where(shares.c.id == share_id, shares.c.locked_at.is_(None))
                         .values(locked_at=now))
        audit.record(conn, **{**entry, "detail": {**entry["detail"], "tries": tries, "locked": tries >= max_tries}})
    return tries


def take_open(db: Database, share_id: int, now: datetime, entry: dict[str, Any],
              session: tuple[str, datetime] | None = None) -> bool:
    """Count one open if the share is still open to it (not revoked, locked, expired or used up), with its
    audit entry and, for a browser, its session (digest, expiry); False when it is not."""
    with db.write() as conn:
        taken = conn.execute(update(shares).where(
            shares.c.id == share_id, shares.c.revoked_at.is_(None), shares.c.locked_at.is_(None),
            shares.c.expires_at > now, shares.c.opens < shares.c.max_opens,
        ).values(opens=shares.c.opens + 1)).rowcount == 1
        if taken:
            if session is not None:
                conn.execute(share_sessions.insert().values(share_id=share_id, digest=session[0], created_at=now,
                                                            expires_at=session[1]))
            audit.record(conn, **entry)
    return taken


def ended_folders(db: Database, now: datetime) -> list[str]:
    """The sealed folders of shares that can no longer be opened (expired, revoked or locked)."""
    q = select(shares.c.folder).where(or_(shares.c.expires_at <= now, shares.c.revoked_at.is_not(None),
                                          shares.c.locked_at.is_not(None)))
    with db.read() as conn:
        return list(conn.execute(q).scalars())


def session_valid(db: Database, share_id: int, digest: str, now: datetime) -> bool:
    q = select(share_sessions.c.expires_at).where(share_sessions.c.digest == digest,
                                                  share_sessions.c.share_id == share_id)
    with db.read() as conn:
        expires = conn.execute(q).scalar()
    return expires is not None and aware(expires) > now
