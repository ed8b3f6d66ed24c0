"""Keeps the worklist up to date: a thread that re-triages every study whose jobs changed.

It watches the job ledger (``jobs.updated_at``), so it needs no hook in the
assembler or the dispatcher and works when they run in other processes. Each
pass looks a little behind its last mark, because transactions of other
threads may commit a change stamped slightly earlier; `refresh_study` is
idempotent, so looking twice costs only a read.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from datetime import timedelta
from functools import partial

from radtriage.db import worklist
from radtriage.db.engine import Database
from radtriage.triage.priority import triage_study

log = logging.getLogger(__name__)

LOOK_BACK = timedelta(seconds=5)


class Triage:
    def __init__(self, db: Database, inference_enabled: bool, poll_s: float,
                 on_change: Callable[[worklist.Change], None] | None = None) -> None:
        self.db, self.poll_s, self.on_change = db, poll_s, on_change
        self.decide = partial(triage_study, inference_enabled=inference_enabled)
        self._mark = None
        self._seen: dict[int, object] = {}  # study id -> newest job change already triaged
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
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
        for study_id in ids:
            change = worklist.refresh_study(self.db, study_id, self.decide)
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

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                self.run_once()
            except Exception:  # noqa: BLE001 - the database may be briefly away; try again next pass
                log.exception("triage pass failed")
            self._stop.wait(self.poll_s)

    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, name="triage", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(10)
