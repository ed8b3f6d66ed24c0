"""What ``GET /api/v1/models/{pipeline}/monitor`` answers, and the Models page's charts of it.

Every number comes from the model monitor (`radtriage.monitor.view.snapshot`: the monitor's own window,
baseline and rule, `signals.judge`); this module only gives it a typed shape (`MonitorOut`) and draws it
(`chart`: server-rendered SVG from `radtriage.api.charts`).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel

from radtriage.api import charts
from radtriage.config import Settings
from radtriage.db.engine import Database
from radtriage.db.monitor import INPUTS
from radtriage.monitor import stats
from radtriage.monitor.signals import INPUT_NAMES, Signal
from radtriage.monitor.status import notices
from radtriage.monitor.view import Snapshot, decision_marks, input_shares, score_counts, signal_of, snapshot
from radtriage.pipelines import PipelineSpec

Out = Literal["above", "below"] | None


class SignalOut(BaseModel):
    name: str
    value: float | None
    n: int
    out: Out
    words: str


class RateWindow(BaseModel):
    """One block of consecutive live results."""

    first_result_id: int
    last_result_id: int
    start: datetime
    end: datetime
    results: int
    positive: int
    rate: float
    ci95: tuple[float, float]
    out: Out  # judged as the monitor judges a window (not on fewer than min_results)


class PositiveRateOut(BaseModel):
    value: float | None
    results: int
    positive: int
    ci95: tuple[float, float]
    out: Out
    words: str
    expected: tuple[float, float]
    hard_max: float | None
    hard_min: float | None
    hard_min_results: int
    hard: str | None  # why the hard limit demotes the pipeline now, or None
    block: int  # results per history window
    history: list[RateWindow]


class ScoresOut(BaseModel):
    key: str
    edges: list[float]
    counts: list[int]  # the window's scores per bin
    shares: list[float]
    baseline: list[float] | None  # the commissioning baseline's share per bin
    baseline_source: str | None
    psi: float | None
    ks: float | None
    psi_max: float
    out: Out


class InputShare(BaseModel):
    value: str
    window: float  # share of the window's results
    before: float  # share of the results before it


class InputOut(BaseModel):
    keyword: str
    name: str
    psi: float | None
    out: Out
    words: str | None
    values: list[InputShare]


class AgreementOut(BaseModel):
    value: float | None
    agree: int
    disagree: int
    unsure: int
    minimum: float | None
    out: Out
    words: str


class AttemptRate(BaseModel):
    value: float | None
    count: int
    attempts: int
    maximum: float
    out: Out
    words: str


class MonitorOut(BaseModel):
    pipeline_id: str
    task: str
    state: str
    enabled: bool
    judged: bool  # the monitor judges (and acts on) this pipeline now: it is live
    window: int | None  # the window's size ...
    results: int  # ... and the live results in it now (since the last decision)
    since: datetime | None  # the last decision, where the window starts
    reason: str | None  # why the pipeline file's numbers are what they are
    positive_rate: PositiveRateOut | None
    scores: ScoresOut | None
    inputs: list[InputOut]
    agreement: AgreementOut | None
    failure_rate: AttemptRate | None
    no_ai_rate: AttemptRate | None
    warnings: list[str]
    notice: dict[str, Any] | None  # the worklist banner about this pipeline, if any


def _sig(s: Signal | None) -> dict[str, Any]:
    return {"value": s.value, "out": s.out, "words": s.words} if s else {"value": None, "out": None, "words": ""}


def _positive(snap: Snapshot) -> PositiveRateOut:
    pr, res = snap.spec.positive_rate, snap.window.results
    assert pr is not None
    k = sum(s.positive for s in res)
    history = [RateWindow(first_result_id=b.first_id, last_result_id=b.last_id, start=b.start, end=b.end,
                          results=b.signal.n, positive=round((b.signal.value or 0) * b.signal.n),
                          rate=b.signal.value or 0.0, ci95=(b.low, b.high), out=b.signal.out) for b in snap.history]
    block = max((b.results for b in history), default=max(10, snap.spec.window // 4))
    return PositiveRateOut(**_sig(signal_of(snap.verdict, "positive_rate")), results=len(res), positive=k,
                           ci95=stats.wilson(k, len(res)), expected=pr.expected, hard_max=pr.hard_max,
                           hard_min=pr.hard_min, hard_min_results=pr.hard_min_results, hard=snap.verdict.hard,
                           block=block, history=history)


def _scores(snap: Snapshot) -> ScoresOut | None:
    drift, ref = snap.spec.score, snap.reference
    if drift is None or ref is None:
        return None
    counts = score_counts(snap.window, ref)
    psi, ks = signal_of(snap.verdict, "score_psi"), signal_of(snap.verdict, "score_ks")
    return ScoresOut(key=drift.key, edges=list(ref.edges), counts=counts,
                     shares=[float(x) for x in stats.proportions(counts)] if sum(counts) else [0.0] * len(counts),
                     baseline=[float(x) for x in ref.shares], baseline_source=ref.source,
                     psi=psi.value if psi else None, ks=ks.value if ks else None, psi_max=drift.psi_max,
                     out=psi.out if psi else None)


def _inputs(snap: Snapshot) -> list[InputOut]:
    shares = input_shares(snap.window)
    out = []
    for kw in INPUTS:
        s = signal_of(snap.verdict, f"input:{kw}")
        out.append(InputOut(keyword=kw, name=INPUT_NAMES[kw], psi=s.value if s else None, out=s.out if s else None,
                            words=s.words if s else None,
                            values=[InputShare(value=v, window=a, before=b) for v, (a, b) in shares[kw].items()]))
    return out


def _attempts(snap: Snapshot, name: str, count: int, maximum: float) -> AttemptRate:
    s = signal_of(snap.verdict, name)
    attempts = len(snap.window.results) + snap.window.refused + snap.window.failed
    return AttemptRate(**_sig(s), count=count, attempts=attempts, maximum=maximum)


def monitor_out(db: Database, settings: Settings, spec: PipelineSpec, block: int | None = None) -> MonitorOut:
    return _out(db, spec, snapshot(db, settings, spec, block=block))


def _out(db: Database, spec: PipelineSpec, snap: Snapshot | None) -> MonitorOut:
    notice = next((n for n in notices(db) if n["pipeline_id"] == spec.id), None)
    if snap is None:
        return MonitorOut(pipeline_id=spec.id, task=spec.task, state="", enabled=False, judged=False, window=None,
                          results=0, since=None, reason=None, positive_rate=None, scores=None, inputs=[],
                          agreement=None, failure_rate=None, no_ai_rate=None, warnings=[], notice=notice)
    v, w = snap.window.verdicts or {}, snap.window
    agreement = signal_of(snap.verdict, "agreement")
    return MonitorOut(
        pipeline_id=spec.id, task=spec.task, state=snap.state.state, enabled=True, judged=snap.state.live,
        window=snap.spec.window, results=len(w.results), since=snap.decisions[-1]["decided_at"] if snap.decisions else None,
        reason=snap.spec.reason, positive_rate=_positive(snap), scores=_scores(snap), inputs=_inputs(snap),
        agreement=AgreementOut(**_sig(agreement), agree=v.get("agree", 0), disagree=v.get("disagree", 0),
                               unsure=v.get("unsure", 0), minimum=snap.spec.agreement_min),
        failure_rate=_attempts(snap, "failure_rate", w.failed, snap.spec.failure_rate_max),
        no_ai_rate=_attempts(snap, "no_ai_rate", w.refused, snap.spec.no_ai_rate_max),
        warnings=[s.words for s in snap.verdict.warnings] + ([snap.verdict.hard] if snap.verdict.hard else []),
        notice=notice)


# -- the charts -----------------------------------------------------------------------------------

def _rate_svg(m: MonitorOut, snap_marks: list[tuple[int, str]]) -> str:
    pr = m.positive_rate
    assert pr is not None
    points = [charts.RatePoint(h.rate, h.ci95[0], h.ci95[1], h.results, h.positive, f"{h.end:%m-%d %H:%M}",
                               f"{h.positive} of {h.results} positive ({charts.pct(h.rate)}, 95% interval "
                               f"{charts.pct(h.ci95[0])}-{charts.pct(h.ci95[1])}), results {h.first_result_id}-"
                               f"{h.last_result_id}, {h.start:%Y-%m-%d %H:%M}-{h.end:%H:%M} UTC", h.out)
              for h in pr.history]
    limits = [(x, f"hard limit {charts.pct(x)} (over {pr.hard_min_results}+ results)")
              for x in (pr.hard_max, pr.hard_min) if x is not None]
    return charts.rate_chart(points, pr.expected, limits, snap_marks, f"{m.pipeline_id}: positive rate over time",
                             f"blocks of {pr.block} live results, oldest to newest (block end, UTC)")


def _scores_svg(m: MonitorOut) -> str:
    s = m.scores
    if s is None:
        return charts.svg(charts.text(charts.W / 2, 40, "no score baseline for this pipeline", cls="empty"),
                          f"{m.pipeline_id}: score distribution", "no baseline", "histogram-chart", height=60)
    unit = "bone age minus chronological age (months)" if m.task == "bone_age" else f"score '{s.key}' (probability)"
    psi = f"PSI {s.psi:.2f}, KS {s.ks:.2f}" if s.psi is not None and s.ks is not None else "PSI: no scores yet"
    return charts.histogram_chart(s.edges, s.shares, s.baseline, f"{m.pipeline_id}: scores against the "
                                  f"commissioning baseline ({psi})", unit, sum(s.counts), "commissioning baseline")


def _rates_svg(m: MonitorOut) -> str:
    rows = []
    if m.agreement is not None and m.agreement.minimum is not None:
        a = m.agreement
        n = a.agree + a.disagree
        rows.append(charts.RateRow("readers' agreement", a.value, *stats.wilson(a.agree, n), (a.minimum or 0.0, 1.0),
                                   a.words, a.out))
    for label, r in (("failure rate", m.failure_rate), ("'AI not applicable'", m.no_ai_rate)):
        if r is not None:
            rows.append(charts.RateRow(label, r.value, *stats.wilson(r.count, r.attempts), (0.0, r.maximum),
                                       r.words, r.out))
    return charts.rates_chart(rows, f"{m.pipeline_id}: readers' agreement, failures and 'AI not applicable'")


def chart(db: Database, settings: Settings, spec: PipelineSpec, name: str, block: int | None = None) -> str:
    """One chart of the pipeline's monitor as SVG (``name``: positive-rate, scores or rates)."""
    snap = snapshot(db, settings, spec, block=block)
    m = _out(db, spec, snap)
    if not m.enabled or snap is None:
        return charts.svg(charts.text(charts.W / 2, 40, "the monitor is off for this pipeline", cls="empty"),
                          f"{spec.id}: monitor off", "enabled: false in the pipeline file", "empty-chart", height=60)
    if name == "positive-rate":
        return _rate_svg(m, decision_marks(snap.history, snap.decisions))
    return _scores_svg(m) if name == "scores" else _rates_svg(m)
