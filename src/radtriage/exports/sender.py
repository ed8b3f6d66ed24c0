"""The outbox `Sender` of kind ``export``: loads the result a row is about, builds what its channel sends
(DICOM objects, an HL7 ORU, a FHIR DiagnosticReport) and delivers it to the row's destination.

Building happens at send time from the stored result, never from a copy in the row, so a resend builds
the same objects (their UIDs come from the result and the revision). A row whose destination left the
configuration, or whose result is gone, is cancelled. Delivered and given-up rows are audited with the
result id, destination, status and revision (no patient data); what a destination refused (a SEG) is
kept on the row and shown on the study page.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable, Mapping
from typing import Any

from sqlalchemy import Connection
from prometheus_client import CollectorRegistry, Counter

from radtriage.config import Settings
from radtriage.config.exports import Destination
from radtriage.db import audit
from radtriage.db import exports as rows
from radtriage.exports.load import exported_report, exported_result
from radtriage.exports.model import ExportedResult
from radtriage.outbox import Attempt, Retry

log = logging.getLogger("radtriage.exports")

Deliver = Callable[[Destination, ExportedResult, Attempt], None]
"""Sends one result to one destination of its channel; raises `SendError`; may leave notes on the attempt."""


class ExportSender:
    """Kind ``export`` of `radtriage.outbox`: one row = one result (revision) to one destination."""

    def __init__(self, settings: Settings, deliver: Mapping[str, Deliver], about: Mapping[str, Mapping[str, Any]],
                 registry: CollectorRegistry | None = None) -> None:
        cfg = settings.exports
        self.settings, self.deliver, self.about = settings, dict(deliver), dict(about)
        self.retry = Retry(max_attempts=cfg.max_attempts, backoff_s=cfg.backoff_s, max_backoff_s=cfg.max_backoff_s,
                           lease_s=120.0)
        self.sent = Counter("radtriage_exports", "Results sent out, by channel and outcome", ["channel", "outcome"],
                            registry=registry)

    def prepare(self, conn: Connection, attempt: Attempt, now: dt.datetime) -> bool:
        item = attempt.item
        found = self.settings.exports.named(item["target"])
        if found is None or found[0] != item["channel"] or item["channel"] not in self.deliver:
            log.warning("export %s: destination %s (%s) is no longer configured: cancelled", item["id"],
                        item["target"], item["channel"])
            return False
        load = exported_report if "report_id" in item["payload"] else exported_result  # a report, or a result
        result = load(conn, item["payload"], self.about)
        if result is None:
            log.warning("export %s: %s is gone: cancelled", item["id"], item["subject"])
            return False
        attempt.context = (found[1], result)
        return True

    def send(self, attempt: Attempt, now: dt.datetime) -> None:
        dest, result = attempt.context
        self.deliver[attempt.item["channel"]](dest, result, attempt)

    def record(self, conn: Connection, attempt: Attempt, now: dt.datetime) -> None:
        item, p = attempt.item, attempt.item["payload"]
        notes = attempt.notes.get("notes") or []
        if notes:
            rows.add_notes(conn, item["id"], notes)
        action = "result_exported" if attempt.outcome == "delivered" else "result_export_failed"
        study_uid = attempt.context[1].study_uid if attempt.context else None
        audit.record(conn, action, actor="radtriage", role="system", study_uid=study_uid,
                     detail={**({"report": p["report_id"]} if "report_id" in p else {"result": p.get("result_id")}),
                             "destination": item["target"], "channel": item["channel"],
                             "status": p.get("status"), "revision": p.get("revision"),
                             **({"error": attempt.error} if attempt.error else {}), **({"notes": notes} if notes else {})})

    def report(self, attempt: Attempt) -> None:
        item = attempt.item
        self.sent.labels(item["channel"], attempt.outcome or "unknown").inc()
        if attempt.outcome == "delivered":
            log.info("export %s: %s %s r%s delivered to %s", item["id"], item["subject"],
                     item["payload"].get("status"), item["payload"].get("revision"), item["target"])
        else:
            log.warning("export %s: to %s %s: %s", item["id"], item["target"],
                        "will be retried" if attempt.outcome == "retry" else "given up", attempt.error)


def note(attempt: Attempt, text: str) -> None:
    """Leave a note for the study page and the audit (e.g. a SOP class the destination refused)."""
    attempt.notes.setdefault("notes", []).append(text)
