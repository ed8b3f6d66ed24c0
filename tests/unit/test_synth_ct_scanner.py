"""The CT head's scanner mode (`ct_physics.scan`) and its mimics: noise, kernels, metal, mimics in truth and voxels."""

from __future__ import annotations

import numpy as np
import pytest

from radtriage.synth import ct_head, ct_physics

N = 128


def _head_slab(k: int = 2) -> np.ndarray:
    """A skull (1500 HU) around brain (30 HU), air outside: (k, N, N) HU on 0.9 mm pixels (a small head, as the kernels see it)."""
    yy, xx = np.mgrid[:N, :N] - N // 2
    r = np.hypot(yy, xx * 1.2)
    hu = np.full((k, N, N), -1000.0, np.float32)
    hu[:, r < 50] = 1500.0
    hu[:, r < 46] = 30.0
    return hu


def _scan(hu, **kw):
    kernels = kw.pop("kernels", ("soft",))
    metal = kw.pop("metal", None)
    return ct_physics.scan(np.random.default_rng(0), hu, ct_physics.Scan(pixel=0.9, **kw), kernels, metal=metal)


def _noise(img: np.ndarray, clean: np.ndarray) -> float:
    box = (slice(None), slice(N // 2 - 12, N // 2 + 12), slice(N // 2 - 12, N // 2 + 12))
    return float((img[box] - clean[box]).std())


def test_projector_matches_scikit_image():
    hu = _head_slab(1) + 1000
    ours = ct_physics.project(hu, N)
    ref = ct_physics.project(hu, N, projector="skimage")
    assert np.abs(ours - ref).mean() < 0.01 * np.abs(ref).mean()


def test_noise_scales_as_one_over_root_mas():
    hu = _head_slab()
    clean = _scan(hu, mas=1e9)["soft"]
    sd = {mas: _noise(_scan(hu, mas=mas)["soft"], clean) for mas in (50.0, 200.0, 800.0)}
    assert sd[50.0] / sd[200.0] == pytest.approx(2.0, rel=0.15)
    assert sd[200.0] / sd[800.0] == pytest.approx(2.0, rel=0.15)


def test_sharp_kernel_has_more_high_frequency_noise():
    hu = _head_slab()
    out = _scan(hu, mas=100.0, kernels=("soft", "sharp"))
    clean = _scan(hu, mas=1e9, kernels=("soft", "sharp"))
    power = {}
    for k in ("soft", "sharp"):
        roi = (out[k] - clean[k])[:, N // 2 - 16:N // 2 + 16, N // 2 - 16:N // 2 + 16]
        nps = np.mean(np.abs(np.fft.fft2(roi - roi.mean(axis=(1, 2), keepdims=True))) ** 2, axis=0)
        f = np.hypot(*np.meshgrid(np.fft.fftfreq(32), np.fft.fftfreq(32), indexing="ij"))
        power[k] = float(nps[f > 0.25].sum())
    assert power["sharp"] > 3 * power["soft"]


def test_metal_streaks_along_lines_through_it():
    hu = _head_slab(1)
    metal = np.zeros_like(hu)
    metal[:, N // 2 - 20:N // 2 - 17, N // 2 - 2:N // 2 + 2] = 1.0  # a 5 x 7 mm piece of cobalt-chrome
    with_metal = _scan(hu, mas=300.0, metal={"cocr": metal})["soft"][0]
    without = _scan(hu, mas=300.0)["soft"][0]
    # along a line through the metal (below it, beyond its blur) the image varies far more than without it,
    line = (slice(N // 2 - 8, N // 2 + 30), slice(N // 2 - 1, N // 2 + 1))
    assert with_metal[line].var() > 5 * without[line].var()
    # and around it, from one line through it to the next: bright and dark streaks alternate
    a = np.linspace(0, 2 * np.pi, 180, endpoint=False)
    ring = (np.rint(N // 2 - 18.5 + 14 * np.sin(a)).astype(int), np.rint(N // 2 + 14 * np.cos(a)).astype(int))
    assert with_metal[ring].var() > 5 * without[ring].var()


def test_each_mimic_in_truth_and_voxels():
    points = ("pineal_calcification", "choroid_plexus_calcification", "falx_calcification",
              "basal_ganglia_calcification")
    smp = ct_head.sample(np.random.default_rng(5), matrix=128, positive=False, slice_thickness=2.5,
                         mimics=points + ("dense_sinuses", "dense_falx", "shunt_catheter"))
    mimics = {m["name"]: m for m in smp.truth["mimics"]}
    assert set(points) | {"dense_sinuses", "dense_falx", "shunt_catheter"} <= set(mimics)
    for name in points:
        z, y, x = mimics[name]["centre_voxel"]
        peak = smp.hu[max(z - 1, 0):z + 2, y - 2:y + 3, x - 2:x + 3].max()
        assert peak > 90, name  # calcification 100-1000 HU, less its partial volume
        assert mimics[name]["hu"] >= 100
    assert 50 <= mimics["dense_sinuses"]["hu"] <= 70
    plain = ct_head.sample(np.random.default_rng(5), matrix=128, positive=False, slice_thickness=2.5, mimics=())
    assert "mimics" in plain.truth and plain.truth["mimics"] == []
    # the shunt catheter is bright where the plain head has brain
    assert int((smp.hu > 250).sum()) > int((plain.hu > 250).sum())


def test_scanner_mode_sample_truth():
    smp = ct_head.sample(np.random.default_rng(7), matrix=64, positive=True, acquisition="scanner", max_slices=6,
                         mas=250.0, kernel="sharp", mimics=("aneurysm_clip",), bone_kernel=True)
    assert smp.truth["acquisition_mode"] == "scanner"
    assert smp.truth["scanner"]["kernel"] == "sharp" and smp.truth["scanner"]["mas"] == 250.0
    assert smp.hu.dtype == np.int16 and smp.bone is not None and smp.hu.shape == smp.bone.shape
    assert smp.truth["present"]


def test_phantom_mode_unchanged_by_default():
    a = ct_head.sample(np.random.default_rng(3), matrix=64, max_slices=4)
    b = ct_head.sample(np.random.default_rng(3), matrix=64, max_slices=4, acquisition="phantom")
    assert np.array_equal(a.hu, b.hu) and "mimics" not in a.truth
