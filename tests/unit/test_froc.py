"""FROC / CPM after LUNA16 (radtriage.training.metrics.froc, cpm), on a hand-computed case."""

from __future__ import annotations

import math

import pytest

from radtriage.training.metrics import FROC_FP_RATES, cpm, froc


def _case():
    # scan A: N1 (r 5), N2 (r 3), N3 small (d 3 mm, r 1.5)
    truth_a = [
        {"centre_mm": [0, 0, 0], "diameter_mm": 10.0},
        {"centre_mm": [50, 0, 0], "diameter_mm": 6.0},
        {"centre_mm": [100, 0, 0], "diameter_mm": 3.0},
    ]
    cands_a = [
        {"centre_mm": [1, 0, 0], "score": 0.9},  # hits N1
        {"centre_mm": [2, 0, 0], "score": 0.8},  # hits N1 again: neither a second TP nor an FP
        {"centre_mm": [100, 0.5, 0], "score": 0.7},  # hits only N3 (excluded when min 4 mm)
        {"centre_mm": [200, 0, 0], "score": 0.6},  # FP
        {"centre_mm": [50, 2.9, 0], "score": 0.4},  # hits N2 (2.9 <= 3)
    ]
    # scan B: no nodules, two FPs
    cands_b = [{"centre_mm": [0, 0, 0], "score": 0.5}, {"centre_mm": [9, 9, 9], "score": 0.3}]
    return [(truth_a, cands_a), ([], cands_b)]


def test_hand_computed_cpm_with_size_limit():
    # counted: N1 (best 0.9), N2 (0.4); FPs 0.6, 0.5, 0.3 over 2 scans
    # operating points (FP/scan, sens): (0, .5) (0.5, .5) (1, .5) (1, 1) (1.5, 1)
    r = froc(_case(), min_diameter_mm=4.0)
    assert r["n_scans"] == 2 and r["n_nodules"] == 2 and r["n_false_positives"] == 3
    assert r["sensitivity"] == {"0.125": 0.5, "0.25": 0.5, "0.5": 0.5, "1": 1.0, "2": 1.0, "4": 1.0, "8": 1.0}
    assert r["cpm"] == pytest.approx(5.5 / 7)
    assert cpm(_case(), min_diameter_mm=4.0) == pytest.approx(5.5 / 7)


def test_hand_computed_cpm_all_sizes():
    # N3 now counts and the 0.7 candidate is its TP: sens 2/3 at 0 FP, 1 from 1 FP/scan
    r = froc(_case())
    assert r["n_nodules"] == 3 and r["n_false_positives"] == 3
    assert r["sensitivity"]["0.125"] == pytest.approx(2 / 3)
    assert r["sensitivity"]["1"] == 1.0
    assert r["cpm"] == pytest.approx(6 / 7)


def test_hit_needs_the_radius_and_missed_nodules_cap_sensitivity():
    cases = _case()
    cases[0][1][4]["centre_mm"] = [50, 3.1, 0]  # just outside N2: now an FP, N2 never hit
    r = froc(cases, min_diameter_mm=4.0)
    assert r["n_nodules_hit"] == 1 and r["n_false_positives"] == 4
    assert max(r["sensitivity"].values()) == 0.5
    assert r["cpm"] == pytest.approx(0.5)


def test_no_counted_nodules_gives_nan_and_rates_are_luna16():
    assert FROC_FP_RATES == (0.125, 0.25, 0.5, 1.0, 2.0, 4.0, 8.0)
    assert math.isnan(cpm([([], [{"centre_mm": [0, 0, 0], "score": 0.5}])]))


def test_bootstrap_interval_brackets_the_cpm():
    cases = _case() * 5
    r = froc(cases, min_diameter_mm=4.0, rounds=200)
    lo, hi = r["cpm_ci95"]
    assert lo <= r["cpm"] <= hi
