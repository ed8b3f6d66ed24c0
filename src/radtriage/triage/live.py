"""Keeps the worklist up to date: a thread that re-triages every study whose jobs changed.

It watches the job ledger (``jobs.updated_at``), so it needs no hook in the
assembler or the dispatcher and works when they run in other processes. Each
pass looks a little behind its last mark, because transactions of other
threads may commit a change stamped slightly earlier; `refresh_study` is
idempotent, so looking twice costs only a read. Each pass reads which pipelines are withdrawn
(demoted or suspended, `radtriage.governance`) so their results stop counting on unread studies.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import timedelta
from functools import partial

from radtriage.background import Background
from radtriage.db import governance, worklist
from radtriage.db.engine import Database
from radtriage.triage.priority import triage_study

log = logging.getLogger(__name__)

LOOK_BACK = timedelta(seconds=5)


class Triage(Background):
    def __init__(self, db: Database, inference_enabled: bool, poll_s: float,
                 on_change: Callable[[worklist.Change], None] | None = None) -> None:
        super().__init__("triage", poll_s, log=log)
        self.db, self.on_change = db, on_change
        self.decide = partial(triage_study, inference_enabled=inference_enabled)
        self._mark = None
        self._seen: dict[int, object] = {}  # study id -> newest job change already triaged
        self._first = True

    def run_once(self) -> int:
        """One pass; returns the number of studies looked at."""
        if self._first:  # after a restart: everything that changed since the worklist was last written
            newest, n = worklist.last_change(self.db)
            self._mark = newest - LOOK_BACK if (newest and n) else None
            self._first = False
        since = self._mark
        touched = worklist.touched_studies(self.db, since)
        ids = [s for s, t in touched.items() if self._seen.get(s) != t]
        decide = partial(self.decide, withdrawn=governance.withdrawn(self.db)) if ids else self.decide
        for study_id in ids:
            change = worklist.refresh_study(self.db, study_id, decide)
            if change is not None:
                log.info("study priority %s -> %s", change.old, change.new)
                if self.on_change is not None:
                    self.on_change(change)
            self._seen[study_id] = touched[study_id]
        if touched:
            newest = max(touched.values())
            self._mark = max(newest - LOOK_BACK, since) if since else newest - LOOK_BACK
            self._seen = {s: t for s, t in self._seen.items() if t >= self._mark}
        return len(ids)

    def step(self, index: int) -> bool:
        self.run_once()
        return False
