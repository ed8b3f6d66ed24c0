"""What the monitor sees of a pipeline now, for people (the Models page, ``/api/v1/models/{id}/monitor``).

`snapshot` evaluates the pipeline as `watch.Monitor` does (the same window since its last decision, the same
baseline, `signals.judge`) without acting on the verdict: no audit entry, no message, no demotion. It adds
what a page draws: the window's score histogram against the baseline (`stats.histogram` on the baseline's
edges), each input's values now and before, and the positive rate of consecutive blocks of the pipeline's
recent live results (`rate_history`: each block judged by `signals.positive_rate`, with its Wilson interval).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from radtriage.config import Settings
from radtriage.db import monitor as rows
from radtriage.db.engine import Database
from radtriage.governance.state import PipelineState, StateBook
from radtriage.monitor import stats
from radtriage.monitor.baseline import Reference, reference
from radtriage.monitor.signals import Signal, Verdict, Window, judge, positive_rate
from radtriage.monitor.watch import Monitor
from radtriage.pipelines import MonitorSpec, PipelineSpec

HISTORY = 1000  # recent results (any state) the rate history is drawn from


@dataclass(frozen=True)
class RateBlock:
    """The positive rate of consecutive live results, as the monitor's rule judges a window of them."""

    first_id: int
    last_id: int
    start: datetime
    end: datetime
    signal: Signal  # `signals.positive_rate` of the block
    low: float  # its 95% Wilson interval
    high: float


@dataclass(frozen=True)
class Snapshot:
    spec: MonitorSpec
    state: PipelineState
    decisions: list[dict[str, Any]]
    window: Window
    reference: Reference | None
    verdict: Verdict
    history: list[RateBlock]


def rate_history(spec: MonitorSpec, seen: Sequence[rows.Seen], size: int) -> list[RateBlock]:
    """The live results of ``seen`` (oldest first) in blocks of ``size`` counted from the newest (the oldest
    block may be short), each judged by `signals.positive_rate` with its Wilson interval."""
    live = [s for s in seen if s.state == "live"]
    cuts = list(range(len(live), 0, -size))[::-1]
    out = []
    for end in cuts:
        block = live[max(0, end - size):end]
        sig = positive_rate(spec, Window(block))
        low, high = stats.wilson(sum(s.positive for s in block), len(block))
        out.append(RateBlock(block[0].id, block[-1].id, block[0].created_at, block[-1].created_at, sig, low, high))
    return out


def score_counts(window: Window, ref: Reference) -> list[int]:
    """The window's scores per bin of the baseline's edges (as `signals.score_drift` bins them)."""
    scores = [s.score for s in window.results if s.score is not None]
    return [int(c) for c in stats.histogram(scores, ref.edges)] if scores else [0] * (len(ref.edges) - 1)


def input_shares(window: Window) -> dict[str, dict[str, tuple[float, float]]]:
    """Per keyword of `rows.INPUTS`: each value's share of the window's results and of those before it."""
    out: dict[str, dict[str, tuple[float, float]]] = {}
    for i, kw in enumerate(rows.INPUTS):
        now = Counter(s.inputs[i] for s in window.results)
        then = Counter(s.inputs[i] for s in window.before)
        n, m = len(window.results) or 1, len(window.before) or 1
        out[kw] = {str(v): (now[v] / n, then[v] / m) for v in sorted(set(now) | set(then), key=str)}
    return out


def snapshot(db: Database, settings: Settings, spec: PipelineSpec, book: StateBook | None = None,
             block: int | None = None, history: int = HISTORY) -> Snapshot | None:
    """The monitor's verdict on ``spec`` now, with what a page draws; None when its monitor is off. A
    pipeline that is not live is judged on the same window (the monitor itself does not judge it)."""
    book = book or StateBook(db, [spec], settings.inference.models_dir, settings.environment)
    monitor = Monitor(db, settings, [spec], book)
    w = monitor.watched.get(spec.id)
    if w is None:
        return None
    taken, state = monitor._state(spec.id, w, fresh=True)
    window = monitor._window(spec.id, w, taken[-1]["decided_at"] if taken else None)
    current = next((d for d in taken if d["id"] == state.decision_id), None)
    ref = reference(w.spec, w.task, current)
    key = w.spec.score.key if w.spec.score else None
    recent = rows.results_after(db, spec.id, key, 0, history)
    size = block or max(10, w.spec.window // 4)
    return Snapshot(w.spec, state, taken, window, ref, judge(w.spec, window, ref), rate_history(w.spec, recent, size))


def signal_of(verdict: Verdict, name: str) -> Signal | None:
    return next((s for s in verdict.signals if s.name == name), None)


def decision_marks(blocks: Sequence[RateBlock], decisions: Sequence[Mapping[str, Any]]) -> list[tuple[int, str]]:
    """Where each decision falls among the blocks: (index of the first block recorded after it, "demote ...")."""
    out = []
    for d in decisions:
        at = next((i for i, b in enumerate(blocks) if b.end > d["decided_at"]), None)
        if at is not None:
            out.append((at, f"{d['action']} by {d['decided_by']}"))
    return out
