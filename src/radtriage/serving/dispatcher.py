"""The dispatcher: ready jobs from the ledger -> routing -> the pipelines -> results in the ledger.

A pool of ``inference.in_flight`` threads each takes a job with a lease
(`db.ledger.claim_job`), routes its series (`radtriage.routing`), runs the
pipelines it matched (Ray Serve or in-process, see `serving.runners`) and
records each result once. A failed attempt goes back to ``ready`` after a
backoff, and to ``failed`` with its reason after the last attempt. A series
that matches no pipeline ends ``no_ai`` ("no AI applicable", with each pipeline
it missed by one rule only and that rule, e.g. a lossy compression ratio).
A pipeline that finds the series outside its model's validated range
(`inference.guard`) gives no result and is not retried: the job's note says
"<pipeline>: AI not applicable: outside the model's validated range (...)",
and the job ends ``no_ai`` when no pipeline gave a result.

Best series of a study: before a matched pipeline runs on a series, the
other assembled series of the same study (`db.series.assembled_series`) are ranked by
the pipeline's ``prefer`` rules (`routing.best_series`); when one of them is
better, the pipeline is skipped on this series with a note on the job (not
an error): the better series' result is the study's. A series whose job
failed for good does not count, and when it fails for good after others
were skipped for it, those jobs run again (the next best series then runs
the pipeline). When the worse series came first and was
already processed, the better one still runs when it comes: both results
stay, and the newer (the better series') is the one triage counts.

Pipeline states (`radtriage.governance`): a suspended pipeline is not run (the job's note says "AI
suspended: <reason>"); every result is recorded with its pipeline's state at that time, and only a live
result is handed to ``on_result`` (alerts). Triage counts only live results.
"""

from __future__ import annotations

import logging
import threading
import uuid
from collections.abc import Callable
from typing import Any

from radtriage.background import Background
from radtriage.config.settings import Settings
from radtriage.db import instances, ledger
from radtriage.db.engine import Database
from radtriage.db.series import assembled_series
from radtriage.domain.case import TaskResult, TriageCase
from radtriage.domain import Priority
from radtriage.governance.state import LIVE, PipelineState
from radtriage.pipelines import PipelineSpec
from radtriage.routing import Candidate, best_series, near_misses, route
from radtriage.serving.runners import Runner, key_dir_for

log = logging.getLogger(__name__)

NO_AI = "no AI applicable"


def _skip_marker(series_uid: str) -> str:
    """How a job's note names the preferred series a pipeline was skipped for."""
    return f"skipped, series {series_uid} of this study is preferred"


def _applicable(outcomes: dict[str, dict[str, Any]], note: str | None) -> tuple[dict[str, dict[str, Any]], str | None]:
    """The outcomes with a result, and the job's note with each pipeline that found the series outside its
    model's validated range ("<pipeline>: AI not applicable: outside the model's validated range (...)")."""
    outside = [f"{p}: {o['error']}" for p, o in sorted(outcomes.items()) if o.get("not_applicable")]
    return {p: o for p, o in outcomes.items() if o["ok"]}, "; ".join([*([note] if note else []), *outside]) or None


class Dispatcher(Background):
    def __init__(self, settings: Settings, db: Database, specs: list[PipelineSpec], runner: Runner,
                 priority: Callable[[PipelineSpec, TaskResult], tuple[Priority, str | None]],
                 on_result: Callable[[TriageCase, str, TaskResult, str], None] | None = None,
                 states: Callable[[str], PipelineState] | None = None) -> None:
        """``priority`` is triage's rule for one result (`radtriage.triage.result_priority`); ``states`` gives a
        pipeline's state now (`radtriage.governance.StateBook.state`; None: every pipeline is live)."""
        super().__init__("dispatcher", settings.inference.poll_s, threads=settings.inference.in_flight, log=log)
        self.settings, self.db, self.runner = settings, db, runner
        self.specs = {s.id: s for s in specs}
        self.priority, self.on_result = priority, on_result
        self.on_recorded: Callable[[Any, list[dict[str, Any]], Any], Any] | None = None  # in the recording transaction
        self.states = states or (lambda _pid: LIVE)
        self.worker = f"dispatcher-{uuid.uuid4().hex[:8]}"

    # -- one job ----------------------------------------------------------------
    def run_once(self) -> bool:
        """Take and process one job; False when none was due."""
        inf = self.settings.inference
        job = ledger.claim_job(self.db, self.worker, inf.lease_s)
        if job is None:
            return False
        renewing = self._keep_lease(job)
        try:
            self._process(job)
        except Exception as exc:  # noqa: BLE001 - any failure is recorded on the job, the loop goes on
            state = ledger.fail_attempt(self.db, job.id, f"{type(exc).__name__}: {exc}", inf.max_attempts,
                                        inf.retry_backoff_s)
            log.warning("job %s attempt %d failed (%s): now %s", job.id, job.attempts, type(exc).__name__, state)
            if state == "failed":
                self._fall_back(job)
        finally:
            renewing.set()
        return True

    def _keep_lease(self, job: ledger.ClaimedJob) -> threading.Event:
        """Renew the job's lease every third of it until the returned event is set, so a long run is
        not taken for a dead worker's and run twice."""
        done, lease_s = threading.Event(), self.settings.inference.lease_s

        def renew() -> None:
            while not done.wait(lease_s / 3):
                try:
                    if not ledger.renew_lease(self.db, job.id, self.worker, lease_s):
                        log.warning("job %s: lease lost to another worker", job.id)
                        return
                except Exception:  # noqa: BLE001 - the database briefly away: try again next time
                    log.warning("job %s: lease not renewed (database error)", job.id)

        threading.Thread(target=renew, name=f"lease-{job.id}", daemon=True).start()
        return done

    def _run_pipelines(self, matched: list[str], paths: list[str], key_dir: str) -> dict[str, dict[str, Any]]:
        """The runner's answer, or `TimeoutError` after ``inference.call_timeout_s`` (a hung model or node
        fails this attempt; the job is tried again after its backoff)."""
        timeout = self.settings.inference.call_timeout_s
        answer: dict[str, Any] = {}

        def call() -> None:
            try:
                answer["outcomes"] = self.runner(matched, paths, key_dir)
            except BaseException as exc:  # noqa: BLE001 - handed to the waiting thread
                answer["error"] = exc

        worker = threading.Thread(target=call, name="pipelines-call", daemon=True)
        worker.start()
        worker.join(timeout)
        if worker.is_alive():
            raise TimeoutError(f"the pipelines did not answer within {timeout:g} s")
        if "error" in answer:
            raise answer["error"]
        return answer["outcomes"]

    def _fall_back(self, job: ledger.ClaimedJob) -> None:
        """A series failed for good: the study's jobs that skipped a pipeline in its favour run again."""
        study_uid, series_uid = job.case.get("study_uid"), job.case.get("series_uid")
        if not study_uid or not series_uid:
            return
        again = ledger.requeue_noted(self.db, study_uid, _skip_marker(series_uid),
                                     f"run again: the preferred series {series_uid} failed")
        if again:
            log.warning("job %s failed for good; jobs %s of the same study run again in its place", job.id, again)

    def _process(self, job: ledger.ClaimedJob) -> None:
        case = TriageCase.model_validate(job.case)
        matched = route(self.specs.values(), case.header, case.instance_count)
        if not matched:
            misses = near_misses(self.specs.values(), case.header, case.instance_count)
            note = NO_AI + (f" (near: {'; '.join(misses)})" if misses else "")
            ledger.record_results(self.db, job.id, [], state="no_ai", note=note)
            log.info("job %s: %s", job.id, note)
            return
        matched, skipped = self._on_best_series(case, matched)
        states = {pid: self.states(pid) for pid in matched}
        skipped += [f"{pid}: AI suspended: {states[pid].reason}" for pid in matched if states[pid].state == "suspended"]
        matched = [pid for pid in matched if states[pid].state != "suspended"]
        note = "; ".join(skipped) or None
        if not matched:
            ledger.record_results(self.db, job.id, [], note=note)
            log.info("job %s: %s", job.id, note)
            return
        paths = [r["path"] for r in instances.instance_rows(self.db, case.series_uid) if not r["is_localizer"]]
        outcomes = self._run_pipelines(matched, paths, str(key_dir_for(self.settings, job.id)))
        errors = {p: o["error"] for p, o in outcomes.items() if not o["ok"] and not o.get("not_applicable")}
        if errors:  # the whole job is tried again; results already recorded are kept once
            raise RuntimeError("; ".join(f"{p}: {e}" for p, e in sorted(errors.items())))
        outcomes, note = _applicable(outcomes, note)
        if not outcomes:  # each pipeline found the series outside its model's validated range
            ledger.record_results(self.db, job.id, [], state="no_ai", note=note)
            log.info("job %s: %s", job.id, note)
            return
        rows, results = [], {}
        for pid, outcome in outcomes.items():
            spec, result = self.specs[pid], TaskResult.model_validate(outcome["result"])
            prio = self.priority(spec, result)[0].value
            results[pid] = (result, prio)
            rows.append({"pipeline_id": pid, "pipeline_version": spec.version, "study_uid": case.study_uid,
                         "series_uid": case.series_uid, "task": result.task, "model_id": result.model_id,
                         "model_version": result.model_version, "positive": result.positive, "priority": prio,
                         "result": result.model_dump(mode="json"), "state": states[pid].state})
        new = ledger.record_results(self.db, job.id, rows, note=note, then=self.on_recorded)
        said = [f"{p} {results[p][1]}" + ("" if states[p].live else f" ({states[p].state})") for p in outcomes]
        log.info("job %s: %s%s", job.id, ", ".join(said), f" ({note})" if note else "")
        if self.on_result is not None:
            for pid in new:  # only live results recorded for the first time: a retry never alerts twice
                if states[pid].live:
                    self.on_result(case, pid, *results[pid])

    def _on_best_series(self, case: TriageCase, matched: list[str]) -> tuple[list[str], list[str]]:
        """The matched pipelines this series is the study's best series for, and a note for each other one."""
        others = [s for s in assembled_series(self.db, case.study_uid)
                  if s.series_uid != case.series_uid and s.job_state != "failed"]
        if not others:
            return matched, []
        # this series first: a tie keeps it (each of two equal series then runs)
        candidates: list[Candidate] = [(case.series_uid, case.header, case.instance_count),
                                       *((s.series_uid, s.header, s.instance_count) for s in others)]
        keep, skipped = [], []
        for pid in matched:
            best = best_series(self.specs[pid], candidates)
            if best in (None, case.series_uid):
                keep.append(pid)
            else:
                skipped.append(f"{pid}: {_skip_marker(best)}")
        return keep, skipped

    def step(self, index: int) -> bool:
        return self.run_once()
