"""The xr-hand generator: headers, geometry, truth against pixels, determinism."""

from __future__ import annotations

import datetime as dt
from dataclasses import replace
from pathlib import Path

import numpy as np
import pydicom
import pytest

from radtriage.synth import xr_hand

SIZE = 384  # training-size images keep these tests fast


def _value(img: np.ndarray, px, r: int = 1) -> float:
    i, j = int(round(px[0])), int(round(px[1]))
    return float(img[i - r: i + r + 1, j - r: j + r + 1].mean())


def _physis_dip(img: np.ndarray, truth: dict, name: str, spacing: float) -> float:
    """How much darker the physis is than the bone either side (0 or less: no gap)."""
    phys = truth["physes"][name]
    p, axis = np.array(phys["px"]), np.array(phys["axis_px"])
    meta = _value(img, p + axis * (3.0 / spacing))
    epi = _value(img, truth["centres"][name]["px"])
    return min(meta, epi) - _value(img, p)


def _forced(monkeypatch, **fixed):
    """Make generate() draw a child with the given bone age (or z)."""
    original = xr_hand.draw_subject
    monkeypatch.setattr(xr_hand, "draw_subject", lambda rng, **kw: original(rng, **{**kw, **fixed}))


def _read_study(folder: Path) -> list[pydicom.Dataset]:
    files = sorted(folder.glob("*.dcm"))
    assert files, "no DICOM written"
    return [pydicom.dcmread(f) for f in files]


def _main_image(datasets, truth) -> tuple[np.ndarray, float]:
    """The main series as 'attenuation up' in [0, 1] (MONOCHROME1 undone)."""
    (ds,) = [d for d in datasets if d.SeriesNumber == truth["main_series_number"]]
    raw = ds.pixel_array.astype(np.float32) / (2 ** ds.BitsStored - 1)
    if ds.PhotometricInterpretation == "MONOCHROME1":
        raw = 1.0 - raw
    spacing = ds.get("PixelSpacing") or ds.get("ImagerPixelSpacing")
    return raw, float(spacing[0])


# ----------------------------------------------------------------------------- determinism


def test_sample_is_deterministic_for_a_seed():
    a = xr_hand.sample(np.random.default_rng(11), size=SIZE)
    b = xr_hand.sample(np.random.default_rng(11), size=SIZE)
    c = xr_hand.sample(np.random.default_rng(12), size=SIZE)
    assert np.array_equal(a.image, b.image) and a.truth == b.truth
    assert a.pixel_spacing == b.pixel_spacing
    assert not np.array_equal(a.image, c.image)
    assert a.truth["bone_age_months"] != c.truth["bone_age_months"]


def test_sample_shapes_and_range():
    small = xr_hand.sample(np.random.default_rng(1), size=256, age_months=100)
    assert small.image.shape == (256, 256) and small.image.dtype == np.float32
    assert 0.0 <= small.image.min() and small.image.max() <= 1.0
    native = xr_hand.sample(np.random.default_rng(1), age_months=2, pixel_spacing=0.143)
    rows, cols = native.image.shape
    assert native.pixel_spacing == pytest.approx(0.143)
    assert 900 <= rows <= 3000 and cols < rows
    assert native.truth["image_shape"] == [rows, cols]
    # same child and geometry whatever the matrix: only the resolution changes
    assert small.truth["bone_age_months"] == xr_hand.sample(np.random.default_rng(1), age_months=100).truth[
        "bone_age_months"]


# ----------------------------------------------------------------------------- the maturity model


def test_bone_age_varies_about_chronological_age():
    rng = np.random.default_rng(5)
    subjects = [xr_hand.draw_subject(rng, age_months=120.0) for _ in range(600)]
    z = np.array([s.bone_age_z for s in subjects])
    assert 0.9 < z.std() < 1.4 and abs(z.mean()) < 0.15
    assert 0.04 < np.mean(np.abs(z) > 2) < 0.2  # a few clearly advanced or delayed
    sd = subjects[0].bone_age_sd
    assert 9 <= sd <= 12
    forced = xr_hand.draw_subject(np.random.default_rng(1), age_months=60.0, bone_age_months=90.0)
    assert forced.bone_age_months == 90.0 and forced.bone_age_z > 2
    infant = xr_hand.draw_subject(np.random.default_rng(1), age_months=1.0, bone_age_z=-3.0)
    assert infant.bone_age_months == 0.0


def test_carpal_centres_appear_in_order_and_earlier_in_girls():
    subject = xr_hand.draw_subject(np.random.default_rng(3), sex="M")
    counts = []
    for ba in range(0, 229, 6):
        truth = xr_hand._truth(replace(subject, bone_age_months=float(ba)), *_dummy_geometry(subject))
        counts.append(truth["carpal_count"])
        present = set(truth["ossification_centres"])
        if ba == 0:
            assert not present
        if "lunate" in present:
            assert {"capitate", "hamate"} <= present
        if "pisiform" in present:
            assert truth["carpal_count"] == 8
    assert counts == sorted(counts) and counts[0] == 0 and counts[-1] == 8

    def mean_count(sex):
        rng = np.random.default_rng(9)
        got = []
        for _ in range(40):
            s = xr_hand.draw_subject(rng, sex=sex, bone_age_months=60.0)
            got.append(sum(s.bone_age_months >= s.onsets[n] for n in xr_hand.CARPAL_ORDER))
        return np.mean(got)

    assert mean_count("F") > mean_count("M") + 0.5


def _dummy_geometry(subject):
    rng = np.random.default_rng(0)
    _, _, marks = xr_hand._skeleton(subject)
    geo, info = xr_hand._make_view(rng, subject, marks, "PA", 0.14, SIZE, 1)
    return geo, marks, info, "PA"


def test_physes_open_in_children_and_fuse_in_the_teens():
    rng = np.random.default_rng(4)
    girl = xr_hand.draw_subject(rng, sex="F")
    boy = xr_hand.draw_subject(rng, sex="M")

    def statuses(subject, ba):
        truth = xr_hand._truth(replace(subject, bone_age_months=ba), *_dummy_geometry(subject))
        return {k: v["status"] for k, v in truth["physes"].items()}

    child = statuses(girl, 72.0)
    assert "fused" not in child.values() and child["radius"] == "open"
    assert set(statuses(girl, 216.0).values()) == {"fused"}
    assert set(statuses(boy, 228.0).values()) == {"fused"}
    # distal phalanges first, radius last; girls before boys
    mid_girl = statuses(girl, 178.0)
    assert mid_girl["dp3"] == "fused" and mid_girl["radius"] != "fused"
    assert statuses(boy, 178.0)["dp3"] != "fused"


# ----------------------------------------------------------------------------- truth against pixels


def test_carpal_centres_are_in_the_pixels_where_truth_says():
    checked_present = checked_absent = 0
    for seed, age in enumerate((20, 45, 75, 110, 150)):
        rng = np.random.default_rng(seed)
        subject = xr_hand.draw_subject(rng, age_months=float(age), bone_age_z=0.0)
        state = rng.bit_generator.state
        with_bones = xr_hand.render(rng, subject, size=SIZE)
        rng.bit_generator.state = state  # same geometry and noise, no ossified carpals
        without = xr_hand.render(rng, replace(subject, bone_age_months=0.0), size=SIZE)
        diff = with_bones.image - without.image
        truth = with_bones.truth
        ba = truth["bone_age_months"]
        for name in xr_hand.CARPAL_ORDER:
            centre = truth["centres"][name]
            bump = _value(diff, centre["px"])
            if centre["present"] and ba - centre["onset_months"] >= 12:
                assert bump > 0.03, (seed, name, bump)
                checked_present += 1
            elif not centre["present"] and name != "pisiform":  # the pisiform overlies the triquetrum
                assert bump < 0.015, (seed, name, bump)
                checked_absent += 1
    assert checked_present >= 12 and checked_absent >= 6


def test_physis_gap_is_visible_until_fusion():
    young = xr_hand.sample(np.random.default_rng(2), sex="F", bone_age_months=110.0, age_months=110.0, size=512)
    old = xr_hand.sample(np.random.default_rng(2), sex="F", bone_age_months=214.0, age_months=200.0, size=512)
    assert young.truth["physes"]["radius"]["status"] == "open"
    assert old.truth["physes"]["radius"]["status"] == "fused"
    for name in ("radius", "mc3", "pp3"):
        assert _physis_dip(young.image, young.truth, name, young.pixel_spacing) > 0.04, name
        assert _physis_dip(old.image, old.truth, name, old.pixel_spacing) < 0.01, name


# ----------------------------------------------------------------------------- written studies


# a toddler, a school child and a grown teenager (bone age forced; the rest drawn)
FORCED = ({"bone_age_months": 18.0}, {"bone_age_months": 100.0}, {"bone_age_months": 227.0, "sex": "M"})


@pytest.fixture(scope="module")
def written(tmp_path_factory):
    out = tmp_path_factory.mktemp("xr-hand")
    studies = []
    for i, fixed in enumerate(FORCED):
        with pytest.MonkeyPatch.context() as mp:
            _forced(mp, **fixed)
            folder = out / f"study{i}"
            studies.append((folder, xr_hand.generate(np.random.default_rng([7, i]), i, folder)))
    return studies


REQUIRED = ("SOPClassUID", "SOPInstanceUID", "StudyInstanceUID", "SeriesInstanceUID", "Modality",
            "PatientName", "PatientID", "PatientBirthDate", "PatientSex", "PatientAge", "StudyDate",
            "StudyTime", "StudyDescription", "SeriesDescription", "SeriesNumber", "InstanceNumber",
            "Manufacturer", "ManufacturerModelName", "ImageType", "BodyPartExamined", "ImageComments",
            "PhotometricInterpretation", "Rows", "Columns", "BitsStored", "KVP", "WindowCenter",
            "WindowWidth", "ImageLaterality")


def test_headers_are_valid(written):
    modalities = set()
    for folder, truth in written:
        datasets = _read_study(folder)
        assert len({d.StudyInstanceUID for d in datasets}) == 1
        assert sorted(d.SeriesNumber for d in datasets) == [s["number"] for s in truth["series"]]
        for ds in datasets:
            for keyword in REQUIRED:
                assert keyword in ds and ds.data_element(keyword).value not in (None, ""), keyword
            assert str(ds.PatientName).startswith("SYNTHETIC^")
            assert "SYNTHETIC" in ds.ImageComments
            assert ds.Modality == truth["modality"] and ds.Modality in ("CR", "DX")
            assert ds.PhotometricInterpretation == ("MONOCHROME1" if ds.Modality == "CR" else "MONOCHROME2")
            assert ("PixelSpacing" in ds) if ds.Modality == "CR" else ("ImagerPixelSpacing" in ds)
            assert ds.InstanceNumber == 1 and ds.BodyPartExamined == "HAND" and ds.ImageLaterality == "L"
            assert ds.pixel_array.shape == (ds.Rows, ds.Columns)
            assert ds.StationName.startswith(ds.Modality)
        main = [d for d in datasets if d.SeriesNumber == truth["main_series_number"]]
        assert len(main) == 1 and main[0].ViewPosition == "PA"
        # header carries chronological age; truth carries both
        birth = dt.datetime.strptime(main[0].PatientBirthDate, "%Y%m%d").date()
        study = dt.datetime.strptime(main[0].StudyDate, "%Y%m%d").date()
        months = (study - birth).days / xr_hand.DAYS_PER_MONTH
        assert months == pytest.approx(truth["chronological_age_months"], abs=0.05)
        assert main[0].PatientSex == truth["sex"]
        modalities.add(main[0].Modality)
        assert 0 <= truth["bone_age_months"] <= 228 and truth["maturation"] in ("normal", "advanced", "delayed")
    assert modalities == {"CR", "DX"}, "pick seeds that write both CR and DX"
    assert any(len(t["series"]) == 2 for _, t in written), "pick seeds with an oblique view"


def test_series_geometry_is_consistent(written):
    for folder, truth in written:
        datasets = _read_study(folder)
        assert len({d.SeriesInstanceUID for d in datasets}) == len(datasets)  # one image per series
        assert len({d.SOPInstanceUID for d in datasets}) == len(datasets)
        main = [d for d in datasets if d.SeriesNumber == truth["main_series_number"]][0]
        spacing = main.get("PixelSpacing") or main.get("ImagerPixelSpacing")
        assert float(spacing[0]) == pytest.approx(truth["pixel_spacing_mm"], rel=1e-4)
        assert [main.Rows, main.Columns] == truth["image_shape"]
        assert 0.09 <= float(spacing[0]) <= 0.16  # a real detector pitch


def test_written_pixels_match_truth(written):
    (toddler_dir, toddler), (child_dir, child), (teen_dir, teen) = written
    img, spacing = _main_image(_read_study(toddler_dir), toddler)
    present = [n for n in ("capitate", "hamate") if toddler["centres"][n]["present"]]
    absent = [n for n in ("lunate", "scaphoid", "trapezium", "trapezoid") if not toddler["centres"][n]["present"]]
    assert present == ["capitate", "hamate"] and len(absent) == 4
    r = max(1, int(0.4 / spacing))
    darkest_present = min(_value(img, toddler["centres"][n]["px"], r) for n in present)
    brightest_absent = max(_value(img, toddler["centres"][n]["px"], r) for n in absent)
    assert darkest_present > brightest_absent + 0.03
    assert toddler["carpal_count"] == 2 and not toddler["fused_physes"]

    img, spacing = _main_image(_read_study(child_dir), child)
    assert child["physes"]["radius"]["status"] == "open"
    assert _physis_dip(img, child, "radius", spacing) > 0.04

    img, spacing = _main_image(_read_study(teen_dir), teen)
    assert teen["carpal_count"] == 8 and "radius" in teen["fused_physes"]
    assert _physis_dip(img, teen, "radius", spacing) < 0.01
    assert _physis_dip(img, teen, "mc3", spacing) < 0.01
