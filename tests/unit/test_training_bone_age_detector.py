"""`training.bone_age_detector`: fine-tuning the shipped bone-age model on detector-mode hands."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from radtriage.inference.card import load_card
from radtriage.training import bone_age_detector as bad

REPO = Path(__file__).resolve().parents[2]
SHIPPED = REPO / "models" / "bone-age-resnet2d"


def test_the_shipped_bone_age_onnx_read_back_into_torch_gives_its_outputs():
    """`onnx_init` with ``prefix=""`` (a network exported as itself) and convolutions with their own bias."""
    import onnxruntime as ort

    from radtriage.training.bone_age import BoneAgeNet
    from radtriage.training.onnx_init import load_onnx_weights

    net = BoneAgeNet()
    load_onnx_weights(net, SHIPPED / "model.onnx", prefix="")
    x = np.random.default_rng(3).random((2, 1, 192, 192)).astype(np.float32)
    sex = np.array([[1.0], [0.0]], np.float32)
    sess = ort.InferenceSession(str(SHIPPED / "model.onnx"), providers=["CPUExecutionProvider"])
    want = sess.run(None, {"image": x, "sex": sex})[0]
    with torch.no_grad():
        got = net.eval()(torch.as_tensor(x), torch.as_tensor(sex)).numpy()
    np.testing.assert_allclose(got, want, rtol=1e-3, atol=0.05)


def test_randomise_hand_keeps_the_range_and_changes_the_image_per_sample():
    rng = np.random.default_rng(0)
    x = torch.zeros(8, 1, 64, 64)
    x[:, :, 16:48, 24:40] = 0.8  # a bright "bone" on a dark background
    y = bad.randomise_hand(x.clone(), rng, p_lowres=1.0, lowres_px=(16, 20), p_lossy=1.0)
    assert y.shape == x.shape and float(y.min()) >= 0 and float(y.max()) <= 1
    assert not torch.allclose(y[0], y[1])  # each sample its own system
    edge = y[:, 0, 32, 22:26]  # cut to 16-20 px and back: the sharp edge is smeared over several pixels
    assert (edge[:, 1:] - edge[:, :-1]).abs().max() < 0.6


def test_training_conditions_include_the_boosted_ones_and_follow_the_exclusions():
    rng = np.random.default_rng(1)
    drawn = [set(bad.training_conditions(rng)) for _ in range(300)]
    assert sum("8bit" in d for d in drawn) > 300 * 0.25  # department 0.15, plus the boost
    assert not any({"cast", "splint"} <= d or {"low_exposure", "over_exposure"} <= d for d in drawn)


def test_a_smoke_fine_tune_exports_version_0_3_0_from_the_shipped_weights(tmp_path):
    result = bad.train(tmp_path, SHIPPED, smoke=True, log=lambda *_: None)
    card = load_card(tmp_path / "bone-age-resnet2d")
    assert card.version == bad.VERSION == result["card"].version
    shipped = load_card(SHIPPED)
    assert card.training["init"] == f"{shipped.id} {shipped.version}"
    assert card.training_data["held_out_vendor"] == bad.HELD_OUT_VENDOR
