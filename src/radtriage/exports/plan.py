"""Which exports a result queues, and the corrections that follow it: one outbox row per destination.

- A live result recorded for the first time queues one row per destination that takes its pipeline
  (`queue_new`), in the transaction that records it. When the same pipeline already sent a result for the
  study (a new series version, or a better series), the new one goes as a correction that replaces it.
- A result withdrawn (its pipeline demoted or suspended) or marked wrong by a reader queues a withdrawal
  to every destination it was queued for (`queue_withdrawal`).

The idempotency key names the result, the destination and the revision, so a decision taken twice (a
retried job, a second demotion) queues nothing more, and a resend of a row reuses its objects' UIDs.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping
from typing import Any

from sqlalchemy import Connection, and_, select

from radtriage.config.exports import ExportSettings
from radtriage.db import outbox as rows
from radtriage.db.tables import outbox, results
from radtriage.exports import KIND
from radtriage.exports.model import CORRECTED, PRELIMINARY, WITHDRAWN


def _key(result_id: int, destination: str, revision: int) -> str:
    return f"{KIND}:{result_id}:{destination}:r{revision}"


def _queue(conn: Connection, result_id: int, channel: str, destination: str, payload: Mapping[str, Any],
           now: dt.datetime) -> bool:
    """One row, unless its key was queued already; whether it was new."""
    key = _key(result_id, destination, int(payload["revision"]))
    if conn.execute(select(outbox.c.id).where(outbox.c.idempotency_key == key)).first() is not None:
        return False
    rows.add(conn, KIND, key, subject=str(result_id), target=destination, channel=channel, payload=payload, now=now)
    return True


def _sent_before(conn: Connection, row: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """The newest earlier result of the same pipeline and study that was queued for export, per destination:
    its row's payload (what the new result replaces there)."""
    earlier = [str(i) for i in conn.execute(select(results.c.id).where(
        and_(results.c.study_uid == row["study_uid"], results.c.pipeline_id == row["pipeline_id"],
             results.c.id != row["id"]))).scalars()]
    out: dict[str, dict[str, Any]] = {}
    if earlier:
        for target, payload in conn.execute(select(outbox.c.target, outbox.c.payload).where(
                outbox.c.kind == KIND, outbox.c.subject.in_(earlier)).order_by(outbox.c.id)):
            out[target] = dict(payload)  # the newest last
    return out


def queue_new(conn: Connection, settings: ExportSettings, recorded: Iterable[Mapping[str, Any]],
              now: dt.datetime) -> int:
    """Queue the exports of newly recorded results (rows of ``results`` with their ``id``); only live ones
    leave. Returns how many rows were queued."""
    n = 0
    for row in recorded:
        if row.get("state", "live") != "live":
            continue
        before = _sent_before(conn, row)
        for channel, dest in settings.destinations():
            if not dest.takes(row["pipeline_id"]):
                continue
            prev = before.get(dest.name)
            payload: dict[str, Any] = {"result_id": row["id"], "status": PRELIMINARY, "revision": 0}
            if prev is not None and prev.get("status") != WITHDRAWN:
                payload.update(status=CORRECTED, replaces=prev["result_id"], replaces_revision=prev["revision"])
            n += _queue(conn, row["id"], channel, dest.name, payload, now)
    return n


def queue_withdrawal(conn: Connection, result_ids: Iterable[int], reason: str, now: dt.datetime) -> int:
    """Queue a withdrawal of each result to every destination its exports were queued for (whether or not
    they were delivered yet: a withdrawal after an undelivered send still reaches the receiver in order).
    Returns how many rows were queued."""
    ids = [str(i) for i in result_ids]
    if not ids:
        return 0
    newest: dict[tuple[str, str], dict[str, Any]] = {}
    for subject, target, channel, payload in conn.execute(
            select(outbox.c.subject, outbox.c.target, outbox.c.channel, outbox.c.payload)
            .where(outbox.c.kind == KIND, outbox.c.subject.in_(ids)).order_by(outbox.c.id)):
        newest[(subject, target)] = {"channel": channel, **dict(payload)}
    n = 0
    for (subject, target), last in newest.items():
        if last["status"] == WITHDRAWN:
            continue
        payload = {"result_id": int(subject), "status": WITHDRAWN, "revision": int(last["revision"]) + 1,
                   "replaces": int(subject), "replaces_revision": int(last["revision"]), "reason": reason[:200]}
        n += _queue(conn, int(subject), last["channel"], target, payload, now)
    return n


def queue_report(conn: Connection, settings: ExportSettings, report_id: int, pipelines: Iterable[str], status: str,
                 now: dt.datetime) -> int:
    """Queue a report (``status`` final, amended or preliminary) to every destination that takes one of its
    pipelines (all destinations that take every pipeline, for a report without AI results). Its revision at a
    destination counts what was queued there before, so an addendum follows its report in order."""
    subject, wanted = f"report-{report_id}", list(pipelines)
    earlier: dict[str, int] = {}
    for target in conn.execute(select(outbox.c.target).where(outbox.c.kind == KIND, outbox.c.subject == subject)).scalars():
        earlier[target] = earlier.get(target, 0) + 1
    n = 0
    for channel, dest in settings.destinations():
        if not (any(dest.takes(p) for p in wanted) if wanted else not dest.pipelines):
            continue
        revision = earlier.get(dest.name, 0)
        key = f"{KIND}:{subject}:{dest.name}:r{revision}"
        if conn.execute(select(outbox.c.id).where(outbox.c.idempotency_key == key)).first() is None:
            rows.add(conn, KIND, key, subject=subject, target=dest.name, channel=channel,
                     payload={"report_id": report_id, "status": status, "revision": revision}, now=now)
            n += 1
    return n
