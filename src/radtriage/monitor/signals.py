"""The monitor's rule: from a live pipeline's window of results, each signal's value and whether it is out of
its expected range (a warning), and whether the positive rate passed its hard limit (a demotion).

Signals: ``positive_rate``; ``score_psi`` and ``score_ks`` (the score distribution against the
commissioning baseline); ``input:<keyword>`` (the mix of manufacturer, scanner model, kernel, slice
thickness, kVp and pixel spacing in the window against the results before it); ``agreement`` (readers'
agree / (agree + disagree)); ``failure_rate`` and ``no_ai_rate`` (failed for good, refused by the input
guard, of the pipeline's attempts since the window began). A rate warns only when its 95% interval lies
outside its range; drift statistics only on ``drift_results`` results or more.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from radtriage.db.monitor import INPUTS, Seen
from radtriage.monitor import stats
from radtriage.monitor.baseline import Reference
from radtriage.pipelines import MonitorSpec

INPUT_NAMES = {"Manufacturer": "manufacturer", "ManufacturerModelName": "scanner model",
               "ConvolutionKernel": "kernel", "SliceThickness": "slice thickness", "KVP": "kVp",
               "PixelSpacing": "pixel spacing"}


@dataclass(frozen=True)
class Signal:
    name: str
    value: float | None  # None: nothing to measure yet
    n: int  # how many results (verdicts, attempts) it was measured on
    out: str | None  # "above" | "below" its range, beyond chance; None: within, or not judged on so few
    words: str  # for people: "positive rate 34% of the last 45 results (expected 3%-20%)"


@dataclass(frozen=True)
class Verdict:
    signals: tuple[Signal, ...]
    hard: str | None = None  # why the pipeline must be demoted now, or None

    @property
    def warnings(self) -> list[Signal]:
        return [s for s in self.signals if s.out]


@dataclass(frozen=True)
class Window:
    """What the rule reads: the window (the newest live results since the pipeline's last decision, oldest
    first), the results before it (any state), the refusals and failures since the window began and the
    readers' verdicts on the window's results."""

    results: Sequence[Seen]
    before: Sequence[Seen] = ()
    refused: int = 0
    failed: int = 0
    verdicts: Mapping[str, int] | None = None
    mix: tuple[Signal, ...] | None = None  # the input-mix signals measured a moment ago (None: measure them)


def _pct(x: float) -> str:
    """A share in words: "34%", "8.3%", "3%"."""
    v = x * 100
    return f"{v:.0f}%" if v >= 10 or abs(v - round(v)) < 0.05 else f"{v:.1f}%"


def _range(low: float | None, high: float | None) -> str:
    return f"{_pct(low or 0)}-{_pct(high if high is not None else 1)}"


def _rate(name: str, label: str, k: int, n: int, low: float | None, high: float | None, judge: bool,
          of: str = "results") -> Signal:
    value = k / n if n else None
    out = stats.beyond(k, n, low, high) if judge else None
    words = (f"{label} {_pct(value)} of the last {n} {of} (expected {_range(low, high)})" if value is not None
             else f"{label}: nothing measured yet")
    return Signal(name, value, n, out, words)


def positive_rate(spec: MonitorSpec, w: Window) -> Signal:
    assert spec.positive_rate is not None
    low, high = spec.positive_rate.expected
    n, k = len(w.results), sum(s.positive for s in w.results)
    return _rate("positive_rate", "positive rate", k, n, low, high, n >= spec.min_results)


def hard_limit(spec: MonitorSpec, w: Window) -> str | None:
    """Why the positive rate demotes the pipeline now (at or past ``hard_max`` / ``hard_min`` over at least
    ``hard_min_results`` results), or None."""
    pr = spec.positive_rate
    n = len(w.results)
    if pr is None or n < pr.hard_min_results:
        return None
    rate = sum(s.positive for s in w.results) / n
    low, high = pr.expected
    for limit, past, side in ((pr.hard_max, pr.hard_max is not None and rate >= pr.hard_max, "at or above"),
                              (pr.hard_min, pr.hard_min is not None and rate <= pr.hard_min, "at or below")):
        if past:
            return (f"positive rate {_pct(rate)} of the last {n} results, {side} the hard limit {_pct(limit or 0)} "
                    f"(expected {_range(low, high)})")
    return None


def score_drift(spec: MonitorSpec, w: Window, ref: Reference | None) -> list[Signal]:
    scores = [s.score for s in w.results if s.score is not None]
    if spec.score is None or ref is None or not scores:
        return []
    counts = stats.histogram(scores, ref.edges)
    psi, ks = stats.psi(counts, ref.shares), stats.ks(counts, ref.shares)
    n, judged = len(scores), len(scores) >= spec.drift_results
    out = "above" if judged and psi > spec.score.psi_max else None
    said = f"score distribution of the last {n} results against {ref.source}"
    return [Signal("score_psi", psi, n, out, f"{said}: PSI {psi:.2f} (warns above {spec.score.psi_max:g}), KS {ks:.2f}"),
            Signal("score_ks", ks, n, None, f"{said}: KS distance {ks:.2f}")]


def input_value(keyword: str, raw: Any) -> str:
    """A header value as a category: numbers rounded as a protocol differs (slice thickness to 0.01 mm,
    kVp to 1, pixel spacing's row spacing to 0.1 mm), text stripped; a missing value is "(none)"."""
    if isinstance(raw, (list, tuple)):
        raw = raw[0] if raw else None
    if raw is None or raw == "":
        return "(none)"
    digits = {"SliceThickness": 2, "KVP": 0, "PixelSpacing": 1}.get(keyword)
    if digits is not None:
        try:
            return f"{round(float(raw), digits):g}"
        except (TypeError, ValueError):
            pass
    return " ".join(str(raw).split())[:64]


def inputs_of(s: Seen) -> tuple[str, ...]:
    """A result's `INPUTS` as categories (`input_value`)."""
    return tuple(input_value(kw, v) for kw, v in zip(INPUTS, s.inputs))


def input_mix(spec: MonitorSpec, w: Window) -> list[Signal]:
    """One signal per keyword of `INPUTS`: PSI of the window's values (categories: `inputs_of`) against the
    results before it."""
    if not w.results or not w.before:
        return []
    judged = len(w.results) >= spec.drift_results and len(w.before) >= spec.drift_results
    out = []
    for i, kw in enumerate(INPUTS):
        now = Counter(s.inputs[i] for s in w.results)
        then = Counter(s.inputs[i] for s in w.before)
        psi = stats.categorical_psi(now, then)
        share_now = {k: c / len(w.results) for k, c in now.items()}
        share_then = {k: c / len(w.before) for k, c in then.items()}
        # the value that moved most (a new one first)
        value = max(share_now, key=lambda k: (round(abs(share_now[k] - share_then.get(k, 0.0)), 6), k not in then))
        words = (f"{INPUT_NAMES[kw]} {value!r} in {_pct(share_now[value])} of the last {len(w.results)} results, "
                 f"{_pct(share_then.get(value, 0.0))} of the {len(w.before)} before "
                 f"(PSI {psi:.2f}, warns above {spec.input_mix.psi_max:g})")
        out.append(Signal(f"input:{kw}", psi, len(w.results),
                          "above" if judged and psi > spec.input_mix.psi_max else None, words))
    return out


def agreement(spec: MonitorSpec, w: Window) -> list[Signal]:
    v = w.verdicts or {}
    agree, n = v.get("agree", 0), v.get("agree", 0) + v.get("disagree", 0)
    if spec.agreement_min is None or not n:
        return []
    return [_rate("agreement", "readers' agreement", agree, n, spec.agreement_min, None, n >= spec.min_feedback,
                  of="verdicts")]


def attempts(spec: MonitorSpec, w: Window) -> list[Signal]:
    n = len(w.results) + w.refused + w.failed
    judge = n >= spec.min_results
    return [_rate("failure_rate", "failure rate", w.failed, n, None, spec.failure_rate_max, judge, of="attempts"),
            _rate("no_ai_rate", "'AI not applicable' rate", w.refused, n, None, spec.no_ai_rate_max, judge,
                  of="attempts")]


def judge(spec: MonitorSpec, w: Window, ref: Reference | None) -> Verdict:
    """Every signal of the window, and the hard limit's verdict."""
    mix = w.mix if w.mix is not None else input_mix(spec, w)
    signals = [positive_rate(spec, w), *score_drift(spec, w, ref), *mix, *agreement(spec, w), *attempts(spec, w)]
    return Verdict(tuple(signals), hard_limit(spec, w))
