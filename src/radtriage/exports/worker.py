"""Results out as a part of `radtriage serve`: the outbox worker of kind ``export`` and the hooks that queue.

`Exports.queue` runs in the transaction that records results (`radtriage.db.ledger.record_results`);
`Exports.withdraw` in the transaction of a demotion or a reader's "wrong"; `wake` after the commit. Its
own `OutboxWorker` (two threads), so a slow PACS never delays a stroke page.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping
from typing import Any

from prometheus_client import CollectorRegistry
from sqlalchemy import Connection

from radtriage.config import Settings
from radtriage.db.engine import Database
from radtriage.exports import KIND, plan
from radtriage.exports.channels import channels
from radtriage.exports.load import pipelines_about
from radtriage.exports.sender import ExportSender
from radtriage.outbox import OutboxWorker


class Exports:
    def __init__(self, db: Database, settings: Settings, specs: Iterable[Any],
                 registry: CollectorRegistry | None = None) -> None:
        self.settings = settings.exports
        self.sender = ExportSender(settings, channels(settings),
                                   pipelines_about(specs, settings.inference.models_dir), registry)
        self.worker = OutboxWorker(db, {KIND: self.sender}, name="exports", idle_s=1.0, threads=2)

    @property
    def enabled(self) -> bool:
        return bool(self.settings.destinations())

    def queue(self, conn: Connection, recorded: list[Mapping[str, Any]], now: dt.datetime) -> int:
        return plan.queue_new(conn, self.settings, recorded, now) if self.enabled else 0

    def withdraw(self, conn: Connection, result_ids: Iterable[int], reason: str, now: dt.datetime) -> int:
        return plan.queue_withdrawal(conn, result_ids, reason, now)

    def wake(self, *_: Any) -> None:
        self.worker.wake()

    def start(self) -> None:
        self.worker.start()

    def stop(self) -> None:
        self.worker.stop()
