"""`DoseWorker`: the dose registry's background thread (a `Background` beside assembly): reads each closed
series once (`DoseRegistry.read_pending`), sends the registry's outbox rows (kind ``dose``) and, once a
day, the physicists' digest. It runs after assembly, never on the ingest path.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

from radtriage.db import Database
from radtriage.db.clock import utcnow
from radtriage.dose.notify import DOSE, DoseNotices, DoseSender
from radtriage.dose.registry import DoseRegistry, load_registry
from radtriage.outbox import OutboxWorker

log = logging.getLogger("radtriage.dose")
DIGEST_CHECK_S = 60.0


class DoseWorker(OutboxWorker):
    def __init__(self, db: Database, registry: DoseRegistry, alerts: Any = None, idle_s: float = 1.0) -> None:
        senders = {DOSE: DoseSender(alerts.config, alerts.channels)} if alerts is not None and registry.notify else {}
        super().__init__(db, senders, name="dose", idle_s=idle_s, threads=1, log=log)
        self.registry = registry
        self._next_digest = 0.0

    def digest_if_due(self) -> int:
        notices = self.registry.notify
        if notices is None or time.monotonic() < self._next_digest:
            return 0
        self._next_digest = time.monotonic() + DIGEST_CHECK_S
        with self.db.write() as conn:
            return notices.digest(conn, utcnow())

    def step(self, index: int) -> bool:
        busy = bool(self.registry.read_pending())
        self.digest_if_due()
        return (self.deliver_one() if self.senders else False) or busy


def build_worker(db: Database, path: Path, alerts: Any = None) -> DoseWorker:
    """The worker of the site's dose file ``path`` (a `DrlError` stops start-up); ``alerts``: the
    `AlertService` whose channels and ``dose:`` recipients tell the physicists (None: no messages)."""
    from radtriage.dose.config import load_dose_config

    config, _ = load_dose_config(path)
    notices = (DoseNotices(alerts.config, config.digest_hour)
               if alerts is not None and alerts.config.dose is not None else None)
    return DoseWorker(db, load_registry(db, path, notices), alerts)
