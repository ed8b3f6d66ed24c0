"""The `nodule` model: candidate geometry, measurement, post-processing and a smoke train + predict."""

from __future__ import annotations

import math

import numpy as np
import pytest

from radtriage.imaging.volume import Volume
from radtriage.inference import nodule as pre
from radtriage.inference.tasks import predictor


def _chest(seed: int = 4, diameter=(9.0, 12.0)):
    from radtriage.synth import ct_chest

    s = ct_chest.sample(np.random.default_rng(seed), n_nodules=1, nodule_types=("solid",), diameter_mm=diameter,
                        matrix=192, n_slices=70, slice_spacing=2.0, protocol="routine")
    return s


def _flipped(s) -> Volume:
    """The same scan stored with the columns running right-to-left and rows bottom-to-top (direction -x, -y)."""
    arr = s.hu[:, ::-1, ::-1].astype(np.float32)
    nz, ny, nx = s.hu.shape
    dz, dy, dx = s.spacing
    origin = (s.origin[0] + (nx - 1) * dx, s.origin[1] + (ny - 1) * dy, s.origin[2])
    direction = np.diag([-1.0, -1.0, 1.0])
    return Volume(arr, s.spacing, origin, direction)


def test_candidates_find_a_planted_nodule_at_its_lps_position():
    s = _chest()
    truth = s.truth["nodules"][0]
    assert not truth["juxtapleural"]
    plain = Volume(s.hu.astype(np.float32), s.spacing, s.origin, np.eye(3))
    for vol in (plain, _flipped(s)):
        # the volume's own geometry maps the truth voxel to the truth LPS position
        c = pre.candidates(vol)
        assert c.patches.shape[1:] == (pre.PATCH,) * 3 and len(c.lps) == len(c.voxel_zyx) > 0
        d = np.linalg.norm(c.lps - np.asarray(truth["centre_mm"]), axis=1)
        i = int(np.argmin(d))
        assert d[i] <= truth["diameter_mm"] / 2, (d[i], truth)
        # its voxel position agrees with the volume's geometry
        np.testing.assert_allclose(vol.voxel_to_lps(c.voxel_zyx[i]), c.lps[i], atol=1e-6)
        # and the measured centre too
        desc = pre.describe(vol, c, i)
        assert np.linalg.norm(np.asarray(desc["centre_mm"]) - truth["centre_mm"]) <= truth["diameter_mm"] / 2
        np.testing.assert_allclose(vol.voxel_to_lps(np.asarray(desc["centre_voxel"])), desc["centre_mm"], atol=0.05)
    # the plain volume's voxel centre matches the generator's (z, y, x)
    np.testing.assert_allclose(plain.lps_to_voxel(np.asarray(truth["centre_mm"])), truth["centre_voxel_zyx"], atol=0.02)


def test_measure_a_sphere():
    g = pre.GRID_MM
    n = pre.PATCH
    zz, yy, xx = np.mgrid[:n, :n, :n]
    r = np.sqrt((zz - n // 2) ** 2 + (yy - n // 2) ** 2 + (xx - n // 2) ** 2) * g
    hu = np.where(r <= 5.0, 30.0, -860.0)  # a 10 mm solid sphere in lung
    lo, hi = pre.PATCH_WINDOW_HU
    m = pre.measure((hu - lo) / (hi - lo), (g, g, g), radius_mm=5.0)
    assert m is not None
    assert 9.0 <= m["diameter_mm"] <= 12.0
    assert 8.5 <= m["mean_diameter_mm"] <= 11.5
    assert m["volume_mm3"] == pytest.approx(math.pi / 6 * 1000, rel=0.2)
    np.testing.assert_allclose(m["centroid"], [n // 2] * 3, atol=0.5)
    assert pre.measure(np.full((n, n, n), (-860.0 - lo) / (hi - lo)), (g, g, g), 5.0) is None  # only lung


def test_finalize_sorts_thresholds_and_suppresses_duplicates():
    d = [
        {"centre_mm": [0, 0, 0], "diameter_mm": 10.0},
        {"centre_mm": [3, 0, 0], "diameter_mm": 6.0},  # inside the first: a duplicate
        {"centre_mm": [40, 0, 0], "diameter_mm": 6.0},
        {"centre_mm": [80, 0, 0], "diameter_mm": 6.0},
    ]
    out = pre.finalize(d, np.array([0.8, 0.7, 0.9, 0.001]))
    assert [o["centre_mm"][0] for o in out] == [40, 0]
    assert [o["score"] for o in out] == [0.9, 0.8]


def test_smoke_train_exports_a_loadable_model_and_predict_keys(tmp_path):
    from radtriage.inference.card import file_sha256, load_card
    from radtriage.inference.model import OnnxModel
    from radtriage.training.nodule import MODEL_ID, train

    logs: list[str] = []
    result = train(tmp_path, smoke=True, log=logs.append)
    folder = tmp_path / MODEL_ID
    card = load_card(folder)
    assert card.task == "nodule" and card.sha256 == file_sha256(folder / "model.onnx")
    assert card.training_data["synthetic"] is True and "test" in card.training_data["seeds"]
    assert card.size_bytes <= 10_000_000
    assert "cpm" in result["metrics"]["froc_test"] and "nodule" in card.thresholds
    assert any("trained 2 steps" in line for line in logs)
    model = OnnxModel(folder)
    s = _chest(seed=3)  # juxtapleural
    vol = Volume(s.hu.astype(np.float32), s.spacing, s.origin, np.eye(3))
    pred = predictor("nodule")(model, vol)
    assert set(pred) >= {"nodules"}
    scores = [n["score"] for n in pred["nodules"]]
    assert scores == sorted(scores, reverse=True)
    for n in pred["nodules"]:
        assert set(n) == {"centre_mm", "centre_voxel", "diameter_mm", "mean_diameter_mm", "volume_mm3", "score"}
        assert len(n["centre_mm"]) == 3 and len(n["centre_voxel"]) == 3
        assert n["diameter_mm"] > 0 and n["volume_mm3"] > 0 and 0 <= n["score"] <= 1
