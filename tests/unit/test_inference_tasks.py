"""Pre- and post-processing of the ich and bone_age predictors (no model needed)."""

from __future__ import annotations

import numpy as np
import pytest

from radtriage.imaging.volume import Volume
from radtriage.inference import bone_age, ich


def test_ich_preprocess_gives_each_slice_its_neighbours_brain_window():
    hu = np.zeros((3, 64, 64), np.float32)
    hu[0], hu[1], hu[2] = 0.0, 40.0, 80.0  # brain window 0..80 HU: 0, 0.5, 1
    x = ich.preprocess(Volume(hu, (5.0, 1.0, 1.0)))
    assert x.shape == (3, 5, ich.SIZE, ich.SIZE)
    middle = x[1, :, 10, 10]
    assert middle[0] == pytest.approx(0.0) and middle[1] == pytest.approx(0.5) and middle[4] == pytest.approx(1.0)
    assert x[0, 0, 10, 10] == pytest.approx(0.0)  # the edge repeats itself
    assert x[2, 4, 10, 10] == pytest.approx(1.0)
    with pytest.raises(ValueError, match="CT volume"):
        ich.preprocess(Volume(hu[0], (1.0, 1.0)))


def test_ich_postprocess_key_slice_subtype_and_threshold():
    probs = np.array([[0.1, 0.1, 0.1, 0.1, 0.1, 0.2],
                      [0.1, 0.9, 0.3, 0.1, 0.2, 0.8],
                      [0.6, 0.1, 0.1, 0.1, 0.1, 0.4]])
    r = ich.postprocess(probs, threshold=0.7)
    assert r["positive"] and r["key_slice"] == 1 and r["subtype"] == "intraparenchymal"
    assert r["score"] == pytest.approx(0.8) and r["subtype_probs"]["epidural"] == pytest.approx(0.6)
    assert not ich.postprocess(probs, threshold=0.85)["positive"]


def test_bone_age_crop_finds_the_hand_inside_shutters():
    rng = np.random.default_rng(0)
    img = rng.normal(0.05, 0.01, (400, 300)).astype(np.float32)
    img[:30], img[:, :20] = 0.9, 0.9  # collimator shutters, brighter than the hand's soft tissue
    img[150:380, 120:200] = 0.6  # the "hand"
    r0, r1, c0, c1 = bone_age.hand_box(img)
    assert abs(r0 - 150) <= 6 and abs(r1 - 380) <= 6 and abs(c0 - 120) <= 6 and abs(c1 - 200) <= 6
    x = bone_age.to_input(img, 64)
    assert x.shape == (1, 64, 64) and 0.0 <= x.min() and x.max() <= 1.0
    assert x[0, 32, 32] > 0.5  # the hand fills the middle


@pytest.mark.parametrize("meta,months", [
    ({"PatientBirthDate": "20100115", "StudyDate": "20200115"}, 120.0),
    ({"PatientAge": "007Y"}, 84.0),
    ({"PatientAge": "018M"}, 18.0),
    ({"PatientAge": "052W"}, 12.0),
    ({"PatientAge": "7 years"}, None),
    ({}, None),
])
def test_chronological_age(meta, months):
    got = bone_age.chronological_age_months(meta)
    assert got == (pytest.approx(months, abs=0.2) if months is not None else None)


def test_bone_age_needs_sex():
    assert bone_age.sex_code("M") == 1.0 and bone_age.sex_code("f") == 0.0
    with pytest.raises(ValueError, match="sex"):
        bone_age.sex_code("O")
