"""The audit trail: who did what to which study, and when. Rows are only ever added.

Details hold identifiers (UIDs, ids, verdicts), never patient names or IDs.
A listing (the worklist, the alert list) is one entry naming the studies it
showed in ``detail["studies"]``; a study's trail (`entries` with
``study_uid``) includes them. `csv_lines` and `syslog_lines` export the trail
with the fields of an IHE ATNA audit message (DICOM PS3.15 A.5): event time,
event ID and action code, outcome, actor, role, client address, study UIDs.
"""

from __future__ import annotations

import csv
import io
import json
import re
from collections.abc import Iterable, Iterator
from datetime import datetime, timedelta, timezone
from typing import Any

from sqlalchemy import Connection, Text, cast, func, or_, select

from radtriage.db.clock import aware, utcnow
from radtriage.db.engine import Database
from radtriage.db.tables import audit_log

SYSTEM = "system"


def record(conn: Connection, action: str, actor: str = SYSTEM, role: str | None = None,
           study_uid: str | None = None, detail: dict[str, Any] | None = None, client: str | None = None,
           at: datetime | None = None) -> None:
    """Add one entry inside the caller's transaction (so the action and its record commit together)."""
    conn.execute(audit_log.insert().values(_row(action, actor, role, study_uid, detail, client, at)))


def _row(action: str, actor: str = SYSTEM, role: str | None = None, study_uid: str | None = None,
         detail: dict[str, Any] | None = None, client: str | None = None, at: datetime | None = None
         ) -> dict[str, Any]:
    return {"at": at or utcnow(), "actor": actor[:64], "role": role, "action": action[:32], "study_uid": study_uid,
            "detail": detail or {}, "client": (client or None) and client[:64]}


def log_many(db: Database, items: Iterable[dict[str, Any]]) -> None:
    """Several entries (each the keyword arguments of `record`) in one transaction: all or none."""
    values = [_row(**item) for item in items]
    if values:
        with db.write() as conn:
            conn.execute(audit_log.insert(), values)


def log(db: Database, action: str, **kwargs: Any) -> None:
    """`record` in a transaction of its own."""
    with db.write() as conn:
        record(conn, action, **kwargs)


def entries(db: Database, study_uid: str | None = None, actor: str | None = None, action: str | None = None,
            since: datetime | None = None, until: datetime | None = None, limit: int = 100, offset: int = 0
            ) -> tuple[int, list[dict[str, Any]]]:
    """(total, page) of audit entries, newest first."""
    q = select(audit_log)
    for col, value in ((audit_log.c.actor, actor), (audit_log.c.action, action)):
        if value is not None:
            q = q.where(col == value)
    if study_uid is not None:  # its own entries and the listings that showed it
        q = q.where(or_(audit_log.c.study_uid == study_uid,
                        cast(audit_log.c.detail, Text).contains(f'"{study_uid}"', autoescape=True)))
    if since is not None:
        q = q.where(audit_log.c.at >= _utc(since))
    if until is not None:
        q = q.where(audit_log.c.at < _utc(until))
    with db.read() as conn:
        total = conn.execute(select(func.count()).select_from(q.subquery())).scalar_one()
        rows = conn.execute(q.order_by(audit_log.c.id.desc()).limit(limit).offset(offset)).mappings().all()
    return total, [{**dict(r), "at": aware(r["at"])} for r in rows]


def stream(db: Database, since: datetime | None = None, until: datetime | None = None, chunk: int = 1000
           ) -> Iterator[dict[str, Any]]:
    """Every entry from ``since`` to before ``until``, oldest first, read ``chunk`` at a time.

    The set is fixed when iteration starts: entries added while the caller
    iterates are left for the next export.
    """
    with db.read() as conn:
        last_id = conn.execute(select(func.max(audit_log.c.id))).scalar_one() or 0
    after = 0
    while True:
        q = select(audit_log).where(audit_log.c.id > after, audit_log.c.id <= last_id)
        if since is not None:
            q = q.where(audit_log.c.at >= _utc(since))
        if until is not None:
            q = q.where(audit_log.c.at < _utc(until))
        with db.read() as conn:
            rows = conn.execute(q.order_by(audit_log.c.id).limit(chunk)).mappings().all()
        if not rows:
            return
        for r in rows:
            yield {**dict(r), "at": aware(r["at"])}
        after = rows[-1]["id"]


def _utc(t: datetime) -> datetime:
    return t.replace(tzinfo=timezone.utc) if t.tzinfo is None else t.astimezone(timezone.utc)


_AGO = re.compile(r"^(\d+)([mhd])\Z")


def parse_time(text: str, now: datetime | None = None) -> datetime:
    """An ISO 8601 time (UTC when it names no offset) or a span back from now: ``30m``, ``24h``, ``7d``."""
    if m := _AGO.match(text.strip()):
        unit = {"m": "minutes", "h": "hours", "d": "days"}[m[2]]
        return (now or utcnow()) - timedelta(**{unit: int(m[1])})
    return _utc(datetime.fromisoformat(text.strip()))


# --- export ---------------------------------------------------------------------------------------

# action -> (DICOM audit event ID (PS3.16 CID 400), event action code: C create, R read, U update, E execute)
EVENTS: dict[str, tuple[str, str]] = {
    "viewed": ("110103", "R"), "key_image_viewed": ("110103", "R"), "alert_viewed": ("110103", "R"),
    "alert_image_viewed": ("110103", "R"), "ack_page_viewed": ("110103", "R"),
    "worklist_listed": ("110112", "E"), "alerts_listed": ("110112", "E"),
    "stow_stored": ("110104", "C"), "stow_refused": ("110104", "C"),
    "claimed": ("110103", "U"), "released": ("110103", "U"), "reported": ("110103", "U"),
    "feedback": ("110103", "U"), "priority_changed": ("110103", "U"),
    "login": ("110114", "E"), "logout": ("110114", "E"), "login_failed": ("110114", "E"),
    "login_refused": ("110114", "E"),
    "user_added": ("110113", "E"), "user_disabled": ("110113", "E"), "token_issued": ("110113", "E"),
    "audit_exported": ("110101", "R"),
    # authorised shares (radtriage.sharing): issued and downloaded are exports; an open is a read
    "share_issued": ("110106", "C"), "share_opened": ("110103", "R"), "share_viewed": ("110103", "R"),
    "share_downloaded": ("110106", "R"), "share_retrieved": ("110104", "R"), "shares_listed": ("110112", "E"),
    "share_passcode_failed": ("110114", "E"), "share_token_failed": ("110114", "E"),
}
APPLICATION_ACTIVITY = ("110100", "E")  # anything else (alert deliveries, escalations, ...)
# ATNA event outcome: 0 success, 4 minor failure, 8 serious failure, 12 major failure
FAILURES = {"login_failed": 4, "login_refused": 4, "stow_refused": 8, "alert_failed": 8, "share_passcode_failed": 4,
            "share_token_failed": 4}
CSV_COLUMNS = ("id", "event_time", "action", "event_id", "event_action", "outcome", "actor", "role", "client",
               "study_uids", "detail")
SD_ID = "audit@32473"  # RFC 5424 structured-data ID; 32473 is the example enterprise number (RFC 5612)


def studies_of(entry: dict[str, Any]) -> list[str]:
    """The study UIDs an entry is about: its own, or those a listing showed."""
    return [entry["study_uid"]] if entry["study_uid"] else list(entry["detail"].get("studies") or ())


def outcome_of(entry: dict[str, Any]) -> int:
    given = entry["detail"].get("outcome")
    return given if isinstance(given, int) else FAILURES.get(entry["action"], 0)


def _rest(entry: dict[str, Any]) -> str:
    """The detail not already in other fields, as one line of ASCII JSON."""
    rest = {k: v for k, v in entry["detail"].items() if k not in ("studies", "outcome")}
    return json.dumps(rest, sort_keys=True, default=str) if rest else ""


def _time(t: datetime) -> str:
    return _utc(t).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _cell(value: Any) -> str:
    """A CSV cell a spreadsheet shows as text: a typed value such as ``=HYPERLINK(...)`` is not a formula."""
    text = "" if value is None else str(value)
    return "'" + text if text[:1] in ("=", "+", "-", "@", "\t", "\r") else text


def csv_lines(entries: Iterable[dict[str, Any]]) -> Iterator[str]:
    """RFC 4180 CSV, a header line first; one line per entry (study UIDs space-separated)."""
    buf = io.StringIO()
    out = csv.writer(buf)

    def line(cells: Iterable[Any]) -> str:
        out.writerow([_cell(c) for c in cells])
        text = buf.getvalue()
        buf.seek(0)
        buf.truncate()
        return text

    yield line(CSV_COLUMNS)
    for e in entries:
        event_id, action = EVENTS.get(e["action"], APPLICATION_ACTIVITY)
        yield line((e["id"], _time(e["at"]), e["action"], event_id, action, outcome_of(e), e["actor"], e["role"],
                    e["client"], " ".join(studies_of(e)), _rest(e)))


_UNPRINTABLE = re.compile(r"[\x00-\x1f\x7f]")
_NOT_NAME = re.compile(r"[^\x21-\x7e]")


def _sd_value(value: Any) -> str:
    """An RFC 5424 PARAM-VALUE: ``"``, ``\\`` and ``]`` escaped, control characters replaced (one line)."""
    text = _UNPRINTABLE.sub("?", str(value))
    return text.replace("\\", "\\\\").replace('"', '\\"').replace("]", "\\]")


def syslog_lines(entries: Iterable[dict[str, Any]], hostname: str = "-") -> Iterator[str]:
    """One RFC 5424 message per line: ``<PRI>1 TIME HOST radtriage - ACTION [audit@32473 ...] DETAIL``.

    Facility 10 (security/authorization), severity notice, or warning when the
    outcome is a failure. The structured data carries the ATNA fields; the
    message is the rest of the detail as JSON.
    """
    host = _NOT_NAME.sub("-", hostname)[:255] or "-"
    for e in entries:
        event_id, action = EVENTS.get(e["action"], APPLICATION_ACTIVITY)
        outcome = outcome_of(e)
        params = [("id", e["id"]), ("eventID", event_id), ("eventAction", action), ("outcome", outcome),
                  ("actor", e["actor"])]
        params += [(k, e[k]) for k in ("role", "client") if e[k]]
        params += [("studyUID", uid) for uid in studies_of(e)]
        sd = "[" + SD_ID + "".join(f' {k}="{_sd_value(v)}"' for k, v in params) + "]"
        msgid = _NOT_NAME.sub("_", e["action"])[:32] or "-"
        rest = _rest(e)
        yield f"<{10 * 8 + (4 if outcome else 5)}>1 {_time(e['at'])} {host} radtriage - {msgid} {sd}" \
              + (f" {rest}" if rest else "") + "\n"
