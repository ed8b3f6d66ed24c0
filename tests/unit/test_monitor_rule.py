"""The model monitor's rule on constructed windows, its baselines, and the shipped monitor sections."""

from __future__ import annotations

import datetime as dt
from dataclasses import replace
from pathlib import Path

import pytest

from radtriage.db.monitor import Seen
from radtriage.monitor.baseline import kept_scores, reference
from radtriage.monitor.defaults import monitor_for
from radtriage.monitor.signals import Window, input_value, inputs_of, judge
from radtriage.pipelines import MonitorSpec, PipelineConfigError, load_pipelines, parse_pipeline

REPO = Path(__file__).resolve().parents[2]
T0 = dt.datetime(2026, 12, 7, tzinfo=dt.UTC)
GE = ("GE MEDICAL SYSTEMS", "Revolution", "STANDARD", 5.0, 120, [0.45, 0.45])
CANON = ("CANON", "Aquilion", "FC21", 0.5, 100, [0.43, 0.43])


def seen(i: int, positive: bool, score: float = 0.1, inputs: tuple = GE, state: str = "live") -> Seen:
    s = Seen(i, state, positive, score, f"1.2.{i}", T0 + dt.timedelta(minutes=i), inputs)
    return replace(s, inputs=inputs_of(s))  # as the monitor keeps them


def ich() -> MonitorSpec:
    [spec] = [s for s in load_pipelines(REPO / "pipelines") if s.id == "stroke_ich"]
    return monitor_for(spec)


def names(verdict) -> set[str]:
    return {s.name for s in verdict.warnings}


def test_every_shipped_pipeline_is_monitored_with_a_range_a_hard_limit_and_a_reason():
    for spec in load_pipelines(REPO / "pipelines"):
        m = spec.monitor
        assert m is not None and m.enabled, spec.id
        assert m.positive_rate.hard_max is not None or m.positive_rate.hard_min is not None, spec.id
        assert len(m.reason) > 200, spec.id
    assert ich().positive_rate.expected == (0.03, 0.25) and ich().positive_rate.hard_max == 0.45


def test_a_normal_window_warns_of_nothing():
    results = [seen(i, i % 12 == 0) for i in range(60)]  # 5 of 60 positive (8%)
    v = judge(ich(), Window(results, refused=1, verdicts={"agree": 8, "disagree": 3}), None)
    assert v.warnings == [] and v.hard is None
    [rate] = [s for s in v.signals if s.name == "positive_rate"]
    assert rate.value == pytest.approx(5 / 60) and rate.words == "positive rate 8.3% of the last 60 results (expected 3%-25%)"


def test_a_positive_rate_surge_warns_then_passes_the_hard_limit():
    spec = ich()
    calm = [seen(i, i % 12 == 0) for i in range(35)]  # 3 of 35
    surge = calm + [seen(100 + i, True) for i in range(18)]  # 21 of 53: 40%
    v = judge(spec, Window(surge), None)
    assert names(v) == {"positive_rate"} and v.hard is None
    more = surge + [seen(200 + i, True) for i in range(6)]  # 27 of 59: 46%
    v = judge(spec, Window(more), None)
    assert v.hard == "positive rate 46% of the last 59 results, at or above the hard limit 45% (expected 3%-25%)"


def test_few_results_are_not_judged():
    v = judge(ich(), Window([seen(i, True) for i in range(20)]), None)  # all positive, but only 20
    assert v.warnings == [] and v.hard is None


def test_score_drift_against_the_shipped_baseline_is_judged_on_a_full_window():
    spec = ich()
    ref = reference(spec, "ich", None)
    assert ref is not None and "validation" in ref.source
    # 100 scores spread as the baseline (its two classes mixed at the site's prevalence): no drift
    mids = [(a + b) / 2 for a, b in zip(ref.edges, ref.edges[1:])]
    normal = [seen(i, m > 0.9, m) for i, m in enumerate(m for m, share in zip(mids, ref.shares)
                                                         for _ in range(round(share * 100)))]
    shifted = [seen(i, False, 0.97) for i in range(100)]  # every normal head now scores 0.97
    psi_normal = next(s for s in judge(spec, Window(normal), ref).signals if s.name == "score_psi")
    v = judge(spec, Window(shifted), ref)
    psi_shifted = next(s for s in v.signals if s.name == "score_psi")
    assert psi_normal.out is None and psi_shifted.out == "above" and psi_shifted.value > 1
    assert "score_psi" in names(v)
    half = judge(spec, Window(shifted[:50]), ref)
    assert "score_psi" not in names(half)  # 50 results: PSI measured, not judged


def test_a_new_scanner_in_the_input_mix_warns():
    spec = ich()
    before = [seen(i, False, inputs=GE) for i in range(200)]
    now = [seen(300 + i, False, inputs=CANON if i % 2 else GE) for i in range(100)]
    v = judge(spec, Window(now, before), None)
    warned = names(v)
    assert {"input:Manufacturer", "input:ConvolutionKernel", "input:KVP"} <= warned
    [kernel] = [s for s in v.signals if s.name == "input:ConvolutionKernel"]
    assert "kernel 'FC21' in 50% of the last 100 results, 0% of the 200 before" in kernel.words


def test_readers_disagreeing_and_refusals_warn():
    spec = ich()
    results = [seen(i, i % 12 == 0) for i in range(60)]
    v = judge(spec, Window(results, refused=25, failed=0, verdicts={"agree": 1, "disagree": 19}), None)
    assert names(v) == {"agreement", "no_ai_rate"}


def test_input_values_are_categories():
    assert input_value("SliceThickness", "0.6250") == "0.62" and input_value("KVP", "119.8") == "120"
    assert input_value("PixelSpacing", [0.488281, 0.488281]) == "0.5" and input_value("Manufacturer", None) == "(none)"
    assert input_value("ConvolutionKernel", ["FC21", "AIDR"]) == "FC21"


def test_the_promoting_evidence_is_the_baseline_when_it_kept_scores():
    doc = {"cases": [{"label": {"positive": i < 20}, "prediction": {"score": 0.99 if i < 20 else 0.02}}
                     for i in range(100)]}
    kept = kept_scores("ich", doc)
    assert kept["score"][:2] == [0.99, 0.99] and kept["positive"].count(True) == 20
    ref = reference(ich(), "ich", {"id": 7, "action": "promote", "evidence": {"scores": kept}})
    assert ref.source == "the promoting evidence (decision 7, 100 cases)"
    assert ref.shares[0] == pytest.approx(1 - ich().score.prevalence)  # mixed at the site's prevalence
    assert kept_scores("bone_age", {"cases": [{"label": {"chronological_age_months": 100},
                                               "prediction": {"bone_age_months": 112}}]}) == {"score": [12.0],
                                                                                           "positive": None}


def test_a_bad_monitor_section_names_the_key():
    base = {"id": "x", "version": "1.0.0", "task": "ich", "model": "m",
            "select": {"rules": [{"keyword": "Modality", "equals": "CT"}]}}
    with pytest.raises(PipelineConfigError, match="hard_max must be above the expected range"):
        parse_pipeline({**base, "monitor": {"positive_rate": {"expected": [0.1, 0.3], "hard_max": 0.2},
                                            "reason": "r"}}, "x.yaml")
    with pytest.raises(PipelineConfigError, match="needs positive_rate and reason"):
        parse_pipeline({**base, "monitor": {"window": 50}}, "x.yaml")
    off = parse_pipeline({**base, "monitor": {"enabled": False}}, "x.yaml")
    assert off.monitor is not None and not off.monitor.enabled
