"""The alert state machine, one transaction at a time: page a level, escalate, bypass, acknowledge, resolve,
withdraw.

Every function runs inside the caller's write transaction (``conn``) and
writes its audit entry there, so a state change and its record commit
together. They return what happened so the caller can count it in the
metrics after the commit.
"""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection

from radtriage.alerts.config import AlertingConfig
from radtriage.alerts.message import one_line
from radtriage.alerts.rota import recipients
from radtriage.db import alerts as store
from radtriage.db.alerts import ACKNOWLEDGED, DELIVERED, OPEN, PAGE, PENDING, RESOLVED, SENDING, TAKEN, WITHDRAWN
from radtriage.db.audit import record

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Outcome:
    """What a transition did: ``event`` is a metrics outcome (escalated, unanswered, acknowledged...)."""

    event: str | None
    alert: dict[str, Any]
    refused: str | None = None  # why nothing changed when that was a refusal ("left level")


def _audit(conn: Connection, action: str, alert: dict[str, Any], actor: str = "system", role: str | None = None,
           client: str | None = None, **detail: Any) -> None:
    record(conn, action, actor=actor, role=role, study_uid=alert["study_uid"], client=client,
           detail={"alert_id": alert["id"], "policy": alert["policy"], "finding": alert["finding_code"], **detail})


def start_level(conn: Connection, config: AlertingConfig, alert: dict[str, Any], index: int,
                now: dt.datetime) -> int:
    """Queue the pages of policy level ``index`` and set its acknowledgement deadline; the number queued.

    A level that reaches nobody (no one on call, no usable contact) is due to
    escalate at once, and says so in the audit log.
    """
    level = config.policies[alert["policy"]].level(index, bool(alert.get("late_route")))
    rows = []
    for mid in recipients(config, level, now):
        member = config.member(mid)
        channels = [c for c in level.channels if member is not None and member.contacts.has(c)]
        if level.channel_mode == "fallback":
            channels = channels[:1]
        rows += [{"alert_id": alert["id"], "kind": PAGE, "level": index, "member": mid, "channel": c} for c in channels]
    store.add_deliveries(conn, rows, now)
    due = now + dt.timedelta(seconds=level.ack_timeout_s) if rows else now
    store.update_alert(conn, alert["id"], level=index, next_escalation_at=due, updated_at=now)
    if not rows:
        _audit(conn, "alert_failed", alert, level=index + 1, reason="nobody reachable at this level")
        log.error("alert %s: nobody reachable at level %d; escalating", alert["id"], index + 1)
    return len(rows)


def escalate(conn: Connection, config: AlertingConfig, alert: dict[str, Any], now: dt.datetime) -> Outcome | None:
    """The current level's deadline passed (or it reached nobody): page the next level (the last one again
    while it has repeats left), or mark it unanswered."""
    policy = config.policies.get(alert["policy"])
    delivered = any(d["kind"] == PAGE and d["level"] == alert["level"] and d["state"] == DELIVERED
                    for d in store.deliveries_of(conn, alert["id"]))
    reason = "no acknowledgement" if delivered else "not delivered"
    nxt = alert["level"] + 1
    expect = {"state": OPEN, "level": alert["level"]}
    late = bool(alert.get("late_route"))
    if policy is not None and nxt < policy.rounds(late):
        if not store.update_alert(conn, alert["id"], expect, level=nxt, updated_at=now):
            return None
        start_level(conn, config, alert, nxt, now)
        count = len(policy.route(late))
        repeat = nxt - count + 1 if nxt >= count else None
        _audit(conn, "alert_escalated", alert, from_level=alert["level"] + 1, to_level=nxt + 1, reason=reason,
               level_name=policy.level(nxt, late).name, **({"repeat": repeat} if repeat else {}))
        log.warning("alert %s escalated to level %d%s (%s)", alert["id"], nxt + 1,
                    f" (last level again, repeat {repeat})" if repeat else "", reason)
        return Outcome("escalated", alert)
    if not store.update_alert(conn, alert["id"], expect, exhausted=True, next_escalation_at=None, updated_at=now):
        return None
    _audit(conn, "alert_escalated", alert, from_level=alert["level"] + 1, to_level=None, reason=reason,
           exhausted=True)
    log.error("alert %s: every level paged and nobody has acknowledged (%s)", alert["id"], reason)
    return Outcome("unanswered", alert)


def after_failure(conn: Connection, config: AlertingConfig, delivery: dict[str, Any], now: dt.datetime) -> None:
    """A page failed for good: the member's next channel takes over (fallback mode); a level left with
    nothing delivered or in flight escalates at once."""
    alert = store.get_alert(conn, delivery["alert_id"])
    policy = config.policies.get(alert["policy"]) if alert else None
    if alert is None or policy is None or delivery["kind"] != PAGE or alert["state"] != OPEN:
        return
    level = policy.level(delivery["level"], bool(alert.get("late_route")))
    existing = store.deliveries_of(conn, alert["id"])
    if level.channel_mode == "fallback":
        member = config.member(delivery["member"])
        tried = {d["channel"] for d in existing if d["member"] == delivery["member"] and d["level"] == delivery["level"]}
        later = [c for c in level.channels if c not in tried and member is not None and member.contacts.has(c)]
        if later:
            store.add_deliveries(conn, [{"alert_id": alert["id"], "kind": PAGE, "level": delivery["level"],
                                         "member": delivery["member"], "channel": later[0]}], now)
            return
    live = [d for d in existing if d["kind"] == PAGE and d["level"] == alert["level"]
            and d["state"] in (PENDING, SENDING, DELIVERED)]
    if delivery["level"] == alert["level"] and not live:
        store.update_alert(conn, alert["id"], {"state": OPEN, "level": alert["level"]}, next_escalation_at=now,
                           updated_at=now)
        log.error("alert %s: nothing delivered at level %d; the next level takes over", alert["id"], alert["level"] + 1)


def acknowledge(conn: Connection, config: AlertingConfig, alert_id: int, now: dt.datetime, *, actor: str,
                display_name: str, via: str, member: str | None = None, role: str | None = None,
                link_level: int | None = None, client: str | None = None, user_agent: str | None = None) -> Outcome:
    """Someone is taking it: stop escalation, cancel pages not yet sent, tell those already paged.

    Acknowledging an alert someone already took changes nothing (``event`` None;
    ``alert`` says who has it). A one-click link carries the round it was sent at
    (``link_level``): once the alert has escalated past it, the link is refused
    (``refused`` "left level", audited with the client). `LookupError` for an unknown alert.
    """
    alert = store.get_alert(conn, alert_id, lock=True)
    if alert is None:
        raise LookupError(alert_id)
    client, user_agent = (client or None) and client[:64], one_line(user_agent, 256)
    evidence = {"client": client, "user_agent": user_agent} if via == "link" else {}
    if link_level is not None and alert["state"] == OPEN and alert["level"] != link_level:
        _audit(conn, "alert_ack_refused", alert, actor=actor, role=role, via=via, member=member,
               reason="the alert has left the link's level", link_level=link_level + 1, level=alert["level"] + 1,
               **evidence)
        return Outcome(None, alert, refused="left level")
    values = {"state": ACKNOWLEDGED, "acked_at": now, "acked_by": actor[:64], "acked_by_name": display_name[:128],
              "acked_member": member, "ack_via": via, "next_escalation_at": None, "updated_at": now,
              "ack_client": client, "ack_user_agent": user_agent}
    if alert["state"] != OPEN or not store.update_alert(conn, alert_id, {"state": OPEN, "level": alert["level"]},
                                                        **values):
        return Outcome(None, store.get_alert(conn, alert_id) or alert)
    store.cancel_pending(conn, alert_id, now)
    seconds = round((now - alert["created_at"]).total_seconds(), 1)
    _audit(conn, "alert_acknowledged", alert, actor=actor, role=role, via=via, member=member,
           level=alert["level"] + 1, seconds=seconds,
           **({"link_level": link_level + 1} if link_level is not None else {}), **evidence)
    policy = config.policies.get(alert["policy"])
    if policy is not None and policy.notify_on_ack:
        paged = sorted({(d["member"], d["channel"]) for d in store.deliveries_of(conn, alert_id)
                        if d["kind"] == PAGE and d["state"] in (SENDING, DELIVERED) and d["member"] != member})
        store.add_deliveries(conn, [{"alert_id": alert_id, "kind": TAKEN, "level": alert["level"], "member": m,
                                     "channel": c} for m, c in paged], now)
    return Outcome("acknowledged", {**alert, **values})


def resolve(conn: Connection, alert_id: int, now: dt.datetime, *, actor: str, reason: str,
            role: str | None = None) -> Outcome:
    """Close an alert (reviewed, a false positive, superseded); pages not yet sent are cancelled."""
    alert = store.get_alert(conn, alert_id, lock=True)
    if alert is None:
        raise LookupError(alert_id)
    values = {"state": RESOLVED, "resolved_at": now, "resolved_by": actor[:64], "resolved_reason": reason[:128],
              "next_escalation_at": None, "updated_at": now}
    if alert["state"] == RESOLVED or not store.update_alert(conn, alert_id, {"state": alert["state"]}, **values):
        return Outcome(None, alert)
    store.cancel_pending(conn, alert_id, now)
    _audit(conn, "alert_resolved", alert, actor=actor, role=role, reason=reason[:128])
    return Outcome("resolved", {**alert, **values})


def withdraw(conn: Connection, alert: dict[str, Any], now: dt.datetime, *, actor: str, reason: str,
             role: str | None = None, client: str | None = None) -> Outcome:
    """The AI that raised the alert is under review (its pipeline demoted or suspended): resolve it with
    ``reason``, so it escalates no more, cancel the pages not yet sent, and queue one "withdrawn" message
    to each member already paged (on each channel that reached them)."""
    values = {"state": RESOLVED, "resolved_at": now, "resolved_by": actor[:64], "resolved_reason": reason[:128],
              "next_escalation_at": None, "updated_at": now}
    if alert["state"] == RESOLVED or not store.update_alert(conn, alert["id"], {"state": alert["state"]}, **values):
        return Outcome(None, alert)
    cancelled = store.cancel_pending(conn, alert["id"], now)
    paged = sorted({(d["member"], d["channel"]) for d in store.deliveries_of(conn, alert["id"])
                    if d["kind"] == PAGE and d["state"] in (SENDING, DELIVERED)})
    store.add_deliveries(conn, [{"alert_id": alert["id"], "kind": WITHDRAWN, "level": alert["level"], "member": m,
                                 "channel": c} for m, c in paged], now)
    _audit(conn, "alert_withdrawn", alert, actor=actor, role=role, client=client, reason=reason[:128],
           pipeline=alert["pipeline_id"], was=alert["state"], level=alert["level"] + 1, cancelled=cancelled,
           told=sorted({m for m, _ in paged}))
    return Outcome("withdrawn", {**alert, **values})
