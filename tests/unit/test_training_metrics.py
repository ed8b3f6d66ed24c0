import numpy as np
import pytest

from radtriage.training.metrics import (
    auc, binary_report, confusion, regression_report, threshold_for_sensitivity,
)


def test_auc_and_confusion_hand_computed():
    y = np.array([0, 0, 1, 1])
    s = np.array([0.1, 0.4, 0.35, 0.8])
    # pairs (pos, neg): (0.35>0.1) (0.35<0.4) (0.8>0.1) (0.8>0.4) -> 3/4
    assert auc(y, s) == pytest.approx(0.75)
    c = confusion(y, s, 0.3)
    assert (c["tp"], c["fp"], c["tn"], c["fn"]) == (2, 1, 1, 0)
    assert c["sensitivity"] == 1.0 and c["specificity"] == 0.5 and c["ppv"] == pytest.approx(2 / 3)


def test_report_has_intervals_around_the_value():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 300)
    s = y * 0.6 + rng.random(300) * 0.7
    r = binary_report(y, s, 0.5, rounds=200)
    lo, hi = r["auc"]["ci95"]
    assert lo <= r["auc"]["value"] <= hi and hi - lo < 0.2


def test_threshold_keeps_sensitivity():
    y = np.array([1, 1, 1, 1, 0, 0])
    s = np.array([0.9, 0.8, 0.3, 0.7, 0.2, 0.5])
    t = threshold_for_sensitivity(y, s, 0.75)
    assert confusion(y, s, t)["sensitivity"] >= 0.75 and t == pytest.approx(0.7)


def test_regression_report():
    r = regression_report(np.array([10, 20, 30.0]), np.array([12, 18, 33.0]), rounds=50)
    assert r["mae"]["value"] == pytest.approx(7 / 3)
    assert r["bland_altman"]["bias"] == pytest.approx(1.0)
