"""The dispatcher: ready jobs from the ledger -> routing -> the pipelines -> results in the ledger.

A pool of ``inference.in_flight`` threads each takes a job with a lease
(`db.ledger.claim_job`), routes its series (`radtriage.routing`), runs the
pipelines it matched (Ray Serve or in-process, see `serving.runners`) and
records each result once. A failed attempt goes back to ``ready`` after a
backoff, and to ``failed`` with its reason after the last attempt. A series
that matches no pipeline ends ``no_ai`` ("no AI applicable").
"""

from __future__ import annotations

import logging
import threading
import uuid
from collections.abc import Callable
from typing import Any

from radtriage.config.settings import Settings
from radtriage.db import access, ledger
from radtriage.db.engine import Database
from radtriage.domain.case import TaskResult, TriageCase
from radtriage.serving.runners import Runner, key_dir_for

log = logging.getLogger(__name__)

NO_AI = "no AI applicable"


class Dispatcher:
    def __init__(self, settings: Settings, db: Database, specs: list[Any], runner: Runner,
                 route: Callable[[list[Any], dict, int], list[str]],
                 priority: Callable[[Any, TaskResult], str],
                 on_result: Callable[[TriageCase, str, TaskResult, str], None] | None = None) -> None:
        self.settings, self.db, self.runner = settings, db, runner
        self.specs = {s.id: s for s in specs}
        self.route, self.priority, self.on_result = route, priority, on_result
        self.worker = f"dispatcher-{uuid.uuid4().hex[:8]}"
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []

    # -- one job ----------------------------------------------------------------
    def run_once(self) -> bool:
        """Take and process one job; False when none was due."""
        inf = self.settings.inference
        job = ledger.claim_job(self.db, self.worker, inf.lease_s)
        if job is None:
            return False
        try:
            self._process(job)
        except Exception as exc:  # noqa: BLE001 - any failure is recorded on the job, the loop goes on
            state = ledger.fail_attempt(self.db, job.id, f"{type(exc).__name__}: {exc}", inf.max_attempts,
                                        inf.retry_backoff_s)
            log.warning("job %s attempt %d failed (%s): now %s", job.id, job.attempts, type(exc).__name__, state)
        return True

    def _process(self, job: ledger.ClaimedJob) -> None:
        case = TriageCase.model_validate(job.case)
        matched = self.route(list(self.specs.values()), case.header, case.instance_count)
        if not matched:
            ledger.record_results(self.db, job.id, [], state="no_ai", note=NO_AI)
            log.info("job %s: %s", job.id, NO_AI)
            return
        paths = [r["path"] for r in access.instance_rows(self.db, case.series_uid) if not r["is_localizer"]]
        outcomes = self.runner(matched, paths, str(key_dir_for(self.settings, job.id)))
        errors = {p: o["error"] for p, o in outcomes.items() if not o["ok"]}
        if errors:  # the whole job is tried again; results already recorded are kept once
            raise RuntimeError("; ".join(f"{p}: {e}" for p, e in sorted(errors.items())))
        rows, results = [], {}
        for pid, outcome in outcomes.items():
            spec, result = self.specs[pid], TaskResult.model_validate(outcome["result"])
            prio = self.priority(spec, result)
            results[pid] = (result, prio)
            rows.append({"pipeline_id": pid, "pipeline_version": spec.version, "study_uid": case.study_uid,
                         "series_uid": case.series_uid, "task": result.task, "model_id": result.model_id,
                         "model_version": result.model_version, "positive": result.positive, "priority": prio,
                         "result": result.model_dump(mode="json")})
        new = ledger.record_results(self.db, job.id, rows)
        log.info("job %s: %s", job.id, ", ".join(f"{p} {results[p][1]}" for p in outcomes))
        if self.on_result is not None:
            for pid in new:  # only results recorded for the first time: a retry never alerts twice
                self.on_result(case, pid, *results[pid])

    # -- the loop -----------------------------------------------------------------
    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                busy = self.run_once()
            except Exception:  # noqa: BLE001 - e.g. the database briefly unavailable
                log.exception("dispatcher loop error")
                busy = False
            if not busy:
                self._stop.wait(self.settings.inference.poll_s)

    def start(self) -> None:
        for i in range(self.settings.inference.in_flight):
            t = threading.Thread(target=self._loop, name=f"dispatcher-{i}", daemon=True)
            t.start()
            self._threads.append(t)

    def stop(self, timeout: float = 30.0) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(timeout)
        self._threads.clear()
