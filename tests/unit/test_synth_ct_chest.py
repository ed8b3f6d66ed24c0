"""The ct-chest generator: headers, geometry, truth against pixels, determinism.

Small studies (128-160 matrix, 2.5 mm, a limited slice count) keep this file
to a few seconds.
"""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path

import numpy as np
import pydicom
import pytest

from radtriage.synth import ct_chest
from radtriage.synth.dicom import CT_IMAGE_STORAGE
from radtriage.synth.run import generator

SMALL = dict(matrix=128, slice_spacing=2.5, n_slices=56)
SEED = 20260
# what a nodule of each type reads at its centre (mean HU inside half its radius)
HU_RANGE = {
    "solid": (-80.0, 130.0),
    "calcified": (180.0, 1200.0),
    "ground-glass": (-720.0, -320.0),
    "part-solid": (-700.0, 130.0),
}


def _read(folder: Path) -> dict[int, list[pydicom.Dataset]]:
    series: dict[int, list[pydicom.Dataset]] = defaultdict(list)
    for path in sorted(folder.glob("*.dcm")):
        ds = pydicom.dcmread(path)
        series[int(ds.SeriesNumber)].append(ds)
    for items in series.values():
        items.sort(key=lambda d: int(d.InstanceNumber))
    return series


def _volume(items: list[pydicom.Dataset]) -> np.ndarray:
    return np.stack([d.pixel_array.astype(np.float32) * float(d.RescaleSlope) + float(d.RescaleIntercept)
                     for d in items])


@pytest.fixture(scope="module")
def pair(tmp_path_factory) -> dict:
    """The same seed written twice: with three 12-18 mm nodules, and without any."""
    out = {}
    for name, n in (("pos", 3), ("neg", 0)):
        folder = tmp_path_factory.mktemp(name)
        truth = ct_chest.generate(np.random.default_rng(SEED), 3, folder, n_nodules=n, diameter_mm=(12.0, 18.0),
                                  kernel="soft", **{**SMALL, "matrix": 160})
        json.dumps(truth)  # JSON-able
        out[name] = (folder, truth, _read(folder))
    return out


def test_registered_as_ct_chest():
    assert generator("ct-chest") is ct_chest.generate


def test_headers_valid(pair):
    folder, truth, series = pair["pos"]
    files = list(folder.glob("*.dcm"))
    assert sorted(series) == [1, 2, 3]
    assert truth["main_series_number"] == 2
    sop_uids = set()
    study_uids = set()
    for ds in (d for items in series.values() for d in items):
        for kw in ("SOPClassUID", "SOPInstanceUID", "StudyInstanceUID", "SeriesInstanceUID", "Modality",
                   "PatientName", "PatientID", "PatientBirthDate", "PatientAge", "PatientSex", "StudyDate",
                   "StudyTime", "StudyDescription", "SeriesDescription", "Manufacturer", "ManufacturerModelName",
                   "BodyPartExamined", "ImageType", "ImagePositionPatient", "ImageOrientationPatient",
                   "PixelSpacing", "SliceThickness", "RescaleSlope", "RescaleIntercept", "WindowCenter",
                   "WindowWidth", "KVP", "CTDIvol", "ConvolutionKernel", "FrameOfReferenceUID"):
            assert kw in ds and ds.data_element(kw).value not in (None, ""), kw
        assert ds.SOPClassUID == CT_IMAGE_STORAGE
        assert ds.file_meta.MediaStorageSOPInstanceUID == ds.SOPInstanceUID
        assert ds.Modality == "CT"
        assert str(ds.PatientName).startswith("SYNTHETIC^")
        assert "SYNTHETIC" in ds.ImageComments
        assert ds.BodyPartExamined == "CHEST"
        assert ds.StudyDescription == truth["study_description"]
        assert ds.pixel_array.shape == (ds.Rows, ds.Columns)
        sop_uids.add(ds.SOPInstanceUID)
        study_uids.add(ds.StudyInstanceUID)
    assert len(sop_uids) == len(files)
    assert len(study_uids) == 1
    loc = series[1]
    assert len(loc) == 1 and "LOCALIZER" in loc[0].ImageType
    assert [float(v) for v in loc[0].ImageOrientationPatient] == [1, 0, 0, 0, 0, -1]
    for ds in series[2] + series[3]:
        assert list(ds.ImageType)[:2] == ["ORIGINAL", "PRIMARY"]
        assert float(ds.CTDIvol) == pytest.approx(truth["ctdi_vol_mgy"], abs=0.01)
    assert {d.SeriesDescription for d in series[2]} == {truth["series"][1]["description"]}


def test_geometry_consistent(pair):
    _, truth, series = pair["pos"]
    uids = {}
    for number in (2, 3):
        items = series[number]
        assert [int(d.InstanceNumber) for d in items] == list(range(1, len(items) + 1))
        assert len({d.SeriesInstanceUID for d in items}) == 1
        assert len({d.FrameOfReferenceUID for d in items}) == 1
        uids[number] = items[0].SeriesInstanceUID
        pos = np.array([[float(v) for v in d.ImagePositionPatient] for d in items])
        step = float(items[0].SpacingBetweenSlices)
        assert np.allclose(np.diff(pos[:, 2]), step, atol=1e-3)
        assert np.allclose(pos[:, :2], pos[0, :2])
        for d in items:
            assert [float(v) for v in d.ImageOrientationPatient] == [1, 0, 0, 0, 1, 0]
            assert float(d.SliceThickness) >= step - 1e-6
    assert len(set(uids.values()) | {series[1][0].SeriesInstanceUID}) == 3
    main = series[2]
    assert len(main) == truth["n_slices"] == SMALL["n_slices"]
    assert float(main[0].SpacingBetweenSlices) == pytest.approx(truth["slice_spacing_mm"])
    assert (main[0].Rows, main[0].Columns) == (160, 160)
    assert [float(v) for v in main[0].PixelSpacing] == pytest.approx([truth["pixel_spacing_mm"]] * 2, abs=1e-4)
    thick = series[3]
    assert float(thick[0].SliceThickness) == pytest.approx(2 * truth["slice_spacing_mm"])
    # the truth's voxel and patient coordinates agree with the written geometry
    origin = np.array([float(v) for v in main[0].ImagePositionPatient])
    px = float(main[0].PixelSpacing[0])
    dz = float(main[0].SpacingBetweenSlices)
    assert truth["nodules"]
    for n in truth["nodules"]:
        k, i, j = n["centre_voxel_zyx"]
        assert n["centre_mm"] == pytest.approx([origin[0] + j * px, origin[1] + i * px, origin[2] + k * dz], abs=0.05)


def _sphere_stats(vol: np.ndarray, centre, r_mm: float, r_out: float | None, spacing) -> np.ndarray:
    k, i, j = np.ogrid[: vol.shape[0], : vol.shape[1], : vol.shape[2]]
    d = np.sqrt(((k - centre[0]) * spacing[0]) ** 2 + ((i - centre[1]) * spacing[1]) ** 2
                + ((j - centre[2]) * spacing[2]) ** 2)
    sel = d <= r_mm if r_out is None else (d >= r_mm) & (d <= r_out)
    return vol[sel]


def test_truth_matches_pixels(pair):
    _, truth, series = pair["pos"]
    _, truth_neg, series_neg = pair["neg"]
    vol, neg = _volume(series[2]), _volume(series_neg[2])
    assert vol.shape == neg.shape
    spacing = (truth["slice_spacing_mm"], truth["pixel_spacing_mm"], truth["pixel_spacing_mm"])
    assert truth["positive"] and truth["n_nodules"] == 3 == len(truth["nodules"])
    assert not truth_neg["positive"] and truth_neg["nodules"] == []
    lung_hu = []
    for n in truth["nodules"]:
        assert 12.0 <= n["diameter_mm"] <= 18.0
        assert n["type"] in ct_chest.NODULE_TYPES
        r = n["diameter_mm"] / 2
        assert n["volume_mm3"] >= 0.9 * 4 / 3 * np.pi * r ** 3
        c = n["centre_voxel_zyx"]
        inner = _sphere_stats(vol, c, 0.5 * r, None, spacing)
        shell = _sphere_stats(vol, c, 1.6 * r, 2.4 * r, spacing)
        lo, hi = HU_RANGE[n["type"]]
        assert lo <= inner.mean() <= hi, (n["type"], inner.mean())
        assert np.percentile(shell, 25) < -650  # lung around it (a juxtapleural one touches the wall)
        assert inner.mean() - np.median(shell) > 250
        # the study drawn without nodules has plain lung there (same anatomy, same noise)
        absent = _sphere_stats(neg, c, 0.5 * r, None, spacing)
        assert absent.mean() < -600, absent.mean()
        lung_hu.append(absent.mean())
        zs = n["slices"]
        assert 0 <= zs[0] <= c[0] <= zs[1] < truth["n_slices"]
    # outside the nodules the two studies are the same pixels
    far = np.ones(vol.shape, bool)
    for n in truth["nodules"]:
        reach = 1.5 * n["diameter_mm"] / 2 / spacing[0] + 3
        k = n["centre_voxel_zyx"][0]
        far[max(0, int(k - reach)): int(k + reach) + 1] = False
    assert far.any() and np.array_equal(vol[far], neg[far])


def test_lung_and_body_values():
    s = ct_chest.sample(np.random.default_rng(4), n_nodules=0, **SMALL)
    hu = s.hu
    assert hu.dtype == np.int16 and hu.shape == (SMALL["n_slices"], 128, 128)
    mid = hu[hu.shape[0] // 2].astype(float)
    assert np.median(mid[:4]) < -900  # air in front of the patient
    centre = mid[32:96, 32:96]  # inside the chest
    lung = centre[centre < -600]
    assert lung.size > 0.25 * centre.size  # the lungs fill a good part of a mid-chest slice
    assert -900 < np.median(lung) < -790
    assert (mid > 400).sum() > 20  # ribs and spine
    assert ((mid > -150) & (mid < -60)).sum() > 100  # fat


def test_nodule_options():
    s = ct_chest.sample(np.random.default_rng(11), n_nodules=2, nodule_types=("calcified",), diameter_mm=(5, 8),
                        **SMALL)
    assert [n["type"] for n in s.truth["nodules"]] == ["calcified", "calcified"]
    assert all(5 <= n["diameter_mm"] <= 8 for n in s.truth["nodules"])
    neg = ct_chest.sample(np.random.default_rng(11), positive=False, matrix=64, slice_spacing=2.5, n_slices=24)
    assert neg.truth["n_nodules"] == 0 and not neg.truth["positive"]
    with pytest.raises(ValueError):
        ct_chest.sample(np.random.default_rng(1), nodule_types=("cavitary",), matrix=32, n_slices=4)


def test_deterministic_for_a_seed():
    opts = dict(matrix=64, slice_spacing=2.5, n_slices=32, positive=True)
    a = ct_chest.sample(np.random.default_rng(7), **opts)
    b = ct_chest.sample(np.random.default_rng(7), **opts)
    c = ct_chest.sample(np.random.default_rng(8), **opts)
    assert np.array_equal(a.hu, b.hu)
    assert a.truth == b.truth
    assert a.spacing == b.spacing and a.origin == b.origin
    assert a.truth != c.truth
    assert a.hu.shape != c.hu.shape or not np.array_equal(a.hu, c.hu)
