"""The delivery worker: sends due deliveries, retries with backoff, escalates on timeout.

``delivery.workers`` threads each take one due delivery at a time from the
outbox with a lease, send it outside any transaction, and record the outcome:
delivered; tried again after ``backoff_s * 2**(attempt-1)`` (capped); or, after
``max_attempts`` or a permanent refusal, failed, reported (audit, log,
metrics) and bypassed (`outbox.after_failure`). A sender that dies mid-send
leaves its lease to run out; the delivery is then sent again with the same
idempotency key, which the receiver uses to take it once. Between deliveries
the threads escalate alerts whose acknowledgement deadline passed, and one of
them periodically looks for positive results that never got an alert decision.
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from radtriage.alerts import outbox
from radtriage.alerts.channels import Channels, SendError
from radtriage.alerts.config import AlertingConfig
from radtriage.alerts.message import AlertContent, Outgoing, compose, key_image_path
from radtriage.alerts.metrics import AlertMetrics
from radtriage.alerts.signing import ack_token
from radtriage.background import Background, brief
from radtriage.db import alerts as store
from radtriage.db.clock import utcnow
from radtriage.db.alerts import CANCELLED, DELIVERED, FAILED, OPEN, PAGE, PENDING
from radtriage.db.audit import record
from radtriage.db.engine import Database

log = logging.getLogger(__name__)


class AlertWorker(Background):
    def __init__(self, db: Database, config: AlertingConfig, channels: Channels, metrics: AlertMetrics,
                 secret_key: bytes, recover: Callable[[], int] | None = None, results_dir: Path | None = None) -> None:
        super().__init__("alerts", config.delivery.poll_s, threads=config.delivery.workers, log=log)
        self.db, self.config, self.channels, self.metrics = db, config, channels, metrics
        self.key, self.results_dir = secret_key, results_dir
        self.recover = recover
        self._sweep_lock = threading.Lock()
        self._next_sweep = self._next_recovery = 0.0

    # -- one delivery -------------------------------------------------------------------
    def deliver_one(self) -> bool:
        """Send one due delivery; False when none was due."""
        now = utcnow()
        if not store.work_due(self.db, now)[0]:
            return False
        with self.db.write() as conn:
            d = store.claim_delivery(conn, now, self.config.delivery.lease_s)
            if d is None:
                return False
            alert = store.get_alert(conn, d["alert_id"])
            if d["kind"] == PAGE and alert["state"] != OPEN:  # taken or resolved meanwhile
                store.finish_delivery(conn, d["id"], d["attempts"], state=CANCELLED, finished_at=now)
                return True
            record(conn, "alert_sent", study_uid=alert["study_uid"], detail=self._detail(d, attempt=d["attempts"]))
        try:
            self.channels.send(d["channel"], d["member"], self._message(alert, d, now))
            error, permanent = None, False
        except SendError as exc:
            error, permanent = str(exc), exc.permanent
        except Exception as exc:  # noqa: BLE001 - any sender failure is the delivery's, never the worker's
            error, permanent = brief(exc), False
        if error is None:
            self._delivered(alert, d)
        else:
            self._failed(d, error[:500], permanent)
        return True

    @staticmethod
    def _detail(d: dict[str, Any], **more: Any) -> dict[str, Any]:
        return {"alert_id": d["alert_id"], "delivery_id": d["id"], "kind": d["kind"], "channel": d["channel"],
                "member": d["member"], "level": d["level"] + 1, **more}

    def _message(self, alert: dict[str, Any], d: dict[str, Any], now: dt.datetime) -> Outgoing:
        links = self.config.links
        member = self.config.member(d["member"])
        ack_url = expires = None
        if d["kind"] == PAGE:
            expires = now + dt.timedelta(seconds=links.ack_link_ttl_s)
            token = ack_token(self.key, alert["id"], d["member"], int(expires.timestamp()), level=d["level"])
            ack_url = f"{links.base_url}/alerts/ack/{token}"
        image = key_image_path(alert["key_image"], self.results_dir)
        return compose(AlertContent.model_validate(alert["content"]), alert_id=alert["id"], key=d["idempotency_key"],
                       event="alert.page" if d["kind"] == PAGE else "alert.taken", level=d["level"],
                       recipient=member.name if member else d["member"], now=now, zone=self.config.zone(),
                       ack_url=ack_url, ack_expires=expires, taken_by=alert["acked_by_name"], key_image=image)

    def _delivered(self, alert: dict[str, Any], d: dict[str, Any]) -> None:
        now = utcnow()
        with self.db.write() as conn:
            if not store.finish_delivery(conn, d["id"], d["attempts"], state=DELIVERED, delivered_at=now,
                                         finished_at=now, last_error=None):
                return  # its lease ran out and another sender has it
            first = d["kind"] == PAGE and store.update_alert(conn, alert["id"], {"first_delivered_at": None},
                                                             first_delivered_at=now)
            seconds = round((now - alert["created_at"]).total_seconds(), 3)
            record(conn, "alert_delivered", study_uid=alert["study_uid"],
                   detail=self._detail(d, attempts=d["attempts"], seconds=seconds))
        m = self.metrics
        m.deliveries.labels(d["channel"], "delivered").inc()
        if d["kind"] == PAGE:
            m.delivery_seconds.labels(d["channel"]).observe(seconds)
        if first:
            m.scan_to_delivery_seconds.labels(alert["finding_code"]).observe(
                max(0.0, (now - alert["received_at"]).total_seconds()))

    def _failed(self, d: dict[str, Any], error: str, permanent: bool) -> None:
        now, dl = utcnow(), self.config.delivery
        final = permanent or d["attempts"] >= dl.max_attempts
        with self.db.write() as conn:
            if final:
                mine = store.finish_delivery(conn, d["id"], d["attempts"], state=FAILED, finished_at=now,
                                             last_error=error)
                if mine:
                    record(conn, "alert_failed", study_uid=store.get_alert(conn, d["alert_id"])["study_uid"],
                           detail=self._detail(d, attempts=d["attempts"], error=error))
                    outbox.after_failure(conn, self.config, d, now)
            else:
                delay = min(dl.backoff_s * 2 ** (d["attempts"] - 1), dl.max_backoff_s)
                store.finish_delivery(conn, d["id"], d["attempts"], state=PENDING, last_error=error,
                                      next_attempt_at=now + dt.timedelta(seconds=delay))
        level = logging.ERROR if final else logging.WARNING
        log.log(level, "alert %s: %s to %s, attempt %d: %s%s", d["alert_id"], d["channel"], d["member"],
                d["attempts"], error, " - given up, bypassed" if final else " - will retry")
        self.metrics.deliveries.labels(d["channel"], "failed" if final else "retry").inc()
        if final:
            self.wake()

    # -- escalation ---------------------------------------------------------------------
    def escalate_due(self) -> int:
        """Escalate every open alert whose deadline passed; how many moved."""
        now = utcnow()
        if not store.work_due(self.db, now)[1]:
            return 0
        with self.db.write() as conn:
            done = [o for a in store.due_escalations(conn, now) if (o := outbox.escalate(conn, self.config, a, now))]
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
