"""`Monitor`: evaluates each live pipeline after its results are recorded, and acts on the verdict.

Each evaluation reads only what changed: the pipeline's new results since the last evaluation (kept in
a small in-memory window per pipeline, reloaded in full every `RELOAD_S`), its refusals and failures
since the window began, and readers' verdicts on the window's results. The verdict (`signals.judge`):

- a warning (a signal out of its expected range) is written to the audit trail (``monitor_warning``,
  shown as a banner on the worklist, `notices`) and, when a signal joins the warnings, sent to the
  admins (``monitor.warn`` of the alerting file) through the outbox; once nothing has been out of range
  for `CLEAR_AFTER` evaluations the warning is cleared (``monitor_cleared``);
- a hard limit demotes the pipeline to shadow by a decision of the system (`governance.decide`, by
  ``monitor``, role ``system``), which withdraws its alerts as any demotion does, and pages the admin on
  call (``monitor.page``).

A pipeline that is not live is not judged; its window starts again at its next decision.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from typing import Any

from radtriage.alerts.config import AlertingConfig
from radtriage.config import Settings
from radtriage.db import audit
from radtriage.db import governance as decisions_db
from radtriage.db import monitor as rows
from radtriage.db.clock import utcnow
from radtriage.db.engine import Database
from radtriage.governance.decide import DecisionRefused, decide
from radtriage.governance.state import StateBook, resolve
from radtriage.monitor.baseline import reference
from radtriage.monitor.defaults import monitor_for
from radtriage.monitor.metrics import MonitorMetrics
from radtriage.monitor.notify import ACTOR, enqueue_all, message
from radtriage.monitor.signals import Verdict, Window, input_mix, inputs_of, judge
from radtriage.pipelines import MonitorSpec, PipelineSpec

log = logging.getLogger(__name__)
RELOAD_S = 300.0  # the window is read again in full this often (a result committed out of id order)
SLOW_S = 10.0  # refusals, failures, readers' verdicts and the input mix change slowly: measured this often
DECISIONS_S = 2.0  # the pipeline's decisions are read again this often (and always before demoting it)
CLEAR_AFTER = 10  # evaluations in a row with nothing out of range before a warning is cleared


@dataclass
class Watched:
    """One pipeline's recent results (the window and the results before it) and what the monitor last said."""

    spec: MonitorSpec
    task: str
    seen: deque = field(default_factory=deque)
    last_id: int = 0
    loaded_at: float = 0.0
    warned: frozenset[str] | None = None  # None: not read from the audit trail yet
    clean: int = 0
    slow: dict[str, Any] = field(default_factory=dict)  # the slow parts of the window (`SLOW_S`) ...
    slow_at: float = -SLOW_S  # ... and when they were measured
    taken: list[dict[str, Any]] = field(default_factory=list)  # the pipeline's decisions ...
    taken_at: float = -DECISIONS_S  # ... read then


class Monitor:
    def __init__(self, db: Database, settings: Settings, specs: Iterable[PipelineSpec], book: StateBook,
                 metrics: MonitorMetrics | None = None, alerting: AlertingConfig | None = None,
                 withdraw: Callable[..., Any] | None = None, on_message: Callable[[], None] | None = None) -> None:
        """``withdraw``: the alerts' withdraw hook a demotion calls (as `governance.decide` takes it);
        ``on_message``: called after a message is queued (wakes the worker that sends it)."""
        self.db, self.settings, self.book = db, settings, book
        self.metrics, self.alerting = metrics or MonitorMetrics(), alerting
        self.withdraw, self.on_message = withdraw, on_message or (lambda: None)
        self.watched = {s.id: Watched(m, s.task) for s in specs if (m := monitor_for(s)).enabled}

    # -- one evaluation ---------------------------------------------------------------------
    def evaluate(self, pipeline_id: str) -> Verdict | None:
        """Judge the pipeline now and act on the verdict; None when it is not live (or not monitored)."""
        w = self.watched.get(pipeline_id)
        if w is None:
            return None
        taken, state = self._state(pipeline_id, w)
        if w.warned is None:
            said = rows.last_said(self.db).get(pipeline_id)
            w.warned = frozenset(said["detail"].get("signals", [])) if said and said["action"] == rows.WARNING else frozenset()
        if not state.live:
            w.slow_at = -SLOW_S  # measured afresh when it is live again
            if w.warned:
                self._say(pipeline_id, w, frozenset(), None, f"not live ({state.state})")
            self.metrics.set_level(pipeline_id, "demoted" if taken and taken[-1]["decided_by"] == ACTOR else "ok")
            return None
        window = self._window(pipeline_id, w, taken[-1]["decided_at"] if taken else None)
        current = next((d for d in taken if d["id"] == state.decision_id), None)
        verdict = judge(w.spec, window, reference(w.spec, w.task, current))
        self.metrics.update(pipeline_id, verdict, len(window.results))
        if verdict.hard is not None:
            self._demote(pipeline_id, w, verdict)
        else:
            self._warn(pipeline_id, w, verdict)
        return verdict

    def _state(self, pipeline_id: str, w: Watched, fresh: bool = False) -> tuple[list[dict[str, Any]], Any]:
        """The pipeline's decisions (read at most `DECISIONS_S` ago, unless ``fresh``) and its state now."""
        if fresh or time.monotonic() - w.taken_at >= DECISIONS_S:
            w.taken, w.taken_at = decisions_db.decisions(self.db, pipeline_id), time.monotonic()
        return w.taken, resolve(self.book.prints[pipeline_id], w.taken, self.book.environment)

    def _window(self, pipeline_id: str, w: Watched, since: Any) -> Window:
        keep = w.spec.window + w.spec.input_mix.reference
        if time.monotonic() - w.loaded_at > RELOAD_S:
            w.seen, w.last_id, w.loaded_at = deque(maxlen=keep), 0, time.monotonic()
        key = w.spec.score.key if w.spec.score else None
        for s in rows.results_after(self.db, pipeline_id, key, w.last_id, keep):
            w.seen.append(replace(s, inputs=inputs_of(s)))  # as categories, once
            w.last_id = s.id
        seen = list(w.seen)
        live: list[int] = []  # the window: the newest live results since the decision, newest first
        for i in range(len(seen) - 1, -1, -1):
            if len(live) == w.spec.window or (since is not None and seen[i].created_at <= since):
                break
            if seen[i].state == "live":
                live.append(i)
        first = live[-1] if live else len(seen)
        results = [seen[i] for i in reversed(live)]
        before = seen[max(0, first - w.spec.input_mix.reference):first]
        if not results:
            return Window((), before)
        if time.monotonic() - w.slow_at >= SLOW_S:
            refused, failed = rows.refused_and_failed(self.db, pipeline_id, results[0].created_at)
            mix = tuple(input_mix(w.spec, Window(results, before)))
            w.slow, w.slow_at = {"refused": refused, "failed": failed, "verdicts": rows.verdicts(self.db, results),
                                 "mix": mix}, time.monotonic()
        return Window(results, before, **w.slow)

    # -- acting on a verdict ------------------------------------------------------------------
    def _warn(self, pipeline_id: str, w: Watched, verdict: Verdict) -> None:
        out = frozenset(s.name for s in verdict.warnings)
        w.clean = 0 if out else w.clean + 1
        if out and out != w.warned:
            self._say(pipeline_id, w, out, verdict)
        elif not out and w.warned and w.clean >= CLEAR_AFTER:
            self._say(pipeline_id, w, out, None, "back within range")
        self.metrics.set_level(pipeline_id, "warning" if w.warned else "ok")

    def _say(self, pipeline_id: str, w: Watched, out: frozenset[str], verdict: Verdict | None,
             why: str | None = None) -> None:
        """Record the warning (or its clearing) and tell the admins of each signal that newly joined it."""
        now, fp = utcnow(), self.book.prints[pipeline_id]
        model = f"{fp.model_id} {fp.model_version}"
        with self.db.write() as conn:
            if verdict is None:
                audit.record(conn, rows.CLEARED, actor=ACTOR, role="system", at=now,
                             detail={"pipeline": pipeline_id, "model": model, "why": why})
                told: list[str] = []
            else:
                lines = [s.words for s in verdict.warnings]
                told = []
                if out - (w.warned or frozenset()):
                    key = f"{pipeline_id}-warn-{now:%Y%m%dT%H%M%S%f}"
                    told = enqueue_all(conn, self.alerting, key, message("warning", pipeline_id, model, lines, {}), now)
                audit.record(conn, rows.WARNING, actor=ACTOR, role="system", at=now,
                             detail={"pipeline": pipeline_id, "model": model, "signals": sorted(out), "said": lines,
                                     "told": told})
        w.warned = out
        log.warning("monitor: %s %s", pipeline_id, f"warning: {'; '.join(s.words for s in verdict.warnings)}"
                    if verdict is not None else f"warning cleared ({why})")
        if told:
            self.on_message()

    def _demote(self, pipeline_id: str, w: Watched, verdict: Verdict) -> None:
        """Demote the pipeline by a decision of the system, then page the admin on call."""
        reason = f"model monitor: {verdict.hard}"
        if not self._state(pipeline_id, w, fresh=True)[1].live:  # someone decided meanwhile
            return
        try:
            decision = decide(self.db, self.settings, pipeline_id, "demote", reason, ACTOR, role="system",
                              withdraw=self.withdraw)
        except DecisionRefused as exc:
            log.error("monitor: could not demote %s: %s", pipeline_id, exc)
            return
        fp = self.book.prints[pipeline_id]
        lines = [verdict.hard, *(s.words for s in verdict.warnings if s.name != "positive_rate")]
        payload = message("demoted", pipeline_id, f"{fp.model_id} {fp.model_version}", lines,
                          {"decision": decision["id"]})
        now = utcnow()
        with self.db.write() as conn:
            told = enqueue_all(conn, self.alerting, f"{pipeline_id}-demoted-d{decision['id']}", payload, now)
            audit.record(conn, "monitor_demoted", actor=ACTOR, role="system", at=now,
                         detail={"pipeline": pipeline_id, "decision": decision["id"], "said": lines, "paged": told})
        w.warned, w.clean, w.taken_at = frozenset(), 0, -DECISIONS_S
        self.metrics.set_level(pipeline_id, "demoted")
        log.error("monitor: %s demoted to shadow (decision %s): %s; paged %s", pipeline_id, decision["id"],
                  verdict.hard, ", ".join(told) or "nobody (no monitor: section in the alerting file)")
        if told:
            self.on_message()
