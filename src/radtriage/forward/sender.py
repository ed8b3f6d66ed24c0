"""The outbox `Sender` of kind ``forward``: one row = one instance to the hub (channel ``dicom`` or ``stow``),
or one series check (channel ``check``).

An instance row is sent from the stored file at send time (`forward.copy`); a row whose instance is gone, or
was replaced by other bytes since (the sweep queued those), is cancelled. A series check asks the hub which
of the series' instances it lacks; when it is delivered, its ``record`` queues each missing instance again
(key ``...:r<round>``) and, up to ``check_rounds``, a further check, in the transaction that marks it
delivered. Every instance forwarded or given up and every check is audited (UIDs, no patient data).
"""

from __future__ import annotations

import datetime as dt
import logging
from pathlib import Path
from typing import Any

import httpx
from prometheus_client import CollectorRegistry, Counter
from sqlalchemy import Connection

from radtriage.config.forward import ForwardSettings
from radtriage.db import audit
from radtriage.db import forward as rows
from radtriage.db import outbox
from radtriage.forward import transport
from radtriage.forward.copy import forwarded_copy
from radtriage.outbox import Attempt, Retry

log = logging.getLogger("radtriage.forward")


class ForwardSender:
    """Kind ``forward`` of `radtriage.outbox`."""

    def __init__(self, cfg: ForwardSettings, calling_ae: str, registry: CollectorRegistry | None = None) -> None:
        self.cfg, self.calling_ae = cfg, cfg.calling_ae or calling_ae
        self.retry = Retry(max_attempts=cfg.max_attempts, backoff_s=cfg.backoff_s, max_backoff_s=cfg.max_backoff_s,
                           lease_s=120.0)
        tls = cfg.tls.context() if cfg.tls is not None else True
        self.client = httpx.Client(timeout=30.0, verify=tls)
        self.sent = Counter("radtriage_forward", "Instances and series checks forwarded to the hub, by outcome",
                            ["channel", "outcome"], registry=registry)
        self.issuer_said: set[str] = set()  # series whose added issuer was said at info level
        self.requeued = Counter("radtriage_forward_requeued", "Instances queued again because the hub lacked them",
                                registry=registry)

    @property
    def hub_name(self) -> str:
        return self.cfg.dicom.name if self.cfg.dicom is not None else "hub"

    def prepare(self, conn: Connection, attempt: Attempt, now: dt.datetime) -> bool:
        item, p = attempt.item, attempt.item["payload"]
        if item["channel"] == rows.CHECK:
            attempt.context = rows.series_instances(conn, p["series_uid"])
            return True
        found = rows.instance(conn, p["sop_instance_uid"])
        if found is None or found["sha256"] != p["sha256"]:
            log.info("forward %s: sop_instance_uid=%s is %s: cancelled", item["id"], p["sop_instance_uid"],
                     "gone" if found is None else "replaced (its new bytes have their own row)")
            return False
        attempt.context = found
        return True

    def send(self, attempt: Attempt, now: dt.datetime) -> None:
        item, p = attempt.item, attempt.item["payload"]
        if item["channel"] == rows.CHECK:
            attempt.notes["missing"] = self._check(p, attempt.context)
            return
        found = attempt.context
        copy = forwarded_copy(Path(found["path"]), self.cfg.issuer)
        attempt.notes["issuer_added"] = copy.issuer_added
        if self.cfg.dicom is not None:
            transport.cstore(self.cfg.dicom, self.calling_ae, copy, found["sop_class_uid"],
                             found["transfer_syntax_uid"])
        else:
            transport.stow(self.client, self.cfg.stow_url, self.cfg.token(), copy)

    def _check(self, p: dict[str, Any], held_here: list[dict[str, Any]]) -> list[str] | None:
        uids = [i["sop_instance_uid"] for i in held_here]
        url = self.cfg.check_url
        if url is not None:
            return transport.check_api(self.client, url, self.cfg.token(), self.cfg.site, p["study_uid"],
                                       p["series_uid"], uids)
        assert self.cfg.dicom is not None
        return transport.commitment(self.cfg.dicom, self.calling_ae,
                                    [(i["sop_class_uid"], i["sop_instance_uid"]) for i in held_here],
                                    wait_s=self.cfg.dicom.timeout_s)

    def record(self, conn: Connection, attempt: Attempt, now: dt.datetime) -> None:
        item, p = attempt.item, attempt.item["payload"]
        if item["channel"] != rows.CHECK:
            action = "instance_forwarded" if attempt.outcome == outbox.DELIVERED else "instance_forward_failed"
            audit.record(conn, action, actor="radtriage", role="system", study_uid=p["study_uid"],
                         detail={"sop_instance_uid": p["sop_instance_uid"], "hub": self.hub_name,
                                 "channel": item["channel"], "issuer_added": attempt.notes.get("issuer_added"),
                                 **({"error": attempt.error} if attempt.error else {})})
            return
        missing = attempt.notes.get("missing") if attempt.outcome == outbox.DELIVERED else None
        queued = self._requeue(conn, item, missing or [], now)
        audit.record(conn, "series_forward_checked", actor="radtriage", role="system", study_uid=p["study_uid"],
                     detail={"series_uid": p["series_uid"], "round": p.get("round", 0), "hub": self.hub_name,
                             "missing": None if missing is None else len(missing), "queued_again": queued,
                             **({"error": attempt.error} if attempt.error else {})})
        attempt.notes["queued_again"] = queued

    def _requeue(self, conn: Connection, item: dict[str, Any], missing: list[str], now: dt.datetime) -> int:
        """Queue again each instance the hub lacks, and the next check; how many instances."""
        p = item["payload"]
        round_ = int(p.get("round", 0)) + 1
        here = {i["sop_instance_uid"]: i for i in rows.series_instances(conn, p["series_uid"])}
        n = 0
        for uid in missing:
            inst = here.get(uid)
            key = None if inst is None else rows.instance_key(uid, inst["sha256"], round_)
            if key is None or rows.key_taken(conn, key):
                continue
            outbox.add(conn, rows.KIND, key, subject=p["series_uid"], target=self.hub_name, channel=self.cfg.channel,
                       payload={"sop_instance_uid": uid, "sha256": inst["sha256"], "study_uid": p["study_uid"],
                                "series_uid": p["series_uid"]}, now=now)
            n += 1
        if n and round_ < self.cfg.check_rounds:
            queue_check(conn, self.hub_name, p["study_uid"], p["series_uid"], int(p["version"]), now, round_)
        return n

    def report(self, attempt: Attempt) -> None:
        item, p = attempt.item, attempt.item["payload"]
        outcome = attempt.outcome or "unknown"
        self.sent.labels(item["channel"], outcome).inc()
        queued = attempt.notes.get("queued_again") or 0
        self.requeued.inc(queued)
        what = (f"series check series_uid={p['series_uid']}" if item["channel"] == rows.CHECK
                else f"sop_instance_uid={p['sop_instance_uid']}")
        if outcome == outbox.DELIVERED:
            if item["channel"] == rows.CHECK and attempt.notes.get("missing") is None:
                log.warning("forward %s: %s: the hub does not offer Storage Commitment: not checked", item["id"], what)
            elif item["channel"] == rows.CHECK:
                log.info("forward %s: %s: the hub lacked %d, queued again", item["id"], what, queued)
            elif attempt.notes.get("issuer_added"):
                said = p["series_uid"] in self.issuer_said  # once per series at info, each instance at debug
                log.log(logging.DEBUG if said else logging.INFO, "forward %s: %s delivered with the Issuer of "
                        "Patient ID added (the scanner left it empty; series_uid=%s)", item["id"], what, p["series_uid"])
                if not said:
                    self.issuer_said = {*list(self.issuer_said)[-999:], p["series_uid"]}
        else:
            log.warning("forward %s: %s to %s %s: %s", item["id"], what, self.hub_name,
                        "will be retried" if outcome == "retry" else "given up", attempt.error)

    def close(self) -> None:
        self.client.close()


def queue_instance(conn: Connection, hub: str, channel: str, found: dict[str, Any], now: dt.datetime) -> bool:
    """Queue one stored instance's bytes for the hub, unless they are queued already; whether it was new."""
    key = rows.instance_key(found["sop_instance_uid"], found["sha256"])
    if rows.key_taken(conn, key):
        return False
    outbox.add(conn, rows.KIND, key, subject=found["series_uid"], target=hub, channel=channel,
               payload={k: found[k] for k in ("sop_instance_uid", "sha256", "study_uid", "series_uid")}, now=now)
    return True


def queue_check(conn: Connection, hub: str, study_uid: str, series_uid: str, version: int, now: dt.datetime,
                round_: int = 0) -> bool:
    key = rows.check_key(series_uid, version, round_)
    if rows.key_taken(conn, key):
        return False
    outbox.add(conn, rows.KIND, key, subject=series_uid, target=hub, channel=rows.CHECK,
               payload={"study_uid": study_uid, "series_uid": series_uid, "version": version, "round": round_},
               now=now)
    return True
