"""DICOM associations: when each opened and how it ended (assembly reads the close)."""

from __future__ import annotations

from sqlalchemy import update

from radtriage.db.clock import utcnow
from radtriage.db.engine import Database
from radtriage.db.tables import associations


def open_association(db: Database, assoc_id: str, calling_ae: str, peer: str | None) -> None:
    with db.write() as conn:
        conn.execute(
            associations.insert().values(
                id=assoc_id, calling_ae=calling_ae, peer_address=peer, started_at=utcnow()
            )
        )


def close_association(db: Database, assoc_id: str, how: str) -> None:
    with db.write() as conn:
        conn.execute(
            update(associations)
            .where(associations.c.id == assoc_id, associations.c.closed_at.is_(None))
            .values(closed_at=utcnow(), how_closed=how)
        )
