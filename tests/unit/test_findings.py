"""Findings in words and numbers, Lung-RADS and bone-age z-scores (hand-checked cases)."""

from __future__ import annotations

import numpy as np
import pytest

from radtriage.imaging.volume import Volume
from radtriage.inference import findings
from radtriage.inference.reference import bone_age_sd, bone_age_z, lung_rads, overall_lung_rads


@pytest.mark.parametrize("kind,d,solid,cat", [
    ("solid", 5.9, None, "2"), ("solid", 6.0, None, "3"), ("solid", 7.96, None, "4A"),  # 7.96 rounds to 8.0
    ("solid", 14.9, None, "4A"), ("solid", 15.0, None, "4B"), (None, 9.0, None, "4A"),
    ("part-solid", 5.0, 2.0, "2"), ("part-solid", 12.0, 4.0, "3"), ("part-solid", 12.0, 7.0, "4A"),
    ("part-solid", 12.0, 9.0, "4B"), ("ground-glass", 29.0, None, "2"), ("ground-glass", 31.0, None, "3"),
    ("calcified", 20.0, None, "1"),
])
def test_lung_rads_v2022_baseline(kind, d, solid, cat):
    assert lung_rads(kind, d, solid) == cat


def test_overall_lung_rads_is_the_worst():
    assert overall_lung_rads(["2", "4A", "3"]) == "4A" and overall_lung_rads([]) == "1"


def test_bone_age_z_uses_the_sd_for_age():
    assert bone_age_sd(120) == pytest.approx(11.0)
    assert bone_age_z(142, 120) == pytest.approx(2.0)
    f = findings.bone_age_findings({"bone_age_months": 146.0, "chronological_age_months": 120.0})[0]
    assert f.code == "bone_age_flag" and f.text == "bone age +26 mo, z +2.4 (advanced)"
    g = findings.bone_age_findings({"bone_age_months": 118.0, "chronological_age_months": 120.0})[0]
    assert g.code == "bone_age" and g.measurements["z_score"] == pytest.approx(-0.18, abs=0.01)
    assert "unknown" in findings.bone_age_findings({"bone_age_months": 100.0, "chronological_age_months": None})[0].text


def _head_with_blood(ml: float) -> tuple[Volume, float]:
    """A skull ring of 1 mm voxels, brain 35 HU, a blood cube of about ``ml`` mL at 70 HU."""
    hu = np.full((10, 128, 128), -1000.0, np.float32)
    yy, xx = np.mgrid[:128, :128]
    r = np.hypot(yy - 64, xx - 64)
    hu[:, r < 60] = 35.0
    hu[:, (r >= 55) & (r < 60)] = 1200.0
    side = int(round((ml * 1000 / 10) ** 0.5))
    hu[:, 40 : 40 + side, 40 : 40 + side] = 70.0
    return Volume(hu, (1.0, 1.0, 1.0)), side * side * 10 / 1000


def test_ich_volume_estimate_and_text():
    vol, true_ml = _head_with_blood(4.0)
    pred = {"positive": True, "score": 0.93, "subtype": "intraparenchymal", "key_slice": 4,
            "slice_probs": [0.9] * 10}
    (f,) = findings.ich_findings(pred, vol, threshold=0.5)
    assert f.measurements["estimated_volume_ml"] == pytest.approx(true_ml, rel=0.1)
    assert f.text.startswith("ICH - intraparenchymal, ~") and f.probability == pytest.approx(0.93)
    assert findings.ich_findings({**pred, "positive": False}, vol, 0.5) == []


def test_nodule_findings_filter_by_score_and_categorise():
    pred = {"nodules": [
        {"centre_mm": [1.0, 2.0, 3.0], "diameter_mm": 14.2, "mean_diameter_mm": 13.0, "volume_mm3": 1100.0, "score": 0.9},
        {"centre_mm": [5.0, 6.0, 7.0], "diameter_mm": 4.0, "mean_diameter_mm": 4.0, "volume_mm3": 30.0, "score": 0.2},
    ]}
    fs = findings.nodule_findings(pred, min_score=0.5)
    assert [f.text for f in fs] == ["Lung-RADS 4A, 14 mm"]
    assert findings.scan_lung_rads(fs) == "4A"


def test_lvo_text():
    (f,) = findings.lvo_findings({"positive": True, "score": 0.8, "side": "left", "segment": "M1"})
    assert f.text == "LVO - left M1"
    assert findings.lvo_findings({"positive": False, "score": 0.1, "side": "left", "segment": "M1"}) == []
