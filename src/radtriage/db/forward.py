"""Rows of forwarding (`radtriage.forward`): at an edge, what is not yet queued for the hub and what a series
holds; at a hub, which instances it holds and each study's site of origin.

An edge's rows are `radtriage.db.outbox` rows of kind ``forward``: one per instance (``subject`` its series,
key ``forward:<SOP Instance UID>:<sha256>``) and one series check per closed series version (channel
``check``, key ``forward-check:<Series Instance UID>:v<version>``). Nothing here decides: the forward stage
asks and queues.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import Connection, String, and_, exists, literal, select, update

from radtriage.db.clock import aware
from radtriage.db.outbox import PENDING, SENDING
from radtriage.db.tables import instances, outbox, series, studies

KIND = "forward"
CHECK = "check"


def instance_key(sop_instance_uid: str, sha256: str, again: int = 0) -> str:
    """The idempotency key of forwarding these bytes of an instance (``again``: a re-send after a check)."""
    return f"{KIND}:{sop_instance_uid}:{sha256}" + (f":r{again}" if again else "")


def check_key(series_uid: str, version: int, round_: int = 0) -> str:
    return f"{KIND}-check:{series_uid}:v{version}" + (f":c{round_}" if round_ else "")


_INSTANCE_KEY = literal(f"{KIND}:", String) + instances.c.sop_instance_uid + literal(":", String) + instances.c.sha256
_CHECK_KEY = (literal(f"{KIND}-check:", String) + series.c.series_uid + literal(":v", String)
              + series.c.version.cast(String))


def unqueued_instances(conn: Connection, since: dt.datetime | None, limit: int = 1000) -> list[dict[str, Any]]:
    """Stored instances (received since ``since``; None: all) whose bytes have no forward row yet."""
    q = (select(instances.c.sop_instance_uid, instances.c.sha256, instances.c.received_at, series.c.series_uid,
                studies.c.study_uid)
         .join(series, series.c.id == instances.c.series_id).join(studies, studies.c.id == series.c.study_id)
         .where(~exists().where(outbox.c.idempotency_key == _INSTANCE_KEY)))
    if since is not None:
        q = q.where(instances.c.received_at >= since)
    return [dict(r) for r in conn.execute(q.order_by(instances.c.id).limit(limit)).mappings()]


def unchecked_series(conn: Connection, since: dt.datetime | None, limit: int = 200) -> list[dict[str, Any]]:
    """Closed series versions (closed since ``since``; None: all) without a series check queued."""
    q = (select(series.c.series_uid, series.c.version, series.c.closed_at, studies.c.study_uid)
         .join(studies, studies.c.id == series.c.study_id)
         .where(series.c.state != "receiving", series.c.closed_at.is_not(None),
                ~exists().where(outbox.c.idempotency_key == _CHECK_KEY)))
    if since is not None:
        q = q.where(series.c.closed_at >= since)
    return [{**r, "closed_at": aware(r["closed_at"])} for r in conn.execute(q.order_by(series.c.closed_at).limit(limit))
            .mappings()]


def key_taken(conn: Connection, key: str) -> bool:
    return conn.execute(select(outbox.c.id).where(outbox.c.idempotency_key == key)).first() is not None


def instance(conn: Connection, sop_instance_uid: str) -> dict[str, Any] | None:
    """What forwarding an instance needs: its file, hash, classes and its study's stored issuer."""
    r = conn.execute(select(instances.c.path, instances.c.sha256, instances.c.sop_class_uid,
                            instances.c.transfer_syntax_uid, series.c.series_uid)
                     .join(series, series.c.id == instances.c.series_id)
                     .where(instances.c.sop_instance_uid == sop_instance_uid)).mappings().first()
    return dict(r) if r is not None else None


def series_instances(conn: Connection, series_uid: str) -> list[dict[str, Any]]:
    """The series' instances (UID, class, hash), in index order: what a series check asks the hub about."""
    q = (select(instances.c.sop_instance_uid, instances.c.sop_class_uid, instances.c.sha256)
         .join(series, series.c.id == instances.c.series_id).where(series.c.series_uid == series_uid)
         .order_by(instances.c.id))
    return [dict(r) for r in conn.execute(q).mappings()]


def in_flight(conn: Connection, series_uid: str) -> int:
    """Forward rows of the series' instances still pending or being sent."""
    q = select(outbox.c.id).where(outbox.c.kind == KIND, outbox.c.subject == series_uid,
                                  outbox.c.channel != CHECK, outbox.c.state.in_((PENDING, SENDING)))
    return len(conn.execute(q).all())


# --- at the hub -----------------------------------------------------------------------------

def held(conn: Connection, study_uid: str, series_uid: str, sop_instance_uids: list[str]) -> set[str]:
    """Which of these instances the index holds in that study and series."""
    out: set[str] = set()
    for i in range(0, len(sop_instance_uids), 500):
        q = (select(instances.c.sop_instance_uid).join(series, series.c.id == instances.c.series_id)
             .join(studies, studies.c.id == series.c.study_id)
             .where(series.c.series_uid == series_uid, studies.c.study_uid == study_uid,
                    instances.c.sop_instance_uid.in_(sop_instance_uids[i:i + 500])))
        out.update(conn.execute(q).scalars())
    return out


def mark_site(conn: Connection, study_uid: str, site: str) -> bool:
    """Record a study's site of origin the first time it is told (a study keeps the site it came from)."""
    q = update(studies).where(and_(studies.c.study_uid == study_uid, studies.c.site.is_(None))).values(site=site)
    return conn.execute(q).rowcount == 1


def site_of(conn: Connection, study_uid: str) -> str | None:
    """The study's recorded site of origin (None: none recorded, or no such study here yet)."""
    return conn.execute(select(studies.c.site).where(studies.c.study_uid == study_uid)).scalar()
