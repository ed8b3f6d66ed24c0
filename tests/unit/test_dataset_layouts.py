"""Loaders for public dataset layouts (RSNA ICH, LUNA16, RSNA bone age) and layout detection.

Every fixture here is generated in tmp_path from synthetic content only (no
real patient data): CT slices from `radtriage.synth.ct_head`, a MetaImage
volume with a bright sphere, and small PNGs, written in the exact folder and
file layouts of the public downloads.
"""

from __future__ import annotations

import csv
import json
import logging
import math
import shutil
from pathlib import Path

import numpy as np
import pydicom
import pytest
import SimpleITK as sitk

from radtriage.datasets import layouts, luna16, rsna_bone_age, rsna_ich
from radtriage.datasets._tables import Skips
from radtriage.synth import ct_head
from radtriage.synth.dicom import CtSeries, make_study, write_ct_series

SUBTYPES = rsna_ich.SUBTYPES


# --------------------------------------------------------------------------- RSNA ICH fixture


def _write_rsna_series(rng, tmp: Path, images: Path, *, positive: bool, series_id: str) -> dict:
    """One synthetic CT head written as RSNA-style single-slice files ID_<hex>.dcm; returns its truth."""
    smp = ct_head.sample(rng, matrix=64, max_slices=4, positive=positive)
    study = make_study(rng, 0, "CT HEAD")
    paths = write_ct_series(tmp / series_id, rng, study, CtSeries(2, "HEAD 5mm", "HEAD", "HEAD", "H30s"),
                            smp.hu, smp.spacing, smp.origin)
    ids = []
    names = [f"ID_{int(v):09x}" for v in rng.integers(0, 16**9, size=len(paths))]
    names = sorted(names)[1:] + sorted(names)[:1]  # name order differs from slice order
    for p in paths:  # paths are in z order
        image_id = names.pop()
        ds = pydicom.dcmread(p)
        ds.SeriesInstanceUID = series_id  # RSNA writes ID_ strings here, not numeric UIDs
        ds.StudyInstanceUID = series_id.replace("ser", "stu")
        ds.PatientID = series_id.replace("ser", "pat")
        ds.save_as(images / f"{image_id}.dcm")
        ids.append(image_id)
    shutil.rmtree(tmp / series_id)
    return {"ids": ids, "hu": smp.hu, "slice_labels": smp.truth["slice_labels"], "origin": smp.origin}


def _rows_for(image_id: str, per_slice: dict[str, int]) -> list[list[str]]:
    return [[f"{image_id}_{name}", str(per_slice.get(name, 0))] for name in (*SUBTYPES, "any")]


@pytest.fixture(scope="module")
def rsna_root(tmp_path_factory) -> tuple[Path, dict]:
    root = tmp_path_factory.mktemp("rsna_ich")
    work = tmp_path_factory.mktemp("rsna_work")
    images = root / "stage_2_train"
    images.mkdir()
    (root / "stage_2_test").mkdir()
    rng = np.random.default_rng(0)  # its first positive study has blood on slices 1-3, not 0
    pos = _write_rsna_series(rng, work, images, positive=True, series_id="ID_ser0001")
    neg = _write_rsna_series(rng, work, images, positive=False, series_id="ID_ser0002")
    unlabelled = _write_rsna_series(rng, work, images, positive=False, series_id="ID_ser0003")
    rows: list[list[str]] = []
    for truth in (pos, neg):
        for z, image_id in enumerate(truth["ids"]):
            rows += _rows_for(image_id, {n: int(z in zs) for n, zs in truth["slice_labels"].items()})
    rows += _rows_for("ID_00000ffff", {})  # labelled image with no file
    rows += [["garbage", "1"], ["ID_0abc_subdural", "maybe"]]  # unreadable rows
    (images / "ID_0badf11e.dcm").write_bytes(b"not a DICOM file at all")
    rows += _rows_for("ID_0badf11e", {})
    rng.shuffle(rows)
    with open(root / "stage_2_train.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["ID", "Label"])
        w.writerows(rows)
    return root, {"pos": pos, "neg": neg, "unlabelled": unlabelled}


def test_rsna_ich_groups_series_orders_slices_and_labels(rsna_root, caplog):
    root, truth = rsna_root
    with caplog.at_level(logging.WARNING):
        exs = list(rsna_ich.examples(root, "ich"))
    assert [e.id for e in exs] == ["ID_ser0001", "ID_ser0002"]  # unlabelled (test-set) series left out
    pos, neg = exs
    assert pos.task == "ich" and pos.label["positive"] is True
    expected = {n: list(v) for n, v in truth["pos"]["slice_labels"].items()}
    assert 0 < len(expected["any"]) < len(truth["pos"]["ids"]), "fixture: blood on some slices, not all"
    assert pos.label["slice_labels"] == expected
    assert pos.label["subtypes"] == [s for s in SUBTYPES if expected[s]]
    assert neg.label == {"positive": False, "subtypes": [],
                         "slice_labels": {n: [] for n in (*SUBTYPES, "any")}}
    # slice order: the loaded volume is the synthetic volume in z order, whatever the file names
    vol = pos.load()
    assert vol.array.shape == truth["pos"]["hu"].shape
    np.testing.assert_allclose(vol.array, np.clip(truth["pos"]["hu"], -1024, 3071))
    assert vol.origin[2] == pytest.approx(truth["pos"]["origin"][2], abs=1e-3)
    # bad inputs were counted and reported once, not crashed on
    warnings = [r.getMessage() for r in caplog.records if r.name == rsna_ich.__name__]
    assert len(warnings) == 1
    msg = warnings[0]
    assert "1 labelled images with no file" in msg
    assert "4 images without label rows" in msg
    assert "1 unreadable DICOM files" in msg
    assert "2 label rows with" in msg or ("1 label rows with an unreadable ID" in msg
                                           and "1 label rows with a value other than 0/1" in msg)


def test_rsna_ich_index_keeps_patient_and_study(rsna_root):
    root, truth = rsna_root
    idx = rsna_ich.index(root)
    s = idx.series[0]
    assert (s.patient_id, s.study_uid) == ("ID_pat0001", "ID_stu0001")
    names = [p.stem for p in s.files]
    assert names == truth["pos"]["ids"]  # sorted along the normal, i.e. the order written
    assert names != sorted(names)  # the fixture's names are not in slice order: the order came from geometry


def test_rsna_ich_reversed_positions_and_wrapped_intercept(tmp_path):
    """Slices whose positions run head to feet, one stored 12-bit wrapped with intercept 0 (the known quirk)."""
    images = tmp_path / "stage_2_train"
    images.mkdir()
    rng = np.random.default_rng(5)
    hu = np.full((3, 8, 8), -1000, np.int16)
    hu[:, 2:6, 2:6] = np.array([10, 20, 30], np.int16)[:, None, None]
    study = make_study(rng, 0, "CT HEAD")
    paths = write_ct_series(tmp_path / "w", rng, study, CtSeries(2, "HEAD", "HEAD", "HEAD", "H30s"), hu,
                            (5.0, 0.5, 0.5), (0.0, 0.0, 100.0))
    rows = []
    for k, p in enumerate(paths):
        ds = pydicom.dcmread(p)
        if k == 1:  # stored = HU mod 4096, intercept 0
            ds.PixelData = np.mod(hu[k].astype(np.int32), 4096).astype(np.uint16).tobytes()
            ds.RescaleIntercept = 0
        name = f"ID_{9 - k:09x}"  # name order is the reverse of slice order
        ds.save_as(images / f"{name}.dcm")
        rows += _rows_for(name, {"subdural": 1, "any": 1} if k == 2 else {})
    with open(tmp_path / "stage_2_train.csv", "w", newline="") as f:
        csv.writer(f).writerows([["ID", "Label"], *rows])
    (ex,) = list(rsna_ich.examples(tmp_path))
    assert ex.label["slice_labels"]["subdural"] == [2] and ex.label["subtypes"] == ["subdural"]
    vol = ex.load()
    assert "rescale-corrected" in vol.flags
    np.testing.assert_array_equal(vol.array, hu.astype(np.float32))


def test_rsna_ich_skips_series_with_two_slices_at_one_position(tmp_path):
    images = tmp_path / "stage_2_train"
    images.mkdir()
    rng = np.random.default_rng(6)
    hu = np.zeros((2, 8, 8), np.int16)
    paths = write_ct_series(tmp_path / "w", rng, make_study(rng, 0, "CT"), CtSeries(2, "H", "H", "HEAD", "S"), hu,
                            (5.0, 0.5, 0.5))
    rows = []
    for k, p in enumerate(paths):
        ds = pydicom.dcmread(p)
        ds.ImagePositionPatient = [0, 0, 0]
        ds.save_as(images / f"ID_{k:09x}.dcm")
        rows += _rows_for(f"ID_{k:09x}", {})
    with open(tmp_path / "stage_2_train.csv", "w", newline="") as f:
        csv.writer(f).writerows([["ID", "Label"], *rows])
    idx = rsna_ich.index(tmp_path)
    assert idx.series == [] and idx.skips.counts["series with two slices at one position"] == 1


def test_rsna_ich_label_rows_duplicates_and_gaps(tmp_path):
    path = tmp_path / "stage_2_train.csv"
    path.write_text("ID,Label\n"
                    "ID_aa_subdural,0\nID_aa_subdural,1\n"  # conflicting duplicate: positive
                    "ID_bb_epidural,1\nID_bb_any,0\n"  # subtype without any; other rows missing
                    "ID_cc_any,1\nID_cc/x_any,1\nID_dd_fracture,1\n")
    skips = Skips("t")
    labels = rsna_ich.read_labels(path, skips)
    assert set(labels) == {"ID_aa", "ID_bb", "ID_cc"}
    assert rsna_ich.label_of(labels["ID_aa"])["subdural"] == 1
    assert rsna_ich.label_of(labels["ID_bb"]) == {**{n: 0 for n in (*SUBTYPES, "any")}, "epidural": 1}
    assert skips.counts == {"conflicting duplicate label rows (taken as positive)": 1,
                            "images missing some label rows (missing taken as 0)": 3,
                            "images with a subtype but any=0 (taken as positive)": 1,
                            "label rows with an unreadable ID": 2}


def test_rsna_ich_missing_label_column_is_a_clear_error(tmp_path):
    (tmp_path / "stage_2_train").mkdir()
    (tmp_path / "stage_2_train.csv").write_text("ID,Value\nID_0_any,1\n")
    with pytest.raises(ValueError, match="Label"):
        list(rsna_ich.examples(tmp_path))


# --------------------------------------------------------------------------- LUNA16 fixture

SPHERE_IJK = (17, 9, 12)  # (x, y, z) index of the sphere centre in the first scan


def _write_mhd(path: Path, *, sphere: bool) -> sitk.Image:
    arr = np.full((20, 24, 28), -1000, np.int16)  # (z, y, x)
    if sphere:
        z, y, x = np.ogrid[:20, :24, :28]
        i, j, k = SPHERE_IJK
        arr[(x - i) ** 2 + (y - j) ** 2 + (z - k) ** 2 <= 9] = 100
    img = sitk.GetImageFromArray(arr)
    img.SetSpacing((0.7, 0.8, 2.5))
    img.SetOrigin((-150.2, -170.5, -310.0))
    c, s = math.cos(math.radians(30)), math.sin(math.radians(30))
    img.SetDirection((c, -s, 0.0, s, c, 0.0, 0.0, 0.0, 1.0))  # rotated: catches a transposed direction
    path.parent.mkdir(parents=True, exist_ok=True)
    sitk.WriteImage(img, str(path))  # .mhd + .raw
    return img


@pytest.fixture(scope="module")
def luna_root(tmp_path_factory) -> tuple[Path, list[float]]:
    root = tmp_path_factory.mktemp("luna16")
    uid_pos, uid_neg = "1.3.6.1.4.1.14519.5.2.1.6279.6001.100", "1.3.6.1.4.1.14519.5.2.1.6279.6001.200"
    img = _write_mhd(root / "subset0" / f"{uid_pos}.mhd", sphere=True)
    _write_mhd(root / "subset1" / "subset1" / f"{uid_neg}.mhd", sphere=False)  # a zip unpacked one level deep
    _write_mhd(root / "seg-lungs-LUNA16" / f"{uid_pos}.mhd", sphere=False)  # masks: not scans
    centre = list(img.TransformIndexToPhysicalPoint(SPHERE_IJK))
    with open(root / "annotations.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["seriesuid", "coordX", "coordY", "coordZ", "diameter_mm"])
        w.writerow([uid_pos, *centre, 4.2])
        w.writerow(["1.3.6.1.4.1.14519.5.2.1.6279.6001.999", 1, 2, 3, 5.0])  # scan not downloaded
        w.writerow([uid_pos, "x", 2, 3, 5.0])  # unreadable
    (root / "candidates.csv").write_text("seriesuid,coordX,coordY,coordZ,class\n")
    return root, centre


def test_luna16_nodules_positives_negatives_and_world_to_voxel(luna_root, caplog):
    root, centre = luna_root
    with caplog.at_level(logging.WARNING):
        exs = list(luna16.examples(root, "nodule"))
    assert [e.id[-3:] for e in exs] == ["100", "200"]
    pos, neg = exs
    assert neg.label == {"nodules": []}
    (nod,) = pos.label["nodules"]
    assert nod["diameter_mm"] == pytest.approx(4.2) and nod["type"] is None
    np.testing.assert_allclose(nod["centre_mm"], centre)
    vol = pos.load()
    assert vol.array.shape == (20, 24, 28) and vol.array.dtype == np.float32
    assert vol.spacing == pytest.approx((2.5, 0.8, 0.7))
    zyx = vol.lps_to_voxel(np.asarray(nod["centre_mm"]))
    np.testing.assert_allclose(zyx, SPHERE_IJK[::-1], atol=1e-6)
    assert vol.array[tuple(int(round(v)) for v in zyx)] == 100  # the sphere is at that voxel
    assert vol.array.max() == 100 and neg.load().array.max() == -1000
    msg = " ".join(r.getMessage() for r in caplog.records if r.name == luna16.__name__)
    assert "1 annotated scans not on disk" in msg and "1 annotation rows with unreadable" in msg


def test_luna16_missing_raw_is_counted(tmp_path):
    _write_mhd(tmp_path / "subset0" / "1.2.3.mhd", sphere=False)
    (tmp_path / "subset0" / "1.2.3.raw").unlink()
    (tmp_path / "annotations.csv").write_text("seriesuid,coordX,coordY,coordZ,diameter_mm\n")
    scans, skips = luna16.index(tmp_path)
    assert scans == [] and skips.counts[".mhd files whose .raw is missing"] == 1


# --------------------------------------------------------------------------- RSNA bone age fixture


def _png(path: Path, value: int, shape=(12, 10)) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    arr = np.full(shape, value, np.uint8)
    arr[0, 0] = 255
    sitk.WriteImage(sitk.GetImageFromArray(arr), str(path))


def test_bone_age_training_layout(tmp_path, caplog):
    imgs = tmp_path / "boneage-training-dataset" / "boneage-training-dataset"  # as the Kaggle zip unpacks
    for i, v in ((1377, 40), (1378, 80), (1379, 90)):
        _png(imgs / f"{i}.png", v)
    (tmp_path / "boneage-training-dataset.csv").write_text(
        "id,boneage,male\n1377,180,False\n1378,12,True\n1379,abc,True\n1380,50,True\n1378,30,False\n")
    (tmp_path / "boneage-test-dataset.csv").write_text("Case ID,Sex\n4360,M\n")  # no bone age: not a table
    with caplog.at_level(logging.WARNING):
        exs = list(rsna_bone_age.examples(tmp_path, "bone_age"))
    assert [e.id for e in exs] == ["1377", "1378"]
    a, b = exs
    assert a.label == {"bone_age_months": 180.0, "sex": "F", "chronological_age_months": None}
    assert b.label["sex"] == "M" and b.label["bone_age_months"] == 12.0
    assert a.groups == {"sex": "F", "age_band": "15-17"} and b.groups == {"sex": "M", "age_band": "0-4"}
    vol = a.load()
    assert vol.is_2d and vol.array.shape == (12, 10) and vol.array.dtype == np.float32
    assert vol.array[5, 5] == 40 and vol.array[0, 0] == 255
    assert vol.spacing == (1.0, 1.0) and "spacing-unknown" in vol.flags
    assert vol.meta == {"PatientSex": "F", "Modality": "CR"}
    msg = " ".join(r.getMessage() for r in caplog.records if r.name == rsna_bone_age.__name__)
    assert "1 rows with an unreadable bone age" in msg and "1 ids with no image file" in msg
    assert "1 ids listed twice" in msg


def test_bone_age_validation_layout_with_loose_column_names(tmp_path):
    val = tmp_path / "Bone Age Validation Set"
    _png(val / "boneage-validation-dataset-1" / "1386.png", 10)
    _png(val / "boneage-validation-dataset-2" / "1392.png", 20)
    (val / "Validation Dataset.csv").write_text(
        "Image ID, Male ,Bone Age (months)\n1386,FALSE,30\n1392,TRUE,150.5\n")
    assert layouts.detect(tmp_path) == "rsna-bone-age"
    exs = list(layouts.examples(tmp_path, "bone_age"))
    assert [(e.id, e.label["sex"], e.label["bone_age_months"]) for e in exs] == [("1386", "F", 30.0),
                                                                                 ("1392", "M", 150.5)]
    assert exs[1].groups["age_band"] == "10-14"


def test_parse_sex():
    assert [rsna_bone_age.parse_sex(t) for t in ("True", "false", "M", " f ", "Female", "x", "")] == \
        ["M", "F", "M", "F", "F", None, None]


# --------------------------------------------------------------------------- layouts


def test_detect_each_layout(rsna_root, luna_root, tmp_path):
    assert layouts.detect(rsna_root[0]) == "rsna-ich"
    assert layouts.detect(luna_root[0]) == "luna16"
    (tmp_path / "study0001").mkdir()
    (tmp_path / "study0001" / "truth.json").write_text(json.dumps({"kind": "ct-head"}))
    assert layouts.detect(tmp_path) == "synthetic"
    assert set(layouts.LAYOUTS) == {"synthetic", "rsna-ich", "luna16", "rsna-bone-age"}


def test_detect_nothing_names_what_was_looked_for(tmp_path):
    (tmp_path / "notes.csv").write_text("a,b\n1,2\n")
    with pytest.raises(ValueError) as e:
        layouts.detect(tmp_path)
    for marker in ("truth.json", "stage_2_train.csv", "annotations.csv", "boneage-training-dataset.csv"):
        assert marker in str(e.value)


def test_detect_ambiguous_folder(tmp_path):
    (tmp_path / "s1").mkdir()
    (tmp_path / "s1" / "truth.json").write_text("{}")
    (tmp_path / "subset0").mkdir()
    (tmp_path / "annotations.csv").write_text("seriesuid,coordX,coordY,coordZ,diameter_mm\n")
    with pytest.raises(ValueError, match="several"):
        layouts.detect(tmp_path)
    assert list(layouts.examples(tmp_path, "nodule", layout="luna16")) == []


def test_examples_refuses_layout_that_does_not_serve_the_task(rsna_root, luna_root):
    with pytest.raises(ValueError, match="rsna-ich.*'nodule'"):
        layouts.examples(rsna_root[0], "nodule")
    with pytest.raises(ValueError, match="luna16.*'ich'"):
        layouts.examples(luna_root[0], "ich", layout="luna16")
    with pytest.raises(ValueError, match="unknown task"):
        layouts.examples(luna_root[0], "fracture")
    with pytest.raises(ValueError, match="unknown dataset layout"):
        layouts.examples(luna_root[0], "nodule", layout="lidc")
    with pytest.raises(ValueError, match="not a rsna-ich layout"):
        layouts.examples(luna_root[0], "ich", layout="rsna-ich")
    ex = next(iter(layouts.examples(rsna_root[0], "ich")))
    assert ex.task == "ich"
