"""The outbox worker: sends due rows of the kinds it has senders for, retries with backoff, gives up.

Each thread takes one due row at a time with a lease (`radtriage.db.outbox.claim`),
lets the kind's `Sender` send it outside any transaction, and records the outcome:
delivered; tried again after ``backoff_s * 2**(attempt-1)`` (capped at
``max_backoff_s``); or, after ``max_attempts`` or a permanent refusal
(`SendError` with ``permanent``), failed for good, when the sender's ``record``
hook bypasses it (an alert pages the next channel or level). A sender that dies
mid-send leaves its lease to run out; the row is then sent again with the same
idempotency key, which the receiver uses to take it once.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from sqlalchemy import Connection

from radtriage.background import Background, brief
from radtriage.db import outbox as rows
from radtriage.db.clock import utcnow
from radtriage.db.engine import Database

RETRY, GIVEN_UP = "retry", "failed"  # an `Attempt`'s outcomes besides delivered


class SendError(Exception):
    """A send that did not go through; ``permanent``: trying again cannot help (a refused recipient)."""

    def __init__(self, message: str, permanent: bool = False) -> None:
        super().__init__(message)
        self.permanent = permanent


@dataclass(frozen=True)
class Retry:
    """How a kind is retried: attempts before giving up, the backoff, and the lease a sender holds."""

    max_attempts: int = 5
    backoff_s: float = 5.0
    max_backoff_s: float = 300.0
    lease_s: float = 60.0

    def delay(self, attempts: int) -> float:
        """Seconds to wait after the ``attempts``-th failed attempt."""
        return min(self.backoff_s * 2 ** (attempts - 1), self.max_backoff_s)


@dataclass
class Attempt:
    """One claimed row on its way out (``attempts`` already counts this one)."""

    item: dict[str, Any]
    context: Any = None  # what the sender's prepare loaded (an alert's row)
    outcome: str | None = None  # delivered | retry | failed
    error: str | None = None
    notes: dict[str, Any] = field(default_factory=dict)  # what record leaves for report (metrics)


class Sender(Protocol):
    """How one kind of row is sent; alerts, exports and forwards each bring one."""

    retry: Retry

    def prepare(self, conn: Connection, attempt: Attempt, now: dt.datetime) -> bool:
        """In the claim's transaction: load what sending needs into ``attempt.context``; False when the
        row became moot (it is cancelled, not sent)."""

    def send(self, attempt: Attempt, now: dt.datetime) -> None:
        """Send it, outside any transaction; raise (`SendError` for a known refusal) when it did not go."""

    def record(self, conn: Connection, attempt: Attempt, now: dt.datetime) -> None:
        """In the transaction that marks the row delivered or failed for good (``attempt.outcome``):
        the audit entry, and after a failure the bypass."""

    def report(self, attempt: Attempt) -> None:
        """After the commit (and after a failure meant to be retried): metrics and the log line."""


class OutboxWorker(Background):
    """``threads`` threads delivering the due rows of the kinds in ``senders``."""

    def __init__(self, db: Database, senders: Mapping[str, Sender], *, name: str = "outbox", idle_s: float = 1.0,
                 threads: int = 1, log: logging.Logger | None = None) -> None:
        super().__init__(name, idle_s, threads=threads, log=log)
        self.db, self.senders = db, dict(senders)
        self.leases = {kind: s.retry.lease_s for kind, s in self.senders.items()}

    def deliver_one(self) -> bool:
        """Send one due row; False when none was due."""
        now = utcnow()
        with self.db.read() as conn:
            if not rows.any_due(conn, self.leases, now):
                return False
        with self.db.write() as conn:
            item = rows.claim(conn, now, self.leases)
            if item is None:
                return False
            sender, attempt = self.senders[item["kind"]], Attempt(item)
            if not sender.prepare(conn, attempt, now):
                rows.finish(conn, item["id"], item["attempts"], state=rows.CANCELLED, finished_at=now)
                return True
        try:
            sender.send(attempt, now)
            error, permanent = None, False
        except SendError as exc:
            error, permanent = str(exc), exc.permanent
        except Exception as exc:  # noqa: BLE001 - any sender failure is the row's, never the worker's
            error, permanent = brief(exc), False
        if error is None:
            self._delivered(sender, attempt)
        else:
            self._failed(sender, attempt, error[:500], permanent)
        return True

    def _delivered(self, sender: Sender, attempt: Attempt) -> None:
        now, item = utcnow(), attempt.item
        with self.db.write() as conn:
            if not rows.finish(conn, item["id"], item["attempts"], state=rows.DELIVERED, delivered_at=now,
                               finished_at=now, last_error=None):
                return  # its lease ran out and another sender has it
            attempt.outcome = rows.DELIVERED
            sender.record(conn, attempt, now)
        sender.report(attempt)

    def _failed(self, sender: Sender, attempt: Attempt, error: str, permanent: bool) -> None:
        now, item = utcnow(), attempt.item
        final = permanent or item["attempts"] >= sender.retry.max_attempts
        attempt.outcome, attempt.error = (GIVEN_UP if final else RETRY), error
        with self.db.write() as conn:
            if not final:
                rows.finish(conn, item["id"], item["attempts"], state=rows.PENDING, last_error=error,
                            next_attempt_at=now + dt.timedelta(seconds=sender.retry.delay(item["attempts"])))
            elif rows.finish(conn, item["id"], item["attempts"], state=rows.FAILED, finished_at=now,
                             last_error=error):
                sender.record(conn, attempt, now)
        sender.report(attempt)
        if final:
            self.wake()  # the bypass may have queued the next row

    def step(self, index: int) -> bool:
        return self.deliver_one()
