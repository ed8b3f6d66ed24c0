"""The xr-hand detector mode: exposure and noise, stored depth and photometric, department artefacts, ossification.

The default mode's output is pinned byte for byte by test_synth_golden.py.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pydicom
import pytest
from scipy import ndimage

from radtriage.synth import synthesize, xr_hand

SIZE = 320


def _sample(seed: int, **kw) -> xr_hand.HandSample:
    kw = {"acquisition": "detector", "size": SIZE, "variants": (), "vendor": "DRX-Evolution", **kw}
    return xr_hand.sample(np.random.default_rng(seed), **kw)


def _box(img: np.ndarray, box) -> np.ndarray:
    r0, r1, c0, c1 = box
    return img[r0:r1, c0:c1]


def test_detector_mode_is_deterministic_and_leaves_options_checked():
    a, b = _sample(5, conditions=("ring",)), _sample(5, conditions=("ring",))
    assert np.array_equal(a.image, b.image) and a.truth == b.truth
    assert a.truth["acquisition"]["mode"] == "detector" and a.truth["conditions"] == ["ring"]
    with pytest.raises(ValueError):
        _sample(5, conditions=("tattoo",))
    with pytest.raises(ValueError):
        xr_hand.sample(np.random.default_rng(0), acquisition="film")


def test_noise_falls_with_exposure():
    """Same child, beam and processing at three exposures: the noise (the difference from a well-exposed
    twin, high-passed) falls as the exposure rises."""
    def image(kerma: float) -> np.ndarray:
        return _sample(7, conditions=(), kerma_ugy=kerma, bone_age_months=100.0).image

    ref = image(100.0)
    anatomy = (ref > 0.1) & (ref < 0.9)

    def noise(kerma: float) -> float:
        d = image(kerma) - ref
        return float((d - ndimage.gaussian_filter(d, 3.0))[anatomy].std())

    low, mid, high = noise(0.3), noise(3.0), noise(30.0)
    assert low > mid > high
    assert low > 2 * mid


@pytest.fixture(scope="module")
def mono_pair(tmp_path_factory):
    out = {}
    for photometric in ("MONOCHROME1", "MONOCHROME2"):
        root = tmp_path_factory.mktemp(photometric)
        (folder,) = synthesize("xr-hand", 1, 21, root, {"acquisition": "detector", "photometric": photometric,
                                                          "conditions": ("low_resolution",)})
        out[photometric] = folder
    return out


def test_monochrome1_is_the_inverse_of_monochrome2(mono_pair):
    (d1,), (d2,) = (sorted(mono_pair[p].glob("001_*.dcm")) for p in ("MONOCHROME1", "MONOCHROME2"))
    a, b = pydicom.dcmread(d1), pydicom.dcmread(d2)
    assert (a.PhotometricInterpretation, b.PhotometricInterpretation) == ("MONOCHROME1", "MONOCHROME2")
    assert a.BitsStored == b.BitsStored
    top = 2 ** a.BitsStored - 1
    assert np.array_equal(a.pixel_array.astype(int), top - b.pixel_array.astype(int))
    assert "DERIVED" in a.ImageType and max(a.Rows, a.Columns) < 700  # a low-resolution export


def test_eight_bit_export_stores_eight_bits(tmp_path):
    (folder,) = synthesize("xr-hand", 1, 22, tmp_path, {"acquisition": "detector", "conditions": ("8bit",)})
    for f in folder.glob("*.dcm"):
        ds = pydicom.dcmread(f)
        assert (ds.BitsAllocated, ds.BitsStored, ds.HighBit) == (8, 8, 7)
        assert ds.pixel_array.dtype == np.uint8 and ds.pixel_array.max() > 200


@pytest.mark.parametrize("name", ["cast", "ring", "marker", "collimation"])
def test_forced_artefact_is_in_truth_and_in_the_pixels_there(name):
    seed = 31
    with_ = _sample(seed, conditions=(name,), bone_age_months=130.0)
    without = _sample(seed, conditions=(), bone_age_months=130.0)
    assert name in with_.truth["conditions"] and name not in without.truth["conditions"]
    art = with_.truth["artefacts"][name]
    box = art.get("box_px") or art["field_px"]
    diff = np.abs(with_.image - without.image)
    if name == "collimation":  # the shutters: everything outside the field changes
        outside = np.ones(diff.shape, bool)
        outside[box[0]:box[1], box[2]:box[3]] = False
        assert outside.any() and float(diff[outside].mean()) > 0.3
        return
    inside = np.zeros(diff.shape, bool)
    inside[box[0]:box[1], box[2]:box[3]] = True
    assert float(diff[inside].mean()) > 3 * float(diff[~inside].mean())
    if name in ("ring", "marker"):  # metal: as white as the image gets
        assert float(_box(with_.image, box).max()) > 0.9


def test_second_hand_is_in_truth_and_in_the_pixels_there():
    s = _sample(32, conditions=("second_hand",), bone_age_months=100.0)
    box = s.truth["artefacts"]["second_hand"]["box_px"]
    w = s.image.shape[1]
    assert box[2] > w / 2  # the right hand, on the right
    inside = _box(s.image, box)
    empty = s.image[:, : w // 20]
    assert float(inside.mean()) > float(empty.mean()) + 0.1
    primary = [c["px"][1] for c in s.truth["centres"].values()]
    assert max(primary) < box[2]  # the truth's landmarks are the primary (left) hand's


@pytest.mark.parametrize(("bone_age", "present"), [(8.0, False), (72.0, True)])
def test_lunate_ossifies_after_its_onset(bone_age, present):
    s = _sample(41, conditions=(), bone_age_months=bone_age, age_months=bone_age, sex="F")
    lunate = s.truth["centres"]["lunate"]
    assert lunate["present"] is present and ("lunate" in s.truth["ossification_centres"]) is present
    r, c = (int(round(v)) for v in lunate["px"])
    k = max(1, int(round(1.0 / s.pixel_spacing)))
    centre = float(s.image[r - k: r + k + 1, c - k: c + k + 1].mean())
    ring = int(round(3.0 / s.pixel_spacing))
    yy, xx = np.ogrid[-ring: ring + 1, -ring: ring + 1]
    annulus = np.abs(np.hypot(yy, xx) - ring) < 1
    around = float(np.median(s.image[r - ring: r + ring + 1, c - ring: c + ring + 1][annulus]))
    if present:
        assert centre - around > 0.04
    else:
        assert centre - around < 0.02


def test_pseudo_epiphysis_variant_is_recorded_where_it_shows():
    s = _sample(43, conditions=(), variants=("pseudo_epiphysis_mc2",), bone_age_months=90.0)
    v = s.truth["variants"]["pseudo_epiphysis_mc2"]
    assert v["visible"] is True
    grown = _sample(43, conditions=(), variants=("pseudo_epiphysis_mc2",), bone_age_months=200.0)
    assert grown.truth["variants"]["pseudo_epiphysis_mc2"]["visible"] is False


def test_generate_rejects_unknown_options(tmp_path):
    with pytest.raises(TypeError):
        synthesize("xr-hand", 1, 1, Path(tmp_path), {"acquisition": "detector", "colour": True})
