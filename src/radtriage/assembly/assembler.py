"""Series assembly: close each complete series (`radtriage.assembly.complete`) into its `TriageCase`.

Each ready series becomes one job in the ledger with state ``ready``; a late
instance reopens the series as a new version, which later closes as a new job.
"""

from __future__ import annotations

import logging
from datetime import timedelta
from pathlib import Path
from typing import Any

from radtriage.background import Background
from radtriage.config import Settings
from radtriage.assembly.complete import ClosedSeries, close_ready_series
from radtriage.db import Database
from radtriage.domain import StageTimes, TriageCase
from radtriage.ingest.metrics import IngestMetrics

log = logging.getLogger("radtriage.assembly")


def case_for(closed: ClosedSeries) -> TriageCase:
    """The `TriageCase` of a closed series (header only, no pixels)."""
    header = dict(closed.header)
    header["LocalizerCount"] = closed.localizer_count
    return TriageCase(
        case_id=f"{closed.series_uid}/v{closed.version}",
        study_uid=closed.study_uid,
        series_uid=closed.series_uid,
        series_version=closed.version,
        accession=closed.accession,
        calling_ae=closed.calling_ae,
        received_at=closed.last_received_at,
        header=header,
        instances_uri=Path(closed.storage_dir).as_uri(),
        instance_count=closed.instance_count - closed.localizer_count,
        stage_times=StageTimes(
            first_received=closed.first_received_at,
            last_received=closed.last_received_at,
            assembled=closed.closed_at,
        ),
    )


def _case_document(closed: ClosedSeries) -> dict[str, Any]:
    return case_for(closed).model_dump(mode="json")


class Assembler(Background):
    """Polls the index and closes complete series. One per service process."""

    def __init__(self, settings: Settings, db: Database, metrics: IngestMetrics) -> None:
        super().__init__("assembler", settings.assembly_poll_s, log=log)
        self.db = db
        self.metrics = metrics
        self.quiet = timedelta(seconds=settings.quiet_period_s)
        self.stable_age = timedelta(seconds=settings.stable_age_s)

    def run_once(self) -> list[ClosedSeries]:
        closed = close_ready_series(self.db, self.quiet, self.stable_age, _case_document)
        for c in closed:
            self.metrics.series_completed.labels(c.reason).inc()
            log.info(
                "series ready: series_uid=%s version=%d instances=%d reason=%s",
                c.series_uid,
                c.version,
                c.instance_count,
                c.reason,
            )
        return closed

    def step(self, index: int) -> bool:
        self.run_once()
        return False  # one pass per poll: a series closes on time, not on the next instance
