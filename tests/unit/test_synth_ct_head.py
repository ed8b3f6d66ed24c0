"""The synthetic CT head generator: headers, geometry, truth against pixels, determinism."""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.pixels import apply_modality_lut

from radtriage.synth import ct_head
from radtriage.synth.run import generator

SMALL = dict(matrix=128, slice_thickness=5.0)
# density range the truth states per subtype (HU), as the module docstring gives it
STATED = {"intraparenchymal": (55, 85), "intraventricular": (50, 80), "subdural": (50, 80),
          "epidural": (60, 90), "subarachnoid": (45, 70)}
CT_REQUIRED = ("SOPClassUID", "SOPInstanceUID", "StudyInstanceUID", "SeriesInstanceUID", "Modality",
               "PatientName", "ImageComments", "ImagePositionPatient", "ImageOrientationPatient",
               "PixelSpacing", "SliceThickness", "RescaleSlope", "RescaleIntercept", "WindowCenter",
               "WindowWidth", "KVP", "CTDIvol", "ImageType", "ConvolutionKernel", "SeriesNumber",
               "InstanceNumber", "StudyDescription", "SeriesDescription", "BodyPartExamined", "PatientAge",
               "FrameOfReferenceUID", "Manufacturer", "ManufacturerModelName", "StudyDate", "StudyTime")


def _read_study(folder: Path) -> dict[int, list[pydicom.Dataset]]:
    series: dict[int, list[pydicom.Dataset]] = defaultdict(list)
    for path in sorted(folder.glob("*.dcm")):
        ds = pydicom.dcmread(path)
        series[int(ds.SeriesNumber)].append(ds)
    return {k: sorted(v, key=lambda d: int(d.InstanceNumber)) for k, v in series.items()}


def _volume_hu(datasets: list[pydicom.Dataset]) -> np.ndarray:
    ordered = sorted(datasets, key=lambda d: float(d.ImagePositionPatient[2]))
    return np.stack([apply_modality_lut(d.pixel_array, d) for d in ordered]).astype(np.float32)


@pytest.fixture(scope="module")
def written(tmp_path_factory):
    """One positive (intraparenchymal) and one negative study from the same seed, small matrix."""
    root = tmp_path_factory.mktemp("ct_head")
    out = {}
    for name, kw in (("positive", dict(subtypes=["intraparenchymal"])), ("negative", dict(positive=False))):
        folder = root / name
        truth = ct_head.generate(np.random.default_rng([7, 1]), 1, folder, matrix=128, **kw)
        out[name] = (folder, truth, _read_study(folder))
    return out


def test_registered_as_ct_head():
    assert generator("ct-head") is ct_head.generate


def test_headers_valid(written):
    for folder, truth, series in written.values():
        json.dumps(truth)  # the truth must be JSON-able
        assert sorted(series) == [1, 2, 3]
        for number, datasets in series.items():
            for ds in datasets:
                missing = [k for k in CT_REQUIRED if k not in ds]
                assert not missing, (number, missing)
                assert ds.Modality == "CT"
                assert ds.SOPClassUID == "1.2.840.10008.5.1.4.1.1.2"
                assert ds.file_meta.MediaStorageSOPInstanceUID == ds.SOPInstanceUID
                assert str(ds.PatientName).startswith("SYNTHETIC^")
                assert "SYNTHETIC" in ds.ImageComments
                assert float(ds.KVP) in (100.0, 120.0, 140.0)
                assert ds.BodyPartExamined == "HEAD"
        localizer, main, bone = series[1], series[2], series[3]
        assert len(localizer) == 1 and list(localizer[0].ImageType) == ["ORIGINAL", "PRIMARY", "LOCALIZER"]
        assert [float(v) for v in localizer[0].ImageOrientationPatient] == [0, 1, 0, 0, 0, -1]
        assert truth["main_series_number"] == 2
        roles = {s["number"]: s["role"] for s in truth["series"]}
        assert roles == {1: "localizer", 2: "main", 3: "bone"}
        assert "AXIAL" in main[0].ImageType and main[0].ConvolutionKernel != bone[0].ConvolutionKernel
        assert float(bone[0].WindowWidth) >= 1000 > float(main[0].WindowWidth)
        assert 30 <= float(main[0].CTDIvol) <= 70 and float(localizer[0].CTDIvol) < 1
        assert len({d.StudyInstanceUID for s in series.values() for d in s}) == 1
        sops = [d.SOPInstanceUID for s in series.values() for d in s]
        assert len(set(sops)) == len(sops)


def test_geometry_consistent(written):
    for folder, truth, series in written.values():
        for number, datasets in series.items():
            assert len({d.SeriesInstanceUID for d in datasets}) == 1
            assert [int(d.InstanceNumber) for d in datasets] == list(range(1, len(datasets) + 1))
        uids = {series[n][0].SeriesInstanceUID for n in series}
        assert len(uids) == 3
        main, bone = series[2], series[3]
        assert len(main) == truth["n_slices"] == len(bone)
        z = np.array([float(d.ImagePositionPatient[2]) for d in main])
        step = np.diff(z)
        assert np.allclose(step, float(main[0].SpacingBetweenSlices), atol=1e-3)
        assert np.allclose(step, truth["slice_thickness_mm"], atol=1e-3)
        assert float(main[0].SliceThickness) == pytest.approx(truth["slice_thickness_mm"])
        for d in main:
            assert [float(v) for v in d.ImageOrientationPatient] == [1, 0, 0, 0, 1, 0]
            assert list(map(float, d.ImagePositionPatient[:2])) == list(map(float, main[0].ImagePositionPatient[:2]))
            assert [float(v) for v in d.PixelSpacing] == pytest.approx([truth["pixel_spacing_mm"]] * 2, abs=1e-5)
            assert (d.Rows, d.Columns) == (128, 128)
        # the bone-kernel twin: same slices, same frame of reference
        positions = [[list(map(float, d.ImagePositionPatient)) for d in s] for s in (main, bone)]
        assert positions[0] == positions[1]
        assert {d.FrameOfReferenceUID for s in series.values() for d in s} == {main[0].FrameOfReferenceUID}
        # the localizer's lateral view spans the axial range
        loc = series[1][0]
        top = float(loc.ImagePositionPatient[2])
        bottom = top - (int(loc.Rows) - 1) * float(loc.PixelSpacing[0])
        assert bottom < z.min() and top > z.max()


def test_truth_matches_written_pixels(written):
    folder, truth, series = written["positive"]
    hu = _volume_hu(series[2])
    assert truth["present"] and truth["subtypes"] == ["intraparenchymal"]
    (bleed,) = truth["haemorrhages"]
    lo, hi = STATED["intraparenchymal"]
    assert lo <= bleed["density_hu"] <= hi and bleed["volume_ml"] > 0.5
    z, y, x = bleed["centre_voxel"]
    assert z in bleed["slices"] and truth["slice_labels"]["any"] == bleed["slices"]
    core = hu[z, y - 1:y + 2, x - 1:x + 2]
    assert lo - 15 <= float(np.median(core)) <= hi + 10
    # centre in mm is the centre voxel's patient position
    first = series[2][0]
    px = float(first.PixelSpacing[0])
    expect = [float(first.ImagePositionPatient[0]) + x * px, float(first.ImagePositionPatient[1]) + y * px,
              float(series[2][z].ImagePositionPatient[2])]
    assert bleed["centre_mm"] == pytest.approx(expect, abs=0.02)
    # the same seed without the haemorrhage: brain there, and no blood anywhere inside the head
    nfolder, ntruth, nseries = written["negative"]
    assert not ntruth["present"] and ntruth["haemorrhages"] == [] and ntruth["slice_labels"]["any"] == []
    nhu = _volume_hu(nseries[2])
    assert 10 <= float(np.median(nhu[z, y - 1:y + 2, x - 1:x + 2])) <= 45
    blood_like = (hu > 55) & (hu < 90)
    assert blood_like[z, y - 2:y + 3, x - 2:x + 3].mean() > 0.5
    assert (nhu[z] > 55)[y - 2:y + 3, x - 2:x + 3].mean() < 0.2


TWIN_SEED = 100


@pytest.fixture(scope="module")
def twins():
    """Samples of one seed: without haemorrhage, and with each subtype (computed once, when asked for)."""
    cache: dict[str, ct_head.CtHeadSample] = {}

    def get(subtype: str | None) -> ct_head.CtHeadSample:
        key = subtype or "none"
        if key not in cache:
            kw = dict(subtypes=[subtype]) if subtype else dict(positive=False)
            cache[key] = ct_head.sample(np.random.default_rng(TWIN_SEED), **kw, **SMALL)
        return cache[key]

    return get


@pytest.mark.parametrize("subtype", ct_head.SUBTYPES)
def test_each_subtype_where_truth_says(twins, subtype):
    pos, neg = twins(subtype), twins(None)
    (bleed,) = pos.truth["haemorrhages"]
    assert bleed["subtype"] == subtype and pos.truth["subtypes"] == [subtype]
    code = ct_head.SUBTYPE_CODE[subtype]
    mask = pos.labels == code
    assert mask.any() and not neg.labels.any()
    assert pos.labels[tuple(bleed["centre_voxel"])] == code
    voxel_ml = pos.spacing[0] * pos.spacing[1] * pos.spacing[2] / 1000
    labelled_ml = mask.sum(axis=(1, 2)) * voxel_ml
    assert set(np.flatnonzero(labelled_ml >= ct_head.SLICE_MIN_ML).tolist()) <= set(bleed["slices"])
    changed = (pos.hu != neg.hu).any(axis=(1, 2))
    assert all(changed[k] for k in bleed["slices"]) and bleed["centre_voxel"][0] in bleed["slices"]
    lo, hi = STATED[subtype]
    assert lo <= bleed["density_hu"] <= hi
    # partial volume (with bone beside extra-axial blood) and noise spread the values, but the bulk of
    # the blood sits in its range and well above what was there before
    inside, before = np.median(pos.hu[mask]), np.median(neg.hu[mask])
    assert lo - 12 <= inside <= hi + 5, inside
    assert inside - before > 15 and before < 40
    assert 0.05 < bleed["volume_ml"] < 250
    if subtype in ("subdural", "epidural"):
        assert bleed["max_thickness_mm"] > 2


def test_positive_and_negative_twins_differ_only_at_the_blood(twins):
    """Forcing a haemorrhage changes the blood (and its mass effect), not the noise or anatomy elsewhere."""
    pos, neg = twins("intraventricular"), twins(None)
    assert pos.hu.shape == neg.hu.shape and pos.spacing == neg.spacing and pos.origin == neg.origin
    diff = pos.hu != neg.hu
    near = np.zeros_like(diff)
    zz, yy, xx = np.nonzero(pos.labels)
    near[max(zz.min() - 1, 0):zz.max() + 2, yy.min() - 4:yy.max() + 5, xx.min() - 4:xx.max() + 5] = True
    assert diff.any() and not (diff & ~near).any()


def test_deterministic_for_a_seed():
    a = ct_head.sample(np.random.default_rng(11), matrix=96, slice_thickness=5.0, positive=True)
    b = ct_head.sample(np.random.default_rng(11), matrix=96, slice_thickness=5.0, positive=True)
    c = ct_head.sample(np.random.default_rng(12), matrix=96, slice_thickness=5.0, positive=True)
    assert np.array_equal(a.hu, b.hu) and np.array_equal(a.labels, b.labels)
    assert json.dumps(a.truth, sort_keys=True) == json.dumps(b.truth, sort_keys=True)
    assert a.hu.shape != c.hu.shape or not np.array_equal(a.hu, c.hu)
    assert json.dumps(a.truth, sort_keys=True) != json.dumps(c.truth, sort_keys=True)


def test_realistic_tissue_values():
    s = ct_head.sample(np.random.default_rng(21), positive=False, matrix=128)
    hu = s.hu.astype(float)
    assert s.hu.dtype == np.int16 and hu.min() >= -1024 and hu.max() <= 3071
    corner = hu[:, :6, :6]
    assert corner.mean() < -990  # air / outside the reconstruction circle
    assert (hu > 700).mean() > 0.004  # the skull
    mid = hu[s.hu.shape[0] * 3 // 5]
    brain = mid[(mid > 15) & (mid < 50)]
    assert brain.size > 1500 and 24 <= np.median(brain) <= 40
    assert 2 <= s.truth["noise_sd_hu"] <= 10
    assert 20 <= s.hu.shape[0] <= 70 and s.truth["n_slices"] == s.hu.shape[0]


def test_about_half_positive_by_default():
    an = ct_head._draw_anatomy(np.random.default_rng(0), 60.0)
    rng = np.random.default_rng(0)
    draws = [ct_head._draw_bleeds(rng, an, None, None, 0.5) for _ in range(400)]
    share = np.mean([bool(d) for d in draws])
    assert 0.42 < share < 0.58
    kinds = {b.subtype for d in draws for b in d}
    assert kinds == set(ct_head.SUBTYPES)


def test_options_are_checked():
    with pytest.raises(ValueError):
        ct_head.sample(np.random.default_rng(0), subtypes=["chronic"], **SMALL)
    with pytest.raises(ValueError):
        ct_head.sample(np.random.default_rng(0), positive=False, subtypes=["subdural"], **SMALL)
