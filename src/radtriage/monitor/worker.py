"""`MonitorWorker`: the monitor's background thread. The dispatcher's hook (`recorded`) only marks the
pipeline and wakes it, so recording a result waits for nothing; the thread evaluates each marked pipeline,
every monitored pipeline each `SWEEP_S` (refusals and failures leave no result to mark it), and sends the
monitor's outbox rows (kind ``monitor``) when the alerting file names its recipients.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

from radtriage.alerts.channels import Channels
from radtriage.background import brief
from radtriage.db.engine import Database
from radtriage.monitor.notify import MONITOR, MonitorSender
from radtriage.monitor.watch import Monitor
from radtriage.outbox import OutboxWorker

log = logging.getLogger(__name__)
SWEEP_S = 30.0


class MonitorWorker(OutboxWorker):
    def __init__(self, db: Database, monitor: Monitor, channels: Channels | None = None, idle_s: float = 1.0,
                 sweep_s: float = SWEEP_S) -> None:
        senders = {MONITOR: MonitorSender(monitor.alerting, channels)} if channels and monitor.alerting else {}
        super().__init__(db, senders, name="monitor", idle_s=idle_s, threads=1, log=log)
        self.monitor, self.sweep_s = monitor, sweep_s
        monitor.on_message = self.wake
        self._marked: set[str] = set()
        self._lock = threading.Lock()
        self._next_sweep = 0.0

    def recorded(self, case: Any, pipeline_id: str, *_: Any) -> None:
        """The dispatcher's ``on_result`` hook: a live result of ``pipeline_id`` was recorded."""
        with self._lock:
            self._marked.add(pipeline_id)
        self.wake()

    def evaluate_marked(self) -> int:
        """Evaluate the marked pipelines (all of them when a sweep is due); how many."""
        with self._lock:
            marked, self._marked = self._marked, set()
        if time.monotonic() >= self._next_sweep:
            self._next_sweep = time.monotonic() + self.sweep_s
            marked |= set(self.monitor.watched)
        for pid in sorted(marked):
            try:
                self.monitor.evaluate(pid)
            except Exception as exc:  # noqa: BLE001 - one pipeline's failure stops no other
                log.error("monitor: evaluating %s failed: %s", pid, brief(exc))
        return len(marked)

    def step(self, index: int) -> bool:
        busy = self.deliver_one() if self.senders else False
        return bool(self.evaluate_marked()) or busy


def build_worker(db: Database, settings: Any, specs: list[Any], book: Any, registry: Any, alerts: Any) -> MonitorWorker:
    """The monitor of the running pipelines (``book``: their `StateBook`), its gauges in ``registry``; with the
    alert service ``alerts`` (or None) for the withdraw hook, the recipients and the channels."""
    from functools import partial

    from radtriage.alerts.withdraw import withdraw_pipeline
    from radtriage.monitor.metrics import MonitorMetrics

    withdraw = alerts.withdraw_pipeline if alerts is not None else partial(withdraw_pipeline, db)
    monitor = Monitor(db, settings, specs, book, MonitorMetrics(registry), alerts.config if alerts else None,
                      withdraw)
    return MonitorWorker(db, monitor, alerts.channels if alerts is not None else None)
