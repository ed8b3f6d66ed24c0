"""What an alert says: what, where, when, for whom, and the links; patient identifiers masked by default.

`build_content` fixes an alert's content when it is decided (stored with the
alert, so a delivery after a restart says the same); `compose` renders it for
one delivery (subject, plain text, the webhook's JSON) at send time, when the
minutes since the scan and the signed acknowledgement link are known.
"""

from __future__ import annotations

import datetime as dt
import unicodedata
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from pydantic import BaseModel

from radtriage.alerts.config import AlertingConfig, Privacy
from radtriage.domain.case import Finding, TaskResult, TriageCase

DISCLAIMER = "AI results are an aid, not a diagnosis."


class AlertContent(BaseModel):
    """The facts of one alert, as decided. Patient fields are already masked as configured."""

    policy: str
    pipeline_id: str
    task: str
    finding_code: str
    finding_text: str
    probability: float | None = None
    detail: str | None = None  # side/segment, subtype, volume
    labels: dict[str, str] = {}
    measurements: dict[str, float] = {}
    priority: str
    calling_ae: str | None = None
    station: str | None = None
    institution: str | None = None
    scanner: str | None = None
    modality: str | None = None
    scan_time: dt.datetime | None = None
    received_at: dt.datetime
    patient: str | None = None
    accession: str | None = None
    study_url: str
    model_id: str
    model_version: str
    late: bool = False  # decided late (the recovery sweep, or past the policy's late.after_s): the page says so
    late_route: bool = False  # sent to the policy's late levels instead of its own


# --- text from outside ------------------------------------------------------------


def one_line(value: object, limit: int = 128) -> str | None:
    """A header value (or anything else from a sender or a model) as one line of printable text.

    CR, LF and every other control or line/paragraph separator become a space, runs of
    spaces collapse, and the result is cut at ``limit`` characters, so that a value can
    neither end an e-mail header, add a line to a message, nor fill a phone screen.
    """
    if value is None:
        return None
    text = "".join(" " if unicodedata.category(ch) in ("Cc", "Cf", "Zl", "Zp") else ch for ch in str(value))
    text = " ".join(text.split())[:limit].strip()
    return text or None


# --- masking ------------------------------------------------------------------------


def initials(person_name: str | None) -> str | None:
    """DICOM PN ``FAMILY^GIVEN^MIDDLE`` to initials in reading order: "J.D."."""
    if not person_name:
        return None
    family, _, rest = person_name.partition("^")
    given = rest.split("^")[0]
    letters = [p[0].upper() for p in (given, family) if p.strip()]
    return "".join(f"{c}." for c in letters) or None


def mask(value: str | None, visible: int) -> str | None:
    """All but the last ``visible`` characters starred: "****567"."""
    if not value:
        return None
    keep = value[-visible:] if 0 < visible < len(value) else ""
    return "*" * (len(value) - len(keep)) + keep


def patient_line(study: dict[str, Any], header: dict[str, Any], privacy: Privacy) -> str | None:
    """The patient as the configuration allows: nothing, initials and a masked ID, or in full."""
    if privacy.patient == "none":
        return None
    sex_age = " ".join(str(x) for x in (header.get("PatientSex") or study.get("patient_sex"),
                                        header.get("PatientAge")) if x)
    if privacy.patient == "full":
        name = (study.get("patient_name") or "").replace("^", " ").strip() or None
        pid = study.get("patient_id")
    else:
        name, pid = initials(study.get("patient_name")), mask(study.get("patient_id"), privacy.id_visible_chars)
    parts = [name, f"ID {pid}" if pid else None, sex_age or None]
    return one_line(", ".join(p for p in parts if p), 200)


# --- content ------------------------------------------------------------------------


def scan_time(header: dict[str, Any], zone: ZoneInfo) -> dt.datetime | None:
    """Series (else study) date and time, a scanner's local time, as an aware UTC time."""
    for date_kw, time_kw in (("SeriesDate", "SeriesTime"), ("StudyDate", "StudyTime")):
        date, clock = str(header.get(date_kw) or ""), str(header.get(time_kw) or "").split(".")[0]
        if len(date) == 8 and date.isdigit() and len(clock) >= 4 and clock.isdigit():
            clock = clock.ljust(6, "0")[:6]
            try:
                local = dt.datetime.strptime(date + clock, "%Y%m%d%H%M%S").replace(tzinfo=zone)
            except ValueError:
                continue
            return local.astimezone(dt.UTC)
    return None


def detail_line(result: TaskResult, finding: Finding) -> str | None:
    parts = [str(result.labels[k]).replace("_", " ") for k in ("side", "segment", "subtype") if result.labels.get(k)]
    ml = finding.measurements.get("estimated_volume_ml")
    if ml is not None:
        parts.append(f"estimated volume {ml:g} mL")
    return ", ".join(parts) or None


def build_content(config: AlertingConfig, policy: str, case: TriageCase, pipeline_id: str, result: TaskResult,
                  finding: Finding, priority: str, study: dict[str, Any]) -> AlertContent:
    h = case.header
    privacy = config.privacy
    accession = case.accession or study.get("accession_number")
    if privacy.patient != "full":
        accession = None if privacy.patient == "none" else mask(accession, privacy.id_visible_chars)
    scanner = " ".join(str(h[k]) for k in ("Manufacturer", "ManufacturerModelName") if h.get(k)) or None
    return AlertContent(
        policy=policy, pipeline_id=pipeline_id, task=result.task, finding_code=finding.code,
        finding_text=one_line(finding.text, 200) or finding.code, probability=finding.probability,
        detail=one_line(detail_line(result, finding), 200), labels=dict(result.labels),
        measurements=dict(finding.measurements), priority=priority, calling_ae=one_line(case.calling_ae, 16),
        station=one_line(h.get("StationName"), 64), institution=one_line(h.get("InstitutionName"), 64),
        scanner=one_line(scanner, 128), modality=one_line(h.get("Modality"), 16), scan_time=scan_time(h, config.zone()),
        received_at=case.stage_times.last_received or case.received_at,
        patient=patient_line(study, h, privacy), accession=one_line(accession, 64),
        study_url=config.links.base_url + config.links.study_path.format(study_uid=case.study_uid),
        model_id=result.model_id, model_version=result.model_version,
    )


# --- key images -----------------------------------------------------------------------

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def key_image_path(value: str | None, root: Path | None) -> Path | None:
    """The key image a finding names, if it may go out: a PNG file inside ``root`` (the results folder).

    A result comes back from a model server that may be another machine, so the path it
    names is not trusted: a path outside ``root`` (after resolving links and ``..``), a file
    that is not a PNG, or a missing one gives None. Without a ``root`` only the PNG checks apply.
    """
    if not value:
        return None
    try:
        path = Path(value).resolve(strict=True)
        if root is not None and not path.is_relative_to(root.resolve()):
            return None
        if path.suffix.lower() != ".png" or not path.is_file():
            return None
        with path.open("rb") as f:
            return path if f.read(len(PNG_SIGNATURE)) == PNG_SIGNATURE else None
    except (OSError, RuntimeError, ValueError):
        return None


# --- one delivery -------------------------------------------------------------------


@dataclass(frozen=True)
class Outgoing:
    """One message for one recipient on one channel."""

    key: str  # the idempotency key
    event: str  # alert.page | alert.taken | alert.withdrawn
    subject: str
    text: str
    payload: dict[str, Any]
    key_image: Path | None = None
    extra: dict[str, Any] = field(default_factory=dict)


def minutes_since(t: dt.datetime | None, now: dt.datetime) -> int | None:
    return None if t is None else max(0, int((now - t).total_seconds() // 60))


def age_text(minutes: int) -> str:
    """A study's age for people: "47 min", "3 h 5 min", "2 d 4 h"."""
    if minutes < 120:
        return f"{minutes} min"
    hours, mins = divmod(minutes, 60)
    if hours < 48:
        return f"{hours} h {mins} min"
    days, hours = divmod(hours, 24)
    return f"{days} d {hours} h"


def compose(content: AlertContent, *, alert_id: int, key: str, event: str, level: int, recipient: str,
            now: dt.datetime, zone: ZoneInfo, ack_url: str | None, ack_expires: dt.datetime | None,
            taken_by: str | None = None, key_image: Path | None = None) -> Outgoing:
    c = content
    when = c.scan_time or c.received_at
    since = minutes_since(when, now)
    where = " / ".join(x for x in (c.institution, c.station, f"AE {c.calling_ae}" if c.calling_ae else None) if x)
    prob = f"{c.probability:.0%}" if c.probability is not None else "n/a"
    head = f"{c.finding_text} (AI probability {prob})"
    if event == "alert.taken":
        subject = f"[{c.priority}] taken by {taken_by}: {c.finding_text}"
        lines = [f"{taken_by} is taking this alert.", head]
    elif event == "alert.withdrawn":
        subject = f"withdrawn: {c.finding_text}"
        lines = [f"withdrawn: the AI finding for study {c.accession or 'without accession'} is under review; "
                 "read the study as usual.", head]
    else:
        late = "LATE " if c.late else ""
        subject = (f"[{c.priority}] {late}{c.finding_text}"
                   + (f" - {c.station or c.calling_ae}" if c.station or c.calling_ae else ""))
        lines = [head]
    age = minutes_since(c.received_at, now) or 0
    if c.late and event == "alert.page":
        lines.insert(0, f"LATE: this alert was decided late; study received {age_text(age)} ago"
                        + (" - sent to you instead of the first-line team, past its window" if c.late_route else ""))
    lines += [
        f"Detail: {c.detail}" if c.detail else None,
        f"Where: {where}" if where else None,
        f"Scan: {when.astimezone(zone):%Y-%m-%d %H:%M} ({since} min ago)"
        + ("" if c.scan_time else " - received time; the scan time is unknown"),
        f"Patient: {c.patient}" if c.patient else None,
        f"Accession: {c.accession}" if c.accession else None,
        f"Study: {c.study_url}",
        f"I'm taking it: {ack_url} (link valid until {ack_expires.astimezone(zone):%H:%M})"
        if ack_url and ack_expires else None,
        f"Model: {c.model_id} {c.model_version}. {DISCLAIMER}",
    ]
    # each line one line, whatever an alert decided by an older version stored: no value adds a line
    text = "\n".join(y for x in lines if x and (y := one_line(x, 1000))) + "\n"
    subject = one_line(subject, 200) or c.priority
    payload = {
        "event": event, "alert_id": alert_id, "idempotency_key": key, "level": level + 1, "recipient": recipient,
        "policy": c.policy, "priority": c.priority,
        "finding": {"code": c.finding_code, "text": c.finding_text, "probability": c.probability, "detail": c.detail,
                    "labels": c.labels, "measurements": c.measurements},
        "where": {"calling_ae": c.calling_ae, "station": c.station, "institution": c.institution, "scanner": c.scanner},
        "scan_time": when.isoformat(), "scan_time_known": c.scan_time is not None, "minutes_since_scan": since,
        "late": c.late, "late_route": c.late_route, "study_age_min": age,
        "patient": c.patient, "accession": c.accession, "study_url": c.study_url,
        "ack_url": ack_url, "ack_expires_at": ack_expires.isoformat() if ack_expires else None,
        "taken_by": taken_by, "model": {"id": c.model_id, "version": c.model_version},
        "disclaimer": DISCLAIMER, "sent_at": now.isoformat(),
        **({"message": one_line(lines[0], 1000)} if event == "alert.withdrawn" else {}),
    }
    return Outgoing(key=key, event=event, subject=subject, text=text, payload=payload, key_image=key_image)
