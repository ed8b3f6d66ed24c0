"""How the monitor's messages reach people: outbox rows of kind ``monitor`` on the alert channels.

Whom: the alerting file's ``monitor:`` section (`radtriage.alerts.config.MonitorNotify`): ``warn`` (the
admins) hears of a warning, ``page`` (the admin on call, by a rota) of a demotion. `enqueue` writes one
row per recipient and channel in the transaction that decided it (idempotency key: the pipeline, the
event and what it is about); `MonitorSender` sends a row on the channel (the same signed webhook, SMTP
and Apprise senders as the stroke alerts) and audits its delivery or failure. Messages name the
pipeline, its model and the signals; never a patient or a study.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Sequence
from typing import Any

from sqlalchemy import Connection

from radtriage.alerts.channels import Channels
from radtriage.alerts.config import AlertingConfig, Target
from radtriage.alerts.message import DISCLAIMER, Outgoing, one_line
from radtriage.alerts.rota import targets
from radtriage.db import audit
from radtriage.outbox import DELIVERED, Attempt, Retry, enqueue

log = logging.getLogger(__name__)
MONITOR = "monitor"  # the monitor's kind of outbox row
ACTOR = "monitor"  # who the monitor's decisions and entries are by (role "system")


def recipients(config: AlertingConfig | None, event: str, at: dt.datetime) -> list[tuple[str, str]]:
    """(member, channel) pairs for ``event`` (warning | demoted): each member once per channel they have."""
    if config is None or config.monitor is None:
        return []
    who: Sequence[Target] = config.monitor.page if event == "demoted" else config.monitor.warn
    out = []
    for member_id in targets(config, list(who), at):
        member = config.member(member_id)
        out += [(member_id, c) for c in config.monitor.channels if member is not None and member.contacts.has(c)]
    return out


def message(event: str, pipeline_id: str, model: str, lines: Sequence[str], extra: dict[str, Any]) -> dict[str, Any]:
    """What every recipient of one monitor event is sent (the row's payload, less the recipient)."""
    if event == "demoted":
        subject = f"radtriage monitor: {pipeline_id} DEMOTED to shadow"
        head = (f"The model monitor demoted {pipeline_id} ({model}) to shadow: its results no longer change a "
                "priority or page anyone, and its open alerts were withdrawn. An admin promotes it again once "
                "the cause is found.")
    else:
        subject = f"radtriage monitor: {pipeline_id} warning"
        head = (f"The model monitor warns that {pipeline_id} ({model}) is out of its expected ranges at this site. "
                "Check what changed (scanners, protocols, referrals); demote it if its results cannot be trusted.")
    body = [head, *(f"- {line}" for line in lines), DISCLAIMER]
    return {"event": f"monitor.{event}", "subject": one_line(subject, 200), "pipeline": pipeline_id, "model": model,
            "text": "\n".join(one_line(x, 1000) or "" for x in body) + "\n", "signals": list(lines), **extra}


def enqueue_all(conn: Connection, config: AlertingConfig | None, key: str, payload: dict[str, Any],
                now: dt.datetime) -> list[str]:
    """Queue ``payload`` to each recipient of its event, in the caller's transaction; the members told."""
    event = payload["event"].split(".", 1)[1]
    told = recipients(config, event, now)
    for member, channel in told:
        enqueue(conn, MONITOR, f"rt-monitor-{key}-{member}-{channel}"[:128], subject=payload["pipeline"],
                target=member, channel=channel, payload=payload, now=now)
    return sorted({m for m, _ in told})


class MonitorSender:
    """The outbox `Sender` for kind ``monitor``."""

    def __init__(self, config: AlertingConfig, channels: Channels) -> None:
        self.config, self.channels = config, channels
        dl = config.delivery
        self.retry = Retry(max_attempts=dl.max_attempts, backoff_s=dl.backoff_s, max_backoff_s=dl.max_backoff_s,
                           lease_s=dl.lease_s)

    def prepare(self, conn: Connection, attempt: Attempt, now: dt.datetime) -> bool:
        return True

    def send(self, attempt: Attempt, now: dt.datetime) -> None:
        row, p = attempt.item, attempt.item["payload"]
        member = self.config.member(row["target"])
        body = {**{k: v for k, v in p.items() if k not in ("subject", "text")}, "idempotency_key": row["idempotency_key"],
                "recipient": member.name if member else row["target"], "message": p["text"].splitlines()[0],
                "sent_at": now.isoformat()}
        self.channels.send(row["channel"], row["target"], Outgoing(key=row["idempotency_key"], event=p["event"],
                                                                   subject=p["subject"], text=p["text"], payload=body))

    def record(self, conn: Connection, attempt: Attempt, now: dt.datetime) -> None:
        row = attempt.item
        done = attempt.outcome == DELIVERED
        audit.record(conn, "monitor_notice_sent" if done else "monitor_notice_failed", actor=ACTOR, role="system",
                     detail={"pipeline": row["subject"], "event": row["payload"]["event"], "member": row["target"],
                             "channel": row["channel"], "attempts": row["attempts"],
                             **({} if done else {"error": attempt.error})})

    def report(self, attempt: Attempt) -> None:
        row = attempt.item
        if attempt.outcome != DELIVERED:
            log.error("monitor message %s to %s by %s: %s", row["payload"]["event"], row["target"], row["channel"],
                      attempt.error)
