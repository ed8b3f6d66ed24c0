"""How the dose registry's flags reach the medical physicists: outbox rows of kind ``dose`` on the alert
channels, with a policy of their own (not the stroke team's).

Whom: the alerting file's ``dose:`` section. A flag judged urgent (a child above a DRL, a pregnant
patient's abdomen or pelvis, a dose above the urgent multiple) is sent at once, night or day; every other
flag waits for the daily digest, one message per physicist at ``digest_hour`` (the alerting file's
timezone), so a dose never pages anyone at night. Messages name the examination, the values and the level,
the accession masked as the alerting file's privacy says; never a patient's name or ID.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from collections.abc import Sequence
from typing import Any

from sqlalchemy import Connection

from radtriage.alerts.config import AlertingConfig
from radtriage.alerts.message import mask, one_line
from radtriage.alerts.rota import targets
from radtriage.db import audit
from radtriage.db import dose as rows
from radtriage.dose.judge import Examination
from radtriage.monitor.notify import MonitorSender
from radtriage.outbox import DELIVERED, Attempt, enqueue

DOSE = "dose"  # the registry's kind of outbox row
ACTOR = "dose-registry"
NOT_DIAGNOSIS = "Dose monitoring: for the medical physicist. It does not change the study's clinical priority."


def recipients(config: AlertingConfig | None, at: dt.datetime) -> list[tuple[str, str]]:
    """(member, channel) pairs of the ``dose:`` section: each member once per channel they have."""
    if config is None or config.dose is None:
        return []
    out = []
    for member_id in targets(config, list(config.dose.notify), at):
        member = config.member(member_id)
        out += [(member_id, c) for c in config.dose.channels if member is not None and member.contacts.has(c)]
    return out


def _key(*parts: str) -> str:
    return "rt-dose-" + hashlib.sha256("|".join(parts).encode()).hexdigest()[:40]


class DoseNotices:
    """Writes the dose registry's outbox rows, in the caller's transaction."""

    def __init__(self, config: AlertingConfig, digest_hour: int = 8) -> None:
        self.config, self.digest_hour = config, digest_hour

    def _queue(self, conn: Connection, key: str, subject: str, payload: dict[str, Any], now: dt.datetime) -> int:
        told = recipients(self.config, now)
        for member, channel in told:
            enqueue(conn, DOSE, _key(key, member, channel), subject=subject, target=member, channel=channel,
                    payload=payload, now=now)
        return len(told)

    def urgent(self, conn: Connection, exam: Examination, flags: Sequence[dict[str, Any]], now: dt.datetime) -> int:
        """Tell the physicists now of ``flags`` (urgent ones) of ``exam``; how many rows."""
        if not flags:
            return 0
        privacy = self.config.privacy
        accession = None if privacy.patient == "none" else mask(rows.accession_of(conn, exam.study_uid),
                                                                privacy.id_visible_chars)
        who = "child" if exam.child else "patient"
        subject = one_line(f"radtriage dose: {flags[0]['reason'].replace('_', ' ')} ({who}, {exam.examination or exam.modality})", 200)
        lines = [f"Examination {exam.examination or 'unmapped'} at {exam.facility}, {exam.scanner}, "
                 f"{exam.performed_at:%Y-%m-%d %H:%M} UTC; accession {accession or '(hidden)'}; "
                 f"age band {exam.band or 'unknown'}.", *(f"- {f['detail']}" for f in flags), NOT_DIAGNOSIS]
        payload = {"event": "dose.urgent", "subject": subject, "study_uid": exam.study_uid,
                   "reasons": [f["reason"] for f in flags], "text": "\n".join(one_line(x, 1000) or "" for x in lines) + "\n"}
        return self._queue(conn, f"urgent|{exam.study_uid}|{','.join(str(f['id']) for f in flags)}", exam.study_uid,
                           payload, now)

    def digest_due(self, now: dt.datetime) -> dt.datetime | None:
        """This day's digest time (UTC) once it has passed, else None."""
        local = now.astimezone(self.config.zone())
        at = local.replace(hour=self.digest_hour, minute=0, second=0, microsecond=0)
        return at.astimezone(dt.UTC) if local >= at else None

    def digest(self, conn: Connection, now: dt.datetime) -> int:
        """Send today's digest of the flags not yet told, once it is due; how many flags it holds."""
        due = self.digest_due(now)
        if due is None:
            return 0
        flags = rows.undigested(conn, before=due)
        if not flags:
            return 0
        day = now.astimezone(self.config.zone()).date().isoformat()
        lines = [f"{len(flags)} examination flag(s) since the last digest:",
                 *(f"- {f['performed_at']:%Y-%m-%d} {f['facility']}, {f['scanner']}: {f['detail']}" for f in flags),
                 NOT_DIAGNOSIS]
        payload = {"event": "dose.digest", "subject": f"radtriage dose digest {day}: {len(flags)} flag(s)",
                   "day": day, "flags": len(flags), "text": "\n".join(one_line(x, 1000) or "" for x in lines) + "\n"}
        self._queue(conn, f"digest|{day}|{flags[-1]['id']}", f"digest {day}", payload, now)
        rows.mark_digested(conn, [f["id"] for f in flags], now)
        return len(flags)


class DoseSender(MonitorSender):
    """The outbox `Sender` for kind ``dose``: sent as the monitor's are; audited as the registry's."""

    def record(self, conn: Connection, attempt: Attempt, now: dt.datetime) -> None:
        row = attempt.item
        done = attempt.outcome == DELIVERED
        audit.record(conn, "dose_notice_sent" if done else "dose_notice_failed", actor=ACTOR, role="system",
                     study_uid=row["payload"].get("study_uid"),
                     detail={"event": row["payload"]["event"], "member": row["target"], "channel": row["channel"],
                             "attempts": row["attempts"], **({} if done else {"error": attempt.error})})

    def report(self, attempt: Attempt) -> None:
        return None
