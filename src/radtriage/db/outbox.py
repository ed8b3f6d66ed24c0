"""The outbox rows (the only path to the ``outbox`` table): one row per message that leaves.

A row is written by `add` in the transaction that decided it, so nothing
decided is lost to a crash. It moves ``pending`` -> ``sending`` (`claim`, with a
lease) -> ``delivered`` | ``failed`` (`finish`), back to ``pending`` with a later
``next_attempt_at`` to be tried again, or ``cancelled`` when it became moot. A
``sending`` row whose lease ran out (its sender died) is due again and goes out
with the same idempotency key. ``kind`` says whose row it is (``alert``; later
``export``, ``forward``, ``share``) and ``subject`` what it is about (an alert
id), so each owner reads its own rows. When to retry and who sends is
`radtriage.outbox`.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Collection, Iterable, Mapping
from typing import Any

from sqlalchemy import Connection, and_, or_, select, update

from radtriage.db.clock import aware
from radtriage.db.tables import outbox

PENDING, SENDING, DELIVERED, FAILED, CANCELLED = "pending", "sending", "delivered", "failed", "cancelled"
_TIMES = ("next_attempt_at", "lease_until", "created_at", "first_attempt_at", "delivered_at", "finished_at")


def _row(r: Any) -> dict[str, Any]:
    out = dict(r._mapping)
    for k in _TIMES:
        out[k] = aware(out[k])
    return out


def add(conn: Connection, kind: str, key: str, *, subject: str, target: str, channel: str,
        payload: Mapping[str, Any], now: dt.datetime) -> int:
    """Queue one message, due now, in the caller's transaction; its id. The idempotency key is unique."""
    return conn.execute(outbox.insert().values(
        kind=kind, idempotency_key=key, subject=subject, target=target, channel=channel, payload=dict(payload),
        state=PENDING, attempts=0, next_attempt_at=now, created_at=now)).inserted_primary_key[0]


def of_subjects(conn: Connection, kind: str, subjects: Iterable[str]) -> list[dict[str, Any]]:
    """The rows of ``kind`` about these subjects, oldest first."""
    subjects = list(subjects)
    if not subjects:
        return []
    q = select(outbox).where(outbox.c.kind == kind, outbox.c.subject.in_(subjects)).order_by(outbox.c.id)
    return [_row(r) for r in conn.execute(q)]


def _due(kinds: Collection[str], now: dt.datetime) -> Any:
    o = outbox
    return and_(o.c.kind.in_(list(kinds)), or_(and_(o.c.state == PENDING, o.c.next_attempt_at <= now),
                                               and_(o.c.state == SENDING, o.c.lease_until < now)))


def any_due(conn: Connection, kinds: Collection[str], now: dt.datetime) -> bool:
    """Whether a row of these kinds is due: a read that spares idle workers a write transaction."""
    return conn.execute(select(outbox.c.id).where(_due(kinds, now)).limit(1)).first() is not None


def claim(conn: Connection, now: dt.datetime, leases: Mapping[str, float]) -> dict[str, Any] | None:
    """Take the next due row of the kinds in ``leases`` (pending and due, or sending with its lease run
    out), counting the attempt, with the lease of its kind (seconds)."""
    o = outbox
    q = select(o).where(_due(leases, now)).order_by(o.c.next_attempt_at, o.c.id).limit(1)
    if conn.dialect.name != "sqlite":
        q = q.with_for_update(skip_locked=True)
    r = conn.execute(q).first()
    if r is None:
        return None
    row = _row(r)
    values: dict[str, Any] = {"state": SENDING, "attempts": row["attempts"] + 1,
                              "lease_until": now + dt.timedelta(seconds=leases[row["kind"]])}
    if row["first_attempt_at"] is None:
        values["first_attempt_at"] = now
    conn.execute(update(o).where(o.c.id == row["id"]).values(**values))
    return {**row, **values}


def finish(conn: Connection, item_id: int, attempts: int, **values: Any) -> bool:
    """Record a send's outcome if the row is still this sender's (state sending, same attempt)."""
    o = outbox
    q = update(o).where(o.c.id == item_id, o.c.state == SENDING, o.c.attempts == attempts)
    return conn.execute(q.values(lease_until=None, **values)).rowcount == 1


def cancel(conn: Connection, item_ids: Collection[int], now: dt.datetime) -> int:
    """Cancel those of these rows still pending (their message became moot); how many."""
    if not item_ids:
        return 0
    o = outbox
    q = update(o).where(o.c.id.in_(list(item_ids)), o.c.state == PENDING)
    return conn.execute(q.values(state=CANCELLED, finished_at=now)).rowcount
