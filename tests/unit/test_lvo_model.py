"""The `lvo` model: smoke training exports a loadable model; pre-processing keeps the patient's sides."""

from __future__ import annotations

import numpy as np
import pytest

from radtriage.imaging.volume import Volume
from radtriage.inference import lvo
from radtriage.inference.card import file_sha256, load_card
from radtriage.inference.tasks import predictor
from radtriage.synth import cta_head

SMALL = {"matrix": 128, "slice_thickness": 1.25, "coverage_mm": 60.0}


@pytest.fixture(scope="module")
def pair() -> tuple[cta_head.CtaHeadSample, cta_head.CtaHeadSample]:
    """One head with a left M1 occlusion and the same head without it."""
    pos = cta_head.sample(np.random.default_rng(21), lvo=True, side="left", segment="m1", **SMALL)
    neg = cta_head.sample(np.random.default_rng(21), lvo=False, **SMALL)
    return pos, neg


def test_smoke_training_exports_a_model_that_predicts(tmp_path, monkeypatch):
    from radtriage.inference.model import OnnxModel
    from radtriage.training.lvo import MODEL_ID, train

    monkeypatch.setenv("RADTRIAGE_TRAIN_CACHE", str(tmp_path / "cache"))
    lines: list[str] = []
    result = train(tmp_path / "models", smoke=True, log=lines.append)
    folder = tmp_path / "models" / MODEL_ID
    card = load_card(folder)  # raises when the sha256 does not match
    assert card.sha256 == file_sha256(folder / "model.onnx") == result["card"].sha256
    assert card.task == "lvo" and card.training_data["synthetic"] is True
    assert card.training["steps"] == 2
    assert "lvo" in card.thresholds and card.not_for and card.limitations
    assert card.inputs[0].shape == ["batch", *lvo.SHAPE]
    assert (folder / "model.onnx").stat().st_size <= 10 * 1024 * 1024
    assert "test" in result["metrics"] and "auc" in result["metrics"]["test"]

    model = OnnxModel(folder)
    smp = cta_head.sample(np.random.default_rng(5), lvo=True, matrix=64, slice_thickness=2.0, coverage_mm=40.0)
    vol = Volume(smp.hu.astype(np.float32), smp.spacing, smp.origin)
    out = predictor("lvo")(model, vol)
    assert {"score", "positive", "side", "segment", "side_probs", "segment_probs"} <= set(out)
    assert 0.0 <= out["score"] <= 1.0
    assert out["positive"] == (out["score"] >= card.thresholds["lvo"])
    assert out["side"] in ("left", "right") and out["segment"] in cta_head.SEGMENTS
    assert set(out["side_probs"]) == {"left", "right"} and set(out["segment_probs"]) == set(cta_head.SEGMENTS)
    assert abs(sum(out["side_probs"].values()) - 1) < 1e-3 and abs(sum(out["segment_probs"].values()) - 1) < 1e-3
    assert out["side"] == max(out["side_probs"], key=out["side_probs"].get)


def test_occlusion_lands_on_the_labelled_side_of_the_image(pair):
    """Patient left is on the image's right: the vessels a left M1 occlusion removes are in the right half."""
    pos, neg = pair
    assert pos.truth["side"] == "left"
    missing = np.clip(lvo.views(neg.hu, neg.spacing) - lvo.views(pos.hu, pos.spacing), 0, None)[0]
    cols = missing.shape[1]
    left_of_patient = missing[:, cols // 2 :].sum()
    right_of_patient = missing[:, : cols // 2].sum()
    assert left_of_patient > 3 * right_of_patient, (left_of_patient, right_of_patient)


@pytest.mark.parametrize("layout", ["x-flipped", "y-flipped", "rows-are-x", "z-descending"])
def test_views_do_not_depend_on_how_the_array_is_stored(pair, layout):
    """The same patient stored in another orientation (direction cosines saying so) gives the same image."""
    pos, _ = pair
    hu = pos.hu.astype(np.float32)
    ref = lvo.views(hu, pos.spacing, np.eye(3))
    dz, dy, dx = pos.spacing
    d = np.eye(3)  # columns: LPS directions of the array's x, y and z axes
    if layout == "x-flipped":  # columns run toward the patient's right
        arr, sp, d[:, 0] = hu[:, :, ::-1], (dz, dy, dx), [-1, 0, 0]
    elif layout == "y-flipped":  # rows run anterior-ward
        arr, sp, d[:, 1] = hu[:, ::-1, :], (dz, dy, dx), [0, -1, 0]
    elif layout == "rows-are-x":  # x and y swapped
        arr, sp = np.swapaxes(hu, 1, 2), (dz, dx, dy)
        d[:, 0], d[:, 1] = [0, 1, 0], [1, 0, 0]
    else:  # slices from head to feet
        arr, sp, d[:, 2] = hu[::-1], (dz, dy, dx), [0, 0, -1]
    got = lvo.views(np.ascontiguousarray(arr), sp, d)
    assert got.shape == ref.shape == lvo.SHAPE
    assert np.abs(got - ref).mean() < 0.01
    # and a flip the direction cosines do not declare is seen (the check can fail)
    if layout == "x-flipped":
        wrong = lvo.views(np.ascontiguousarray(arr), sp, np.eye(3))
        assert np.abs(wrong - ref).mean() > 3 * np.abs(got - ref).mean() + 0.005


def test_postprocess_names_side_and_segment():
    logits = np.array([0.0, 2.0, -2.0, -1.0, 3.0, 0.0])  # P = 0.5; left; M1
    out = lvo.postprocess(logits, threshold=0.5)
    assert out["score"] == pytest.approx(0.5) and out["positive"] is True
    assert out["side"] == "left" and out["segment"] == "m1" and out["segment_label"] == "M1"
    assert lvo.postprocess(logits, threshold=0.6)["positive"] is False
    flipped = lvo.postprocess(np.array([1.0, -2.0, 2.0, 3.0, 0.0, 0.0]), 0.5)
    assert flipped["side"] == "right" and flipped["segment"] == "ica_t"


def test_smoke_training_on_a_dataset_of_dicom_studies(tmp_path, monkeypatch):
    """``scripts/train.py lvo --dataset``: Examples read from DICOM train, and the card says the data is not synthetic."""
    from radtriage.datasets.synthetic import examples
    from radtriage.synth.run import synthesize
    from radtriage.training.lvo import MODEL_ID, train

    monkeypatch.setenv("RADTRIAGE_TRAIN_CACHE", str(tmp_path / "cache"))
    root = tmp_path / "site"
    synthesize("cta-head", 2, 3, root, {"matrix": 64, "slice_thickness": 2.0, "coverage_mm": 40.0})
    result = train(tmp_path / "models", smoke=True, log=lambda *_: None, dataset=examples(root, "lvo"))
    card = load_card(tmp_path / "models" / MODEL_ID)
    assert card.training_data["synthetic"] is False and card.training_data["studies"] == 2
    assert result["metrics"]["test"]["n"] == 2


def test_views_leave_the_callers_volume_alone(pair):
    pos, _ = pair
    hu = np.ascontiguousarray(pos.hu[:, ::2, ::2], dtype=np.float32)  # float32, 1.25 mm slices
    before = hu.copy()
    lvo.views(hu, (1.0, 1.0, 1.0))  # 1 mm isotropic: no resampling copy
    assert np.array_equal(hu, before)
