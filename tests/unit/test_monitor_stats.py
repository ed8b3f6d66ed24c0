"""The model monitor's statistics on known distributions: PSI, KS, categorical drift, Wilson intervals."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats as scipy_stats

from radtriage.monitor import stats


def test_psi_is_zero_for_the_same_distribution_and_matches_its_formula():
    assert stats.psi([10, 20, 30, 40], [1, 2, 3, 4]) == pytest.approx(0.0)
    # by hand: (0.5-0.25) ln(0.5/0.25) + (0.5-0.75) ln(0.5/0.75)
    assert stats.psi([50, 50], [25, 75]) == pytest.approx(0.25 * math.log(2) + 0.25 * math.log(1.5))


def test_psi_of_two_normals_grows_with_the_shift_and_crosses_the_usual_thresholds():
    rng = np.random.default_rng(1)
    edges = np.linspace(-4, 5, 19)
    base = stats.histogram(rng.normal(0, 1, 50_000), edges)
    same = stats.psi(stats.histogram(rng.normal(0, 1, 50_000), edges), base)
    small = stats.psi(stats.histogram(rng.normal(0.25, 1, 50_000), edges), base)
    large = stats.psi(stats.histogram(rng.normal(1.0, 1, 50_000), edges), base)
    assert same < 0.01 < small < 0.1  # N(0.25, 1): PSI ~ 0.0625 (d^2 for unit normals)
    assert small == pytest.approx(0.0625, abs=0.015)
    assert large == pytest.approx(1.0, abs=0.15) and large > 0.25


def test_ks_of_binned_normals_is_close_to_the_exact_distance():
    rng = np.random.default_rng(2)
    edges = np.linspace(-5, 5, 201)
    a = rng.normal(0, 1, 40_000)
    b = rng.normal(0.5, 1, 40_000)
    exact = scipy_stats.ks_2samp(a, b).statistic  # the true sup distance: 2 * Phi(0.25) - 1 = 0.197
    binned = stats.ks(stats.histogram(a, edges), stats.histogram(b, edges))
    assert binned == pytest.approx(exact, abs=0.01)
    assert binned == pytest.approx(2 * scipy_stats.norm.cdf(0.25) - 1, abs=0.01)
    assert stats.ks([1, 1, 1], [1, 1, 1]) == 0.0 and stats.ks([1, 0], [0, 1]) == 1.0


def test_histogram_puts_values_outside_the_edges_in_the_end_bins():
    assert stats.histogram([-5, 0.1, 0.5, 0.9, 7], [0, 0.5, 1]).tolist() == [2, 3]


def test_ks_critical_value_matches_the_asymptotic_table():
    assert stats.ks_critical(100, alpha=0.05) == pytest.approx(0.136, abs=0.001)  # 1.36 / sqrt(n)
    assert stats.ks_critical(100, 100, alpha=0.01) == pytest.approx(1.628 * math.sqrt(2 / 100), abs=0.002)


def test_mixture_weights_the_classes_by_prevalence():
    neg, pos = [8, 2, 0], [0, 0, 5]
    assert stats.mixture(neg, pos, 0.1).tolist() == pytest.approx([0.72, 0.18, 0.1])


def test_categorical_drift_and_unseen_values():
    before = {"GE": 60, "SIEMENS": 40}
    assert stats.categorical_psi({"GE": 30, "SIEMENS": 20}, before) == pytest.approx(0.0)
    moved = stats.categorical_psi({"GE": 20, "SIEMENS": 30}, before)
    assert moved == pytest.approx(0.2 * math.log(0.6 / 0.4) * 2, rel=1e-6)
    new = stats.categorical_psi({"GE": 20, "CANON": 30}, before)  # a new scanner: a large PSI
    assert new > 2
    assert stats.unseen_share({"GE": 20, "CANON": 30}, before) == pytest.approx(0.6)


def test_wilson_interval_and_beyond():
    lo, hi = stats.wilson(10, 100)
    assert (lo, hi) == pytest.approx((0.0552, 0.1744), abs=1e-3)  # the textbook example
    assert stats.wilson(0, 0) == (0.0, 1.0)
    assert stats.beyond(30, 100, 0.03, 0.20) == "above"  # 30% of 100: even 21.8% is above 20%
    assert stats.beyond(25, 100, 0.03, 0.20) is None  # 25% of 100: 17.5% is possible
    assert stats.beyond(0, 30, 0.03, 0.20) is None  # none in 30 happens at 5%
    assert stats.beyond(0, 300, 0.03, 0.20) == "below"
