"""The alerts' part of the outbox: how a page is sent and bypassed, and the escalation sweep.

`AlertSender` is the outbox `Sender` of kind ``alert``: it cancels a page whose
alert was taken or resolved meanwhile, composes the message (with a signed
one-click link for a page), sends it on the member's channel, audits each step,
counts it in the metrics and, when a delivery fails for good, hands it to
`states.after_failure` (the member's next channel, or the next level at once).
`AlertWorker` is the `OutboxWorker` that sends them (``delivery.workers``
threads, retries and lease from ``delivery``); between deliveries its threads
escalate alerts whose acknowledgement deadline passed, and one of them
periodically looks for positive results that never got an alert decision.
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from sqlalchemy import Connection

from radtriage.alerts import states
from radtriage.alerts.channels import Channels
from radtriage.alerts.config import AlertingConfig
from radtriage.alerts.message import AlertContent, Outgoing, compose, key_image_path
from radtriage.alerts.metrics import AlertMetrics
from radtriage.alerts.signing import ack_token
from radtriage.db import alerts as store
from radtriage.db.alerts import ALERT, DELIVERED, OPEN, PAGE
from radtriage.db.audit import record
from radtriage.db.clock import utcnow
from radtriage.db.engine import Database
from radtriage.outbox import RETRY, Attempt, OutboxWorker, Retry

log = logging.getLogger(__name__)


class AlertSender:
    """The outbox `Sender` for alert deliveries (``attempt.context`` is the alert and the delivery)."""

    def __init__(self, config: AlertingConfig, channels: Channels, metrics: AlertMetrics, secret_key: bytes,
                 results_dir: Path | None = None) -> None:
        self.config, self.channels, self.metrics = config, channels, metrics
        self.key, self.results_dir = secret_key, results_dir
        dl = config.delivery
        self.retry = Retry(max_attempts=dl.max_attempts, backoff_s=dl.backoff_s, max_backoff_s=dl.max_backoff_s,
                           lease_s=dl.lease_s)

    def prepare(self, conn: Connection, attempt: Attempt, now: dt.datetime) -> bool:
        d = store.as_delivery(attempt.item)
        alert = store.get_alert(conn, d["alert_id"])
        if alert is None or (d["kind"] == PAGE and alert["state"] != OPEN):  # taken or resolved meanwhile
            return False
        attempt.context = alert, d
        record(conn, "alert_sent", study_uid=alert["study_uid"], detail=self._detail(d, attempt=d["attempts"]))
        return True

    def send(self, attempt: Attempt, now: dt.datetime) -> None:
        alert, d = attempt.context
        self.channels.send(d["channel"], d["member"], self.message(alert, d, now))

    def record(self, conn: Connection, attempt: Attempt, now: dt.datetime) -> None:
        alert, d = attempt.context
        if attempt.outcome == DELIVERED:
            attempt.notes["first"] = d["kind"] == PAGE and store.update_alert(
                conn, alert["id"], {"first_delivered_at": None}, first_delivered_at=now)
            attempt.notes["seconds"] = seconds = round((now - alert["created_at"]).total_seconds(), 3)
            attempt.notes["scan_seconds"] = max(0.0, (now - alert["received_at"]).total_seconds())
            record(conn, "alert_delivered", study_uid=alert["study_uid"],
                   detail=self._detail(d, attempts=d["attempts"], seconds=seconds))
        else:  # failed for good: report it and bypass
            record(conn, "alert_failed", study_uid=alert["study_uid"],
                   detail=self._detail(d, attempts=d["attempts"], error=attempt.error))
            states.after_failure(conn, self.config, d, now)

    def report(self, attempt: Attempt) -> None:
        alert, d = attempt.context
        m = self.metrics
        if attempt.outcome == DELIVERED:
            m.deliveries.labels(d["channel"], "delivered").inc()
            if d["kind"] == PAGE:
                m.delivery_seconds.labels(d["channel"]).observe(attempt.notes["seconds"])
            if attempt.notes["first"]:
                m.scan_to_delivery_seconds.labels(alert["finding_code"]).observe(attempt.notes["scan_seconds"])
            return
        final = attempt.outcome != RETRY
        log.log(logging.ERROR if final else logging.WARNING, "alert %s: %s to %s, attempt %d: %s%s", d["alert_id"],
                d["channel"], d["member"], d["attempts"], attempt.error,
                " - given up, bypassed" if final else " - will retry")
        m.deliveries.labels(d["channel"], "failed" if final else "retry").inc()

    @staticmethod
    def _detail(d: dict[str, Any], **more: Any) -> dict[str, Any]:
        return {"alert_id": d["alert_id"], "delivery_id": d["id"], "kind": d["kind"], "channel": d["channel"],
                "member": d["member"], "level": d["level"] + 1, **more}

    def message(self, alert: dict[str, Any], d: dict[str, Any], now: dt.datetime) -> Outgoing:
        links = self.config.links
        member = self.config.member(d["member"])
        ack_url = expires = None
        if d["kind"] == PAGE:
            expires = now + dt.timedelta(seconds=links.ack_link_ttl_s)
            token = ack_token(self.key, alert["id"], d["member"], int(expires.timestamp()), level=d["level"])
            ack_url = f"{links.base_url}/alerts/ack/{token}"
        image = key_image_path(alert["key_image"], self.results_dir)
        return compose(AlertContent.model_validate(alert["content"]), alert_id=alert["id"], key=d["idempotency_key"],
                       event=f"alert.{d['kind']}", level=d["level"],
                       recipient=member.name if member else d["member"], now=now, zone=self.config.zone(),
                       ack_url=ack_url, ack_expires=expires, taken_by=alert["acked_by_name"], key_image=image)


class AlertWorker(OutboxWorker):
    def __init__(self, db: Database, config: AlertingConfig, channels: Channels, metrics: AlertMetrics,
                 secret_key: bytes, recover: Callable[[], int] | None = None, results_dir: Path | None = None) -> None:
        self.sender = AlertSender(config, channels, metrics, secret_key, results_dir)
        super().__init__(db, {ALERT: self.sender}, name="alerts", idle_s=config.delivery.poll_s,
                         threads=config.delivery.workers, log=log)
        self.config, self.metrics, self.recover = config, metrics, recover
        self._sweep_lock = threading.Lock()
        self._next_sweep = self._next_recovery = 0.0

    def _message(self, alert: dict[str, Any], d: dict[str, Any], now: dt.datetime) -> Outgoing:
        return self.sender.message(alert, d, now)

    # -- escalation ---------------------------------------------------------------------
    def escalate_due(self) -> int:
        """Escalate every open alert whose deadline passed; how many moved."""
        now = utcnow()
        if not store.escalation_due(self.db, now):
            return 0
        with self.db.write() as conn:
            done = [o for a in store.due_escalations(conn, now) if (o := states.escalate(conn, self.config, a, now))]
        for o in done:
            self.metrics.alerts.labels(o.alert["finding_code"], o.event).inc()
        if done:
            self.wake()
        return len(done)

    # -- the threads ----------------------------------------------------------------------
    def _sweep(self, first: bool) -> None:
        now = time.monotonic()
        if now >= self._next_sweep and self._sweep_lock.acquire(blocking=False):
            try:
                self._next_sweep = now + self.config.delivery.poll_s
                self.escalate_due()
            finally:
                self._sweep_lock.release()
        if first and self.recover is not None and now >= self._next_recovery:
            self._next_recovery = now + self.config.delivery.recover_every_s
            self.recover()

    def step(self, index: int) -> bool:
        busy = self.deliver_one()
        self._sweep(first=index == 0)
        return busy
