"""When a series is complete: the one home of the rule.

A series is complete when the association that last delivered to it has
closed (or it came without one: STOW-RS, import) and nothing new has arrived
for the quiet period, or, for a series spread over several associations or a
sender that never closes, when nothing has arrived for the stable age. A
complete series is closed into one ``ready`` job in the same transaction
(`radtriage.db.series.close`); a late instance reopens it as a new version.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from radtriage.db import Database
from radtriage.db import series as series_rows
from radtriage.db.clock import utcnow


@dataclass(frozen=True)
class ClosedSeries:
    series_id: int
    series_uid: str
    study_uid: str
    version: int
    header: dict[str, Any]
    accession: str | None
    calling_ae: str | None
    storage_dir: str
    first_received_at: datetime
    last_received_at: datetime
    instance_count: int
    localizer_count: int
    closed_at: datetime
    reason: str  # "quiet" (its association closed, then quiet) | "stable_age"


def completion(s: series_rows.Receiving, now: datetime, quiet: timedelta, stable_age: timedelta) -> str | None:
    """Why the series is complete now ("quiet" or "stable_age"), or None while it may still grow."""
    released = s.association_id is None or (s.association_closed_at is not None
                                            and s.association_closed_at <= now - quiet)
    if released and s.last_received_at <= now - quiet:
        return "quiet" if s.last_received_at > now - stable_age else "stable_age"
    if s.last_received_at <= now - stable_age:
        return "stable_age"
    return None


def close_ready_series(db: Database, quiet: timedelta, stable_age: timedelta,
                       build_case: Callable[[ClosedSeries], dict[str, Any]],
                       now: datetime | None = None) -> list[ClosedSeries]:
    """Close every complete series and write a ``ready`` job for each, in one transaction.

    ``build_case(ClosedSeries) -> dict`` gives the job's case document.
    """
    now = now or utcnow()
    closed: list[ClosedSeries] = []
    with db.write() as conn:
        for s in series_rows.receiving(conn, last_before=now - min(quiet, stable_age)):
            reason = completion(s, now, quiet, stable_age)
            if reason is None:
                continue
            n, localizers = series_rows.instance_counts(conn, s.id)
            item = ClosedSeries(
                series_id=s.id, series_uid=s.series_uid, study_uid=s.study_uid, version=s.version,
                header=s.header, accession=s.accession, calling_ae=s.calling_ae, storage_dir=s.storage_dir,
                first_received_at=s.first_received_at, last_received_at=s.last_received_at,
                instance_count=n, localizer_count=localizers, closed_at=now, reason=reason)
            series_rows.close(conn, s.id, s.version, build_case(item), now)
            closed.append(item)
    return closed
