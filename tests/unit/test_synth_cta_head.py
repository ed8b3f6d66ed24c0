"""The cta-head generator: valid headers, consistent geometry, truth that matches the pixels, determinism."""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path

import numpy as np
import pydicom
import pytest
from scipy import ndimage

from radtriage.synth import cta_head
from radtriage.synth.run import synthesize

CT_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.2"
SMALL = {"matrix": 192, "slice_thickness": 1.25, "slice_spacing": 1.25, "coverage_mm": 60.0}
CT_REQUIRED = (
    "SOPClassUID", "SOPInstanceUID", "StudyInstanceUID", "SeriesInstanceUID", "Modality", "PatientName",
    "PatientID", "PatientBirthDate", "PatientSex", "PatientAge", "StudyDate", "StudyTime", "StudyDescription",
    "SeriesDescription", "SeriesNumber", "InstanceNumber", "ImageType", "BodyPartExamined", "Manufacturer",
    "ManufacturerModelName", "ImagePositionPatient", "ImageOrientationPatient", "PixelSpacing", "SliceThickness",
    "RescaleSlope", "RescaleIntercept", "WindowCenter", "WindowWidth", "KVP", "CTDIvol", "FrameOfReferenceUID",
    "Rows", "Columns", "ImageComments",
)


def _read_study(folder: Path) -> dict[int, list[pydicom.Dataset]]:
    series: dict[int, list[pydicom.Dataset]] = defaultdict(list)
    for path in sorted(folder.glob("*.dcm")):
        ds = pydicom.dcmread(path)
        series[int(ds.SeriesNumber)].append(ds)
    return {n: sorted(items, key=lambda d: int(d.InstanceNumber)) for n, items in series.items()}


def _hu(datasets: list[pydicom.Dataset]) -> np.ndarray:
    return np.stack([d.pixel_array * float(d.RescaleSlope) + float(d.RescaleIntercept) for d in datasets])


def _at(hu: np.ndarray, point: dict) -> float:
    """HU at a truth point, interpolated at its (k, j, i) voxel coordinate."""
    return float(ndimage.map_coordinates(hu.astype(np.float32), np.array(point["voxel"], float)[:, None], order=1)[0])


@pytest.fixture(scope="module")
def studies(tmp_path_factory) -> dict[str, tuple[dict, dict[int, list[pydicom.Dataset]]]]:
    root = tmp_path_factory.mktemp("cta")
    out = {}
    for name, seed, options in (
        ("left_m1", 11, {"lvo": True, "segment": "m1", "side": "left"}),
        ("right_ica_t", 12, {"lvo": True, "segment": "ica_t", "side": "right"}),
        ("negative", 13, {"lvo": False}),
    ):
        truth = cta_head.generate(np.random.default_rng(seed), seed, root / name, **options, **SMALL)
        json.dumps(truth)  # JSON-able
        out[name] = (truth, _read_study(root / name))
    return out


def test_headers_valid(studies):
    for truth, series in studies.values():
        study_uids = set()
        for number, datasets in series.items():
            for ds in datasets:
                for keyword in CT_REQUIRED:
                    assert keyword in ds, f"series {number} lacks {keyword}"
                assert ds.SOPClassUID == CT_IMAGE_STORAGE and ds.Modality == "CT"
                assert ds.file_meta.MediaStorageSOPInstanceUID == ds.SOPInstanceUID
                assert str(ds.PatientName).startswith("SYNTHETIC^")
                assert "SYNTHETIC" in ds.ImageComments
                assert ds.BodyPartExamined == "HEAD"
                study_uids.add(ds.StudyInstanceUID)
                if "LOCALIZER" not in ds.ImageType:
                    assert ds.ContrastBolusAgent, "a CTA series says its contrast agent"
                    assert float(ds.CTDIvol) > 10
        assert len(study_uids) == 1
        roles = {s["role"]: s["number"] for s in truth["series"]}
        assert set(roles) >= {"localizer", "main", "mip"} and roles["main"] == truth["main_series_number"]
        assert set(series) == {s["number"] for s in truth["series"]}
        assert list(series[roles["localizer"]][0].ImageType) == ["ORIGINAL", "PRIMARY", "LOCALIZER"]
        assert list(series[roles["main"]][0].ImageType) == ["ORIGINAL", "PRIMARY", "AXIAL"]
        assert list(series[roles["mip"]][0].ImageType)[:2] == ["DERIVED", "SECONDARY"]


def test_geometry_consistent(studies):
    for truth, series in studies.values():
        series_uids = set()
        for number, datasets in series.items():
            uids = {d.SeriesInstanceUID for d in datasets}
            assert len(uids) == 1 and not (uids & series_uids), "one UID per series, unique in the study"
            series_uids |= uids
            assert [int(d.InstanceNumber) for d in datasets] == list(range(1, len(datasets) + 1))
            assert len({d.SOPInstanceUID for d in datasets}) == len(datasets)
            if "LOCALIZER" in datasets[0].ImageType:
                assert [float(x) for x in datasets[0].ImageOrientationPatient] == [0, 1, 0, 0, 0, -1]
                continue
            pos = np.array([[float(x) for x in d.ImagePositionPatient] for d in datasets])
            assert np.allclose(pos[:, :2], pos[0, :2]), "slices stack straight along z"
            if len(datasets) > 1:
                assert np.allclose(np.diff(pos[:, 2]), float(datasets[0].SpacingBetweenSlices), atol=2e-3)
            assert all([float(x) for x in d.ImageOrientationPatient] == [1, 0, 0, 0, 1, 0] for d in datasets)
        main = series[truth["main_series_number"]]
        assert [len(main), int(main[0].Rows), int(main[0].Columns)] == truth["shape"] == [49, 192, 192]
        assert np.allclose([float(main[0].SpacingBetweenSlices), *map(float, main[0].PixelSpacing)],
                           truth["spacing_mm"], atol=1e-5)
        assert float(main[0].SliceThickness) == truth["slice_thickness_mm"] == 1.25
        assert np.allclose([float(x) for x in main[0].ImagePositionPatient], truth["origin_mm"], atol=1e-3)
        mip = series[next(s["number"] for s in truth["series"] if s["role"] == "mip")]
        assert float(mip[0].SliceThickness) > 5 and len(mip) < len(main)


@pytest.mark.parametrize("name", ["left_m1", "right_ica_t"])
def test_occlusion_is_where_truth_says(studies, name):
    truth, series = studies[name]
    hu = _hu(series[truth["main_series_number"]])
    side, other = truth["side"], "left" if truth["side"] == "right" else "right"
    lm = truth["landmarks"]
    assert truth["lvo"] is True and truth["segment"] == name.split("_", 1)[1] and side == name.split("_")[0]
    # the contrast column stops: bright just before the thrombus, soft-tissue density inside it
    assert _at(hu, truth["patent_point"]) > 180
    assert _at(hu, truth["clot_point"]) < 100
    assert 40 <= truth["clot_hu"] <= 70
    # the same segment on the other side is opacified, the ipsilateral M2s are not
    assert _at(hu, lm[f"m1_mid_{other}"]) > 200
    for div in ("superior", "inferior"):
        assert _at(hu, lm[f"m2_{div}_proximal_{other}"]) > 120
        assert _at(hu, lm[f"m2_{div}_proximal_{side}"]) < 100
    # radiological convention: patient left is +x (image right)
    mid_x, mid_i = lm["basilar_tip"]["mm"][0], lm["basilar_tip"]["voxel"][2]
    sign = 1 if side == "left" else -1
    assert sign * (truth["occlusion_point"]["mm"][0] - mid_x) > 5
    assert sign * (truth["occlusion_point"]["voxel"][2] - mid_i) > 5
    assert any(v.startswith(side) for v in truth["affected_vessels"])
    assert not any(v.startswith(other) for v in truth["affected_vessels"])


def test_negative_has_open_vessels_and_plausible_tissue(studies):
    truth, series = studies["negative"]
    hu = _hu(series[truth["main_series_number"]])
    assert truth["lvo"] is False and truth["side"] is None and truth["segment"] is None
    assert truth["occlusion_point"] is None and truth["affected_vessels"] == []
    lm = truth["landmarks"]
    for side in ("left", "right"):
        assert _at(hu, lm[f"ica_t_{side}"]) > 200
        assert _at(hu, lm[f"m1_mid_{side}"]) > 200
        for div in ("superior", "inferior"):
            assert _at(hu, lm[f"m2_{div}_proximal_{side}"]) > 120
    assert 250 <= truth["arterial_hu"] <= 470
    assert hu.min() >= -1024 and hu.max() > 1000, "air outside, skull inside"
    # brain parenchyma well above the circle of Willis, around the ventricles: ~25-45 HU
    k, j, i = (int(round(x)) for x in lm["acomm"]["voxel"])
    top = hu[-6:, j - 30:j + 30, i - 30:i + 30]
    assert 15 < float(np.median(top)) < 50
    assert float(np.mean(hu[:, :5, :5])) < -900


def test_sample_is_deterministic():
    a = cta_head.sample(np.random.default_rng(5), **SMALL)
    b = cta_head.sample(np.random.default_rng(5), **SMALL)
    c = cta_head.sample(np.random.default_rng(6), **SMALL)
    assert a.hu.dtype == np.int16 and a.hu.shape == tuple(a.truth["shape"])
    assert np.array_equal(a.hu, b.hu) and a.truth == b.truth
    assert a.spacing == b.spacing and a.origin == b.origin
    assert c.hu.shape != a.hu.shape or not np.array_equal(a.hu, c.hu)
    assert c.truth != a.truth


def test_occlusion_changes_only_the_occluded_territory():
    """Same seed with and without the lesion: identical noise and anatomy except along the occluded vessels."""
    pos = cta_head.sample(np.random.default_rng(21), lvo=True, side="right", segment="ica_t", **SMALL)
    neg = cta_head.sample(np.random.default_rng(21), lvo=False, **SMALL)
    assert pos.truth["lvo"] and not neg.truth["lvo"]
    diff = np.argwhere(pos.hu != neg.hu)
    assert 0 < len(diff) < 0.01 * pos.hu.size
    x = pos.origin[0] + diff[:, 2] * pos.spacing[2]
    mid_x = pos.truth["landmarks"]["basilar_tip"]["mm"][0]
    assert (x < mid_x + 5).all(), "a right-sided occlusion changes only the right side"
    k, j, i = np.round(pos.truth["occlusion_point"]["voxel"]).astype(int)
    near = np.abs(diff - [k, j, i]).max(axis=1) <= 3
    assert near.any(), "the change starts at the occlusion point"


def test_forced_options_and_validation():
    s = cta_head.sample(np.random.default_rng(3), lvo=True, segment="m2", division="inferior", side="left",
                        matrix=96, slice_thickness=2.0, coverage_mm=50)
    assert (s.truth["segment"], s.truth["m2_division"], s.truth["side"]) == ("m2", "inferior", "left")
    assert s.hu.shape == (26, 96, 96) and s.spacing[0] == 2.0 and s.slice_thickness == 2.0
    with pytest.raises(ValueError):
        cta_head.sample(np.random.default_rng(3), side="up")
    with pytest.raises(ValueError):
        cta_head.sample(np.random.default_rng(3), segment="m3")


def test_synthesize_writes_truth(tmp_path):
    folders = synthesize("cta-head", 1, 4, tmp_path)
    truth = json.loads((folders[0] / "truth.json").read_text())
    assert truth["kind"] == "cta-head" and truth["synthetic"] is True
    main = [p for p in folders[0].glob(f"{truth['main_series_number']:03d}_*.dcm")]
    assert len(main) == truth["shape"][0]
    ds = pydicom.dcmread(main[0], stop_before_pixels=True)
    assert int(ds.Rows) == 512 and 0.625 <= float(ds.SliceThickness) <= 1.25
