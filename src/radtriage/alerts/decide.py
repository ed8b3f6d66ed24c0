"""Deciding whether a finding pages: new, a new or upgraded finding on a study, or a duplicate.

A finding is identified on its study by the policy, its code and its
qualifiers (the result's labels: subtype, side, segment): the same one again
(another series, a re-send) does not page; a different one does, and so does
the same one clearly upgraded (probability, estimated volume or priority well
above what was paged). Uniqueness of ``dedup_key`` in the database makes two
concurrent decisions about one finding agree: the loser sees the winner's row
when it decides again.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection

from radtriage.alerts import states
from radtriage.alerts.config import AlertingConfig, Upgrade
from radtriage.alerts.message import build_content
from radtriage.db import alerts as store
from radtriage.db.alerts import OPEN, RESOLVED
from radtriage.db.audit import record
from radtriage.domain.case import Finding, TaskResult, TriageCase

PRIORITY_RANK = {"STAT": 0, "URGENT": 1, "ROUTINE": 2, "PENDING_AI": 3}
VOLUME = "estimated_volume_ml"
RECOVERED = "recovered"  # the reason of an alert the recovery sweep decided


@dataclass(frozen=True)
class Decision:
    outcome: str  # created | duplicate
    alert_id: int
    finding: str


def signature(result: TaskResult, finding: Finding) -> str:
    qualifiers = ",".join(f"{k}={v}" for k, v in sorted(result.labels.items()))
    return f"{finding.code}|{qualifiers}"[:256]


def dedup_key(study_uid: str, policy: str, sig: str, generation: int) -> str:
    return hashlib.sha256(f"{study_uid}\n{policy}\n{sig}\n{generation}".encode()).hexdigest()


def upgraded(prev: dict[str, Any], finding: Finding, priority: str, up: Upgrade) -> bool:
    """Whether ``finding`` is clearly more than the alert ``prev`` already paged."""
    p0, p1 = prev["probability"], finding.probability
    if p0 is not None and p1 is not None and p1 - p0 >= up.probability_delta:
        return True
    v0, v1 = prev["content"].get("measurements", {}).get(VOLUME), finding.measurements.get(VOLUME)
    if v0 is not None and v1 is not None and v1 - v0 >= up.volume_ml_delta:
        return True
    return PRIORITY_RANK.get(priority, 9) < PRIORITY_RANK.get(prev["priority"], 9)


def decide(conn: Connection, config: AlertingConfig, policy_name: str, case: TriageCase, pipeline_id: str,
           result: TaskResult, finding: Finding, priority: str, now: dt.datetime, *, new_reason: str = "new",
           quiet: bool = False) -> Decision:
    """Write the alert and its first level's deliveries, or record a duplicate (``quiet``: without an audit entry)."""
    policy = config.policies[policy_name]
    earlier = store.alerts_for_finding(conn, case.study_uid, policy_name, finding.code)
    sig = signature(result, finding)
    same = [a for a in earlier if a["signature"] == sig]
    detail = {"policy": policy_name, "finding": finding.code, "pipeline_id": pipeline_id, "series_uid": case.series_uid}
    if same and not upgraded(same[0], finding, priority, policy.upgrade):
        if not quiet:
            record(conn, "alert_duplicate", study_uid=case.study_uid, detail={"alert_id": same[0]["id"], **detail})
        return Decision("duplicate", same[0]["id"], finding.code)
    reason = "upgraded" if same else "new_finding" if earlier else new_reason
    content = build_content(config, policy_name, case, pipeline_id, result, finding, priority,
                            store.study_fields(conn, case.study_uid))
    # decided by the recovery sweep (the dispatcher's hand-off was lost) or too long after the study arrived:
    # the page says LATE, and past the policy's late.after_s it goes to the late levels instead
    study_age_s = max(0.0, (now - content.received_at).total_seconds())
    late_route = policy.is_late(study_age_s)
    late = late_route or new_reason == RECOVERED
    content = content.model_copy(update={"late": late, "late_route": late_route})
    values = {"dedup_key": dedup_key(case.study_uid, policy_name, sig, len(same)), "study_uid": case.study_uid,
              "series_uid": case.series_uid, "case_id": case.case_id, "pipeline_id": pipeline_id,
              "policy": policy_name, "finding_code": finding.code, "signature": sig, "priority": priority,
              "probability": finding.probability, "content": content.model_dump(mode="json"),
              "key_image": finding.key_image, "reason": reason, "supersedes": same[0]["id"] if same else None,
              "state": OPEN, "level": 0, "exhausted": False, "late_route": late_route,
              "received_at": content.received_at,
              "created_at": now, "updated_at": now}
    alert_id = store.insert_alert(conn, **values)
    alert = {"id": alert_id, **values}
    if same and same[0]["state"] != RESOLVED:
        states.resolve(conn, same[0]["id"], now, actor="system", reason=f"superseded by alert {alert_id}")
    record(conn, "alert_created", study_uid=case.study_uid, detail={
        "alert_id": alert_id, **detail, "text": finding.text, "probability": finding.probability,
        "priority": priority, "reason": reason, "supersedes": values["supersedes"],
        **({"late": True, "late_route": late_route, "study_age_s": round(study_age_s)} if late else {})})
    states.start_level(conn, config, alert, 0, now)
    return Decision("created", alert_id, finding.code)
