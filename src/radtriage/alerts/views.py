"""What the API and the stroke page show of an alert (never a table row)."""

from __future__ import annotations

import datetime as dt
from typing import Any

from pydantic import BaseModel

from radtriage.alerts.config import AlertingConfig
from radtriage.alerts.message import DISCLAIMER, AlertContent


class DeliveryView(BaseModel):
    kind: str
    level: int
    member: str
    member_name: str
    channel: str
    state: str
    attempts: int
    last_error: str | None = None
    delivered_at: dt.datetime | None = None


class AlertView(BaseModel):
    id: int
    state: str  # open | acknowledged | resolved
    policy: str
    priority: str
    finding_code: str
    finding: str
    probability: float | None
    detail: str | None
    where: str | None
    calling_ae: str | None
    scan_time: dt.datetime | None
    received_at: dt.datetime
    patient: str | None
    accession: str | None
    study_uid: str
    study_url: str
    has_key_image: bool
    level: int  # 1-based
    level_name: str | None
    escalation_due_at: dt.datetime | None
    exhausted: bool
    created_at: dt.datetime
    taken_by: str | None
    taken_at: dt.datetime | None
    taken_via: str | None  # link | api | page
    late: bool = False  # decided late (after a crash): the page said LATE; late_route: sent to the late levels
    late_route: bool = False
    taken_from: str | None = None  # the client address that used a one-click link
    taken_user_agent: str | None = None  # and its user agent
    resolved_at: dt.datetime | None
    resolved_reason: str | None
    model: str
    deliveries: list[DeliveryView]
    disclaimer: str = DISCLAIMER


def _member_name(config: AlertingConfig, member_id: str) -> str:
    m = config.member(member_id)
    return m.name if m else member_id


def view(config: AlertingConfig, row: dict[str, Any], deliveries: list[dict[str, Any]]) -> AlertView:
    c = AlertContent.model_validate(row["content"])
    policy = config.policies.get(row["policy"])
    level_name = policy.level(row["level"], bool(row.get("late_route"))).name if policy else None
    where = " / ".join(x for x in (c.institution, c.station) if x) or None
    return AlertView(
        id=row["id"], state=row["state"], policy=row["policy"], priority=row["priority"],
        finding_code=row["finding_code"], finding=c.finding_text, probability=c.probability, detail=c.detail,
        where=where, calling_ae=c.calling_ae, scan_time=c.scan_time, received_at=c.received_at, patient=c.patient,
        accession=c.accession, study_uid=row["study_uid"], study_url=c.study_url,
        has_key_image=bool(row["key_image"]), level=row["level"] + 1, level_name=level_name,
        escalation_due_at=row["next_escalation_at"], exhausted=row["exhausted"], created_at=row["created_at"],
        taken_by=row["acked_by_name"], taken_at=row["acked_at"], taken_via=row["ack_via"],
        late=c.late, late_route=bool(row.get("late_route")), taken_from=row.get("ack_client"), taken_user_agent=row.get("ack_user_agent"),
        resolved_at=row["resolved_at"], resolved_reason=row["resolved_reason"],
        model=f"{c.model_id} {c.model_version}",
        deliveries=[DeliveryView(kind=d["kind"], level=d["level"] + 1, member=d["member"],
                                 member_name=_member_name(config, d["member"]), channel=d["channel"],
                                 state=d["state"], attempts=d["attempts"], last_error=d["last_error"],
                                 delivered_at=d["delivered_at"]) for d in deliveries],
    )
