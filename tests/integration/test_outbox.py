"""The outbox (issue 13 item 6), on SQLite and PostgreSQL: one table family for everything that leaves.

- a kind with a `Sender` is sent: delivered, retried with exponential backoff (capped) until
  ``max_attempts``, given up at once on a permanent refusal, and the sender's hook bypasses a row given
  up (here: a row to a backup target); a row that became moot is cancelled; a kind without a sender
  is left alone; a row enqueued in a transaction that rolls back never exists;
- a row whose sender died is not taken while its lease runs, and is sent again with the same
  idempotency key once it ran out; the dead sender's late outcome is not recorded;
- migration 0006 keeps every alert delivery a database at 0005 holds (same id, key, state, attempts and
  times), the service shows them as before, sends those still due after the upgrade with their keys,
  and new rows get fresh ids.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from typing import Any

import pytest
import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from sqlalchemy import Connection, select

from radtriage.db import open_database
from radtriage.db import outbox as rows
from radtriage.db.clock import aware, utcnow
from radtriage.db.engine import MIGRATIONS_DIR, Database
from radtriage.db.tables import outbox as table
from radtriage.outbox import DELIVERED, FAILED, RETRY, Attempt, OutboxWorker, Retry, SendError, enqueue
from tests.integration.test_alerts import (  # noqa: F401 - fixtures
    add_study,
    case_for,
    hook,
    ich,
    make_config,
    services,
    smtp,
    wait_until,
)

RETRY_POLICY = Retry(max_attempts=3, backoff_s=0.05, max_backoff_s=0.08, lease_s=30)


class ScriptedSender:
    """A `Sender` of kind ``export`` whose targets fail as scripted; a row given up goes to ``backup``."""

    retry = RETRY_POLICY

    def __init__(self, script: dict[str, list[Exception]]) -> None:
        self.script = script
        self.sent: list[tuple[str, int]] = []
        self.recorded: list[tuple[str, str]] = []
        self.reported: list[tuple[str, str, str | None]] = []

    def prepare(self, conn: Connection, attempt: Attempt, now: dt.datetime) -> bool:
        attempt.context = attempt.item["payload"]
        return not attempt.context.get("moot")

    def send(self, attempt: Attempt, now: dt.datetime) -> None:
        self.sent.append((attempt.item["idempotency_key"], attempt.item["attempts"]))
        errors = self.script.get(attempt.item["target"], [])
        if errors:
            raise errors.pop(0)

    def record(self, conn: Connection, attempt: Attempt, now: dt.datetime) -> None:
        key = attempt.item["idempotency_key"]
        self.recorded.append((key, attempt.outcome))
        if attempt.outcome == FAILED:
            enqueue(conn, "export", f"{key}-backup", subject=attempt.item["subject"], target="backup",
                    channel="dicom", payload={}, now=now)

    def report(self, attempt: Attempt) -> None:
        self.reported.append((attempt.item["idempotency_key"], attempt.outcome, attempt.error))


@pytest.fixture
def db(db_url: str) -> Iterator[Database]:
    database = open_database(db_url)
    yield database
    database.dispose()


def row(db: Database, key: str) -> dict[str, Any]:
    with db.read() as conn:
        r = conn.execute(select(table).where(table.c.idempotency_key == key)).mappings().one()
    return {k: aware(v) if isinstance(v, dt.datetime) else v for k, v in r.items()}


def queue(db: Database, *targets: str, kind: str = "export", **payload: Any) -> None:
    with db.write() as conn:
        for t in targets:
            enqueue(conn, kind, f"{kind}-{t}", subject="result-1", target=t, channel="dicom", payload=payload,
                    now=utcnow())


def step_until(worker: OutboxWorker, predicate: Any, timeout: float = 5.0) -> bool:
    """Let the worker take one row at a time (those due) until ``predicate`` holds."""
    return wait_until(lambda: (worker.deliver_one(), predicate())[1], timeout)


def timed_step(worker: OutboxWorker) -> tuple[bool, dt.datetime, dt.datetime]:
    before = utcnow()
    busy = worker.deliver_one()
    return busy, before, utcnow()


def test_rows_are_delivered_retried_with_backoff_given_up_and_bypassed(db):
    sender = ScriptedSender({"flaky": [SendError("busy"), OSError("reset")],
                             "dead": [SendError("down")] * 3,
                             "refuses": [SendError("unknown AE", permanent=True)]})
    worker = OutboxWorker(db, {"export": sender}, idle_s=0.05)
    queue(db, "ok", "flaky", "dead", "refuses")
    queue(db, "moot", moot=True)
    queue(db, "pacs", kind="forward")  # nobody sends this kind here
    with pytest.raises(RuntimeError), db.write() as conn:
        enqueue(conn, "export", "export-rolled-back", subject="x", target="ok", channel="dicom", payload={},
                now=utcnow())
        raise RuntimeError("the decision failed")

    assert worker.deliver_one()  # ok
    assert row(db, "export-ok")["state"] == DELIVERED and row(db, "export-ok")["attempts"] == 1
    busy, before, after = timed_step(worker)  # flaky, first attempt
    r = row(db, "export-flaky")
    assert busy and (r["state"], r["attempts"], r["last_error"]) == ("pending", 1, "busy")
    assert before + dt.timedelta(seconds=0.05) <= r["next_attempt_at"] <= after + dt.timedelta(seconds=0.05)
    assert r["lease_until"] is None
    # then in the order they fall due: dead (three attempts, given up), refuses (given up at once, its
    # bypass due at once), moot (cancelled), flaky again (twice)
    assert step_until(worker, lambda: all(row(db, k)["state"] in (DELIVERED, FAILED, "cancelled") for k in (
        "export-flaky", "export-dead", "export-dead-backup", "export-refuses", "export-refuses-backup",
        "export-moot")))
    assert not worker.deliver_one()

    dead = row(db, "export-dead")
    assert (dead["state"], dead["attempts"], dead["last_error"]) == (FAILED, 3, "down")  # max_attempts: given up
    flaky = row(db, "export-flaky")
    assert (flaky["state"], flaky["attempts"], flaky["last_error"]) == (DELIVERED, 3, None)
    r = row(db, "export-refuses")
    assert (r["state"], r["attempts"], r["last_error"]) == (FAILED, 1, "unknown AE")  # permanent: no retry
    assert row(db, "export-moot")["state"] == "cancelled"
    assert row(db, "export-dead-backup")["state"] == row(db, "export-refuses-backup")["state"] == DELIVERED
    assert row(db, "forward-pacs")["state"] == "pending" and row(db, "forward-pacs")["attempts"] == 0
    with db.read() as conn:
        assert conn.execute(select(table.c.id).where(table.c.idempotency_key == "export-rolled-back")).first() is None
    assert [k for k, _ in sender.sent].count("export-flaky") == 3 and ("export-moot", 1) not in sender.sent
    assert sorted(sender.recorded) == [("export-dead", "failed"), ("export-dead-backup", "delivered"),
                                       ("export-flaky", "delivered"), ("export-ok", "delivered"),
                                       ("export-refuses", "failed"), ("export-refuses-backup", "delivered")]
    assert sorted((k, e) for k, o, e in sender.reported if o == RETRY) == [
        ("export-dead", "down"), ("export-dead", "down"), ("export-flaky", "OSError: reset"),
        ("export-flaky", "busy")]


def test_the_second_backoff_is_doubled_and_capped(db):
    sender = ScriptedSender({"flaky": [SendError("busy"), SendError("busy again")]})
    worker = OutboxWorker(db, {"export": sender})
    queue(db, "flaky")
    assert worker.deliver_one()
    assert wait_until(lambda: row(db, "export-flaky")["next_attempt_at"] <= utcnow(), 5)
    busy, before, after = timed_step(worker)
    r = row(db, "export-flaky")
    assert busy and (r["state"], r["attempts"], r["last_error"]) == ("pending", 2, "busy again")
    cap = dt.timedelta(seconds=0.08)  # 0.05 * 2 is over max_backoff_s
    assert before + cap <= r["next_attempt_at"] <= after + cap


def test_a_row_whose_sender_died_is_sent_again_with_its_key_after_the_lease(db):
    sender = ScriptedSender({})
    worker = OutboxWorker(db, {"export": sender})
    queue(db, "pacs")
    with db.write() as conn:  # a sender took it and died
        dead = rows.claim(conn, utcnow(), {"export": 30})
    assert dead["attempts"] == 1 and dead["state"] == "sending"
    assert not worker.deliver_one() and sender.sent == []  # its lease still runs
    with db.write() as conn:  # ... until it runs out
        conn.execute(sa.update(table).where(table.c.id == dead["id"])
                     .values(lease_until=utcnow() - dt.timedelta(seconds=1)))
    assert worker.deliver_one()
    assert sender.sent == [("export-pacs", 2)]
    with db.write() as conn:  # the dead sender's late word changes nothing
        assert not rows.finish(conn, dead["id"], dead["attempts"], state=FAILED, last_error="late")
    r = row(db, "export-pacs")
    assert (r["state"], r["attempts"], r["last_error"]) == (DELIVERED, 2, None)


def test_the_worker_threads_send_what_is_queued_after_they_started(db):
    sender = ScriptedSender({})
    worker = OutboxWorker(db, {"export": sender}, idle_s=5.0, threads=2)
    worker.start()
    try:
        queue(db, "a", "b", "c")
        worker.wake()
        assert wait_until(lambda: all(row(db, f"export-{t}")["state"] == DELIVERED for t in "abc"), 10)
    finally:
        worker.stop()
    assert sorted(sender.sent) == [("export-a", 1), ("export-b", 1), ("export-c", 1)]


# --- migration 0006 ----------------------------------------------------------------------


def _alembic(db: Database, target: str, up: bool = False) -> None:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    with db.engine.connect() as conn:
        cfg.attributes["connection"] = conn
        (command.upgrade if up else command.downgrade)(cfg, target)
        conn.commit()


OLD = sa.table("alert_deliveries", *(sa.column(c) for c in (
    "id", "alert_id", "kind", "level", "member", "channel", "idempotency_key", "state", "attempts", "last_error")),
    *(sa.column(c, sa.DateTime(timezone=True)) for c in (
        "next_attempt_at", "lease_until", "created_at", "first_attempt_at", "delivered_at", "finished_at")))


def test_migration_0006_keeps_every_alert_delivery_and_sends_those_still_due(db, services, hook, smtp):  # noqa: F811
    add_study(db, "1.2.840.60")
    config = make_config(hook, smtp)
    [made] = services(config).on_result(case_for("1.2.840.60"), "stroke_ich", ich(), "STAT", "stroke")
    _alembic(db, "0005")  # the deliveries the version before wrote, at its schema
    now = utcnow().replace(microsecond=0)
    hour = dt.timedelta(hours=1)
    with db.write() as conn:
        conn.execute(sa.delete(OLD))
        conn.execute(OLD.insert(), [
            {"id": 7, "alert_id": made.alert_id, "kind": "page", "level": 0, "member": "chan", "channel": "webhook",
             "idempotency_key": f"rt-alert-{made.alert_id}-page-l1-chan-webhook", "state": "sending", "attempts": 1,
             "last_error": None, "next_attempt_at": now - hour, "lease_until": now - hour, "created_at": now - hour,
             "first_attempt_at": now - hour, "delivered_at": None, "finished_at": None},  # its sender died
            {"id": 8, "alert_id": made.alert_id, "kind": "page", "level": 0, "member": "chan", "channel": "email",
             "idempotency_key": f"rt-alert-{made.alert_id}-page-l1-chan-email", "state": "pending", "attempts": 2,
             "last_error": "email: SMTP 451", "next_attempt_at": now - hour, "lease_until": None,
             "created_at": now - hour, "first_attempt_at": now - hour, "delivered_at": None, "finished_at": None},
            {"id": 9, "alert_id": made.alert_id, "kind": "taken", "level": 1, "member": "wong", "channel": "apprise",
             "idempotency_key": f"rt-alert-{made.alert_id}-taken-l2-wong-apprise", "state": "failed", "attempts": 5,
             "last_error": "apprise: not delivered", "next_attempt_at": now - hour, "lease_until": None,
             "created_at": now - hour, "first_attempt_at": now - hour, "delivered_at": None, "finished_at": now},
            {"id": 12, "alert_id": made.alert_id, "kind": "page", "level": 1, "member": "wong", "channel": "webhook",
             "idempotency_key": f"rt-alert-{made.alert_id}-page-l2-wong-webhook", "state": "delivered",
             "attempts": 1, "last_error": None, "next_attempt_at": now - hour, "lease_until": None,
             "created_at": now - hour, "first_attempt_at": now - hour, "delivered_at": now, "finished_at": now},
        ])
        before = [dict(r) for r in conn.execute(sa.select(OLD).order_by(OLD.c.id)).mappings()]

    db.migrate()  # the upgrade, as at start-up

    with db.read() as conn:
        after = [{k: aware(v) if isinstance(v, dt.datetime) else v for k, v in r.items()}
                 for r in conn.execute(select(table).order_by(table.c.id)).mappings()]
    assert len(after) == len(before) == 4
    for old, new in zip(before, after, strict=True):
        assert {k: aware(v) if isinstance(v, dt.datetime) else v for k, v in old.items()
                if k not in ("alert_id", "kind", "level", "member")} == {
            k: v for k, v in new.items() if k not in ("kind", "subject", "target", "payload")}
        assert (new["kind"], new["subject"], new["target"], new["payload"]) == (
            "alert", str(old["alert_id"]), old["member"], {"kind": old["kind"], "level": old["level"]})

    svc = services(config)
    assert [(d.kind, d.level, d.member, d.channel, d.state, d.attempts) for d in svc.get(made.alert_id).deliveries
            ] == [("page", 1, "chan", "webhook", "sending", 1), ("page", 1, "chan", "email", "pending", 2),
                  ("taken", 2, "wong", "apprise", "failed", 5), ("page", 2, "wong", "webhook", "delivered", 1)]
    svc.start()
    [page] = hook.wait_for(1, 20, event="alert.page")
    [mail] = smtp.wait_for(1)
    assert page.key == before[0]["idempotency_key"]
    assert mail["X-Radtriage-Idempotency-Key"] == before[1]["idempotency_key"]
    assert wait_until(lambda: [d.state for d in svc.get(made.alert_id).deliveries][:2] == ["delivered"] * 2, 10)
    assert [d.attempts for d in svc.get(made.alert_id).deliveries] == [2, 3, 5, 1]
    svc.stop()
    with db.write() as conn:  # a new row after the upgrade gets a fresh id (PostgreSQL's sequence moved on)
        assert enqueue(conn, "export", "export-after-0006", subject="1", target="pacs", channel="dicom",
                       payload={}, now=utcnow()) > 12
