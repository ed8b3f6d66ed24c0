"""Domain randomisation of windowed CT inputs (`training.augment`) and the ICH trainer's mimic and augment options."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from radtriage.inference.ich import CHANNELS
from radtriage.inference.preprocess import HEAD_WINDOWS
from radtriage.training.augment import block_dct_quantise, channel_windows, randomise

LO, WIDTH = channel_windows(HEAD_WINDOWS, CHANNELS)
OFF = {"hu_offset": 0.0, "hu_scale": 0.0, "noise_hu": 0.0, "blur_px": 0.0, "p_lowres": 0.0, "p_lossy": 0.0}


def _batch(b: int = 3) -> torch.Tensor:
    rng = np.random.default_rng(0)
    hu = torch.as_tensor(rng.uniform(10, 60, (b, 1, 32, 32)), dtype=torch.float32).expand(-1, len(CHANNELS), -1, -1)
    return ((hu - LO) / WIDTH).clamp(0, 1)


def test_channel_windows_follow_the_channel_names():
    assert LO.flatten().tolist() == [0.0, 0.0, -20.0, -800.0, 0.0]
    assert WIDTH.flatten().tolist() == [80.0, 80.0, 200.0, 2800.0, 80.0]


def test_nothing_asked_changes_nothing():
    x = _batch()
    assert torch.allclose(randomise(x, np.random.default_rng(1), LO, WIDTH, **OFF), x, atol=1e-6)


def test_a_calibration_offset_moves_every_channel_by_the_same_hu():
    x = _batch(8)
    y = randomise(x, np.random.default_rng(2), LO, WIDTH, **{**OFF, "hu_offset": 10.0})
    shift_hu = (y - x) * WIDTH  # inside every window here (10-60 HU)
    per_sample = shift_hu.flatten(1)
    assert torch.allclose(per_sample, per_sample[:, :1].expand_as(per_sample), atol=0.05)
    assert per_sample.abs().max() <= 10.0 + 1e-3 and per_sample.abs().max() > 1.0


def test_noise_blur_lowres_and_lossy_change_the_image_within_their_bounds():
    x = _batch(16)
    y = randomise(x, np.random.default_rng(3), LO, WIDTH, **{**OFF, "noise_hu": 6.0, "p_lowres": 1.0, "p_lossy": 1.0})
    d = ((y - x)[:, 1] * 80).flatten()  # brain window, HU
    assert 1.0 < float(d.std()) < 30.0
    assert ((y >= 0) & (y <= 1)).all()


def test_block_dct_quantise_keeps_the_mean_and_bounds_the_error():
    hu = torch.as_tensor(np.random.default_rng(4).normal(30, 5, (2, 1, 16, 16)), dtype=torch.float32)
    fine = block_dct_quantise(hu, torch.full((2,), 1e-3))
    assert torch.allclose(fine, hu, atol=1e-2)
    coarse = block_dct_quantise(hu, torch.full((2,), 4.0))
    assert abs(float(coarse.mean() - hu.mean())) < 1.0
    assert 0 < float((coarse - hu).pow(2).mean().sqrt()) < 6.0


def test_p_mimic_draws_each_studys_mimics_from_its_own_stream():
    from radtriage.synth.ct_head.mimics import MIMICS
    from radtriage.training.ich import study_options

    assert study_options(1, 0, {"matrix": 64}) == {"matrix": 64}  # default unchanged: no mimics option
    assert study_options(1, 0, {"p_mimic": 0.0})["mimics"] == []
    assert study_options(1, 0, {"p_mimic": 1.0})["mimics"] == list(MIMICS)
    draws = [tuple(study_options(1, i, {"p_mimic": 0.3, "positive": True})["mimics"]) for i in range(20)]
    assert draws == [tuple(study_options(1, i, {"p_mimic": 0.3})["mimics"]) for i in range(20)]
    assert len(set(draws)) > 5 and 0.1 < np.mean([len(d) for d in draws]) / len(MIMICS) < 0.6


def test_ich_trains_with_mimics_and_domain_randomisation(tmp_path):
    from radtriage.inference.card import load_card
    from radtriage.training import ich

    ich.train(tmp_path, smoke=True, sample_kwargs={"matrix": 64, "p_mimic": 0.5}, augment={}, version="9.9.9",
              log=lambda *_: None)
    card = load_card(tmp_path / ich.MODEL_ID)
    assert card.version == "9.9.9"
    assert card.training["domain_randomisation"]["hu_offset"] == 10.0
    assert "probability 0.5" in card.training_data["mimics"]


def test_clipped_bone_and_air_stay_clipped_under_a_calibration_shift():
    x = torch.zeros(4, len(CHANNELS), 16, 16)
    x[..., :8] = 1.0  # bone in the brain and subdural windows
    x[:, 3, :, :8] = 0.9  # inside the bone window
    y = randomise(x, np.random.default_rng(5), LO, WIDTH, **{**OFF, "hu_offset": 10.0, "noise_hu": 6.0})
    assert (y[:, [0, 1, 2, 4], :, :8] == 1).all() and (y[:, [0, 1, 2, 4], :, 8:] == 0).all()


def test_a_network_started_from_the_shipped_onnx_gives_its_outputs():
    """`onnx_init`: the folded BatchNorms restored, the torch network reads as the exported graph does."""
    import onnxruntime as ort

    from radtriage.training.ich import MirrorAverage, make_net
    from radtriage.training.onnx_init import freeze_batchnorm, load_onnx_weights

    path = Path(__file__).resolve().parents[2] / "models" / "ich-densenet2d" / "model.onnx"
    net = make_net()
    load_onnx_weights(net, path)
    x = np.random.default_rng(6).random((2, len(CHANNELS), 160, 160)).astype(np.float32)
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    want = sess.run(None, {sess.get_inputs()[0].name: x})[0]
    with torch.no_grad():
        got = MirrorAverage(net).eval()(torch.as_tensor(x)).numpy()
    assert np.abs(got - want).max() < 1e-3
    net.train()
    freeze_batchnorm(net)
    assert not any(m.training for m in net.modules() if isinstance(m, torch.nn.BatchNorm2d))
    assert net.training
