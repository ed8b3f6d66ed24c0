"""Bone age on detector-mode hands: the shipped model fine-tuned with domain randomisation.

The hands come from `radtriage.synth.xr_hand` with ``acquisition="detector"``
(polychromatic beam, scatter, CR/DR detector, vendor processing, 8-bit and
12-16-bit exports, and the department conditions of `xr_hand.department`:
rotation, off-centre, markers, rings, casts and splints, low and high
exposure, low-resolution exports), a share of phantom-mode hands so the old
domain is not forgotten, and some conditions drawn more often than a
department would (`BOOST`). One vendor (`HELD_OUT_VENDOR`) is never drawn
for training: the test set reports it apart. MONOCHROME1/2 is a header matter
(`imaging.decode` inverts MONOCHROME1 before the model): the arrays here are
already denser-brighter.

At training time every batch is changed as another system or archive would
(`randomise_hand`): intensity scale, offset and gamma, noise, blur, the
resolution cut to ~96-160 px across and resized back, JPEG-like 8 x 8 DCT
quantisation (`training.augment.block_dct_quantise`).

Fine-tuning starts from a model folder's ONNX weights (`training.onnx_init`)
with every BatchNorm frozen, at a lower learning rate.
"""

from __future__ import annotations

import math
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from radtriage.inference.bone_age import SIZE, sex_code, to_input
from radtriage.inference.card import load_card
from radtriage.training import bone_age as base
from radtriage.training.augment import _gaussian, block_dct_quantise
from radtriage.training.data import cached, draw
from radtriage.training.export import export_model
from radtriage.training.metrics import regression_report
from radtriage.training.onnx_init import freeze_batchnorm, load_onnx_weights

VERSION = "0.3.0"
HELD_OUT_VENDOR = "CR 30-X"
P_PHANTOM = 0.2  # share of phantom-mode hands in the training set
P_NATIVE_LOWRES = 0.08  # share drawn at the detector's matrix with a low-resolution export (slow: ~1 s a hand)
BOOST = {"low_exposure": 0.12, "over_exposure": 0.06, "8bit": 0.25, "rotated": 0.25, "off_centre": 0.25,
         "ring": 0.08, "bracelet": 0.05, "splint": 0.06, "cast": 0.05, "grid": 0.15, "second_hand": 0.05}
AUGMENT = {"scale": 0.15, "offset": 0.08, "gamma": (0.7, 1.4), "noise": 0.04, "blur_px": 1.5, "p_lowres": 0.35,
           "lowres_px": (96, 160), "p_lossy": 0.3, "lossy_step": (2.0, 8.0)}


def training_conditions(rng: np.random.Generator) -> tuple[str, ...]:
    """The department's conditions drawn with their probabilities, plus `BOOST` draws."""
    from radtriage.synth.xr_hand import department

    drawn = set(department.draw_conditions(rng)) | {c for c, p in BOOST.items() if rng.random() < p}
    return tuple(sorted(department.draw_conditions(rng, tuple(sorted(drawn)))))


def render_hand(rng: np.random.Generator, size: int, conditions: tuple[str, ...], vendor: str | None,
                native: bool) -> tuple[np.ndarray, dict]:
    """One detector-mode hand as a model input (1, size, size) and its truth; ``native``: the detector's matrix
    (needed for a low-resolution export), else a `base.RENDER` square."""
    from radtriage.synth import xr_hand

    s = xr_hand.sample(rng, acquisition="detector", conditions=conditions, vendor=vendor,
                       size=None if native else max(base.RENDER, size))
    return to_input(s.image, size), s.truth


def _one_training_hand(args: tuple[int, int, int]) -> tuple[np.ndarray, float, float]:
    from radtriage.synth.xr_hand.detector import VENDORS

    seed, i, size = args
    rng = np.random.default_rng([seed, i])
    conds = set(training_conditions(rng))
    native = rng.random() < P_NATIVE_LOWRES
    conds = conds | {"low_resolution"} if native else conds - {"low_resolution"}
    vendor = str(rng.choice([v for v in VENDORS if v != HELD_OUT_VENDOR]))
    x, truth = render_hand(rng, size, tuple(sorted(conds)), vendor, native)
    return x.astype(np.float16), truth["bone_age_months"], sex_code(truth["sex"])


def build(seed: int, n: int, size: int = SIZE, workers: int = 2) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``n`` training hands: detector-mode (seed, i), with ``P_PHANTOM`` of them phantom-mode (`base.build`)."""
    n_phantom = int(round(n * P_PHANTOM))

    def make() -> dict[str, np.ndarray]:
        rows = draw(_one_training_hand, [(seed, i, size) for i in range(n - n_phantom)],
                    workers if n > 8 else 1, chunksize=8)
        return {"x": np.stack([r[0] for r in rows]), "sex": np.array([[r[2]] for r in rows], np.float32),
                "age": np.array([r[1] for r in rows], np.float32)}

    z = cached("bone_age_detector", [seed, n - n_phantom, size, base.RENDER, sorted(BOOST.items()), P_NATIVE_LOWRES,
                                     HELD_OUT_VENDOR], make)
    if n_phantom == 0:
        return z["x"], z["sex"], z["age"]
    px, psex, page = base.build(seed + 500, n_phantom, size, workers)
    return np.concatenate([z["x"], px]), np.concatenate([z["sex"], psex]), np.concatenate([z["age"], page])


def randomise_hand(x: torch.Tensor, rng: np.random.Generator, scale: float = 0.15, offset: float = 0.08,
                   gamma: tuple[float, float] = (0.7, 1.4), noise: float = 0.04, blur_px: float = 1.5,
                   p_lowres: float = 0.35, lowres_px: tuple[int, int] = (96, 160), p_lossy: float = 0.3,
                   lossy_step: tuple[float, float] = (2.0, 8.0)) -> torch.Tensor:
    """A batch of hand inputs (B, 1, H, W in [0, 1]) as another system, export or archive would give them."""
    b, _, h, w = x.shape

    def per_sample(a: float, z: float) -> torch.Tensor:
        return torch.as_tensor(rng.uniform(a, z, b), dtype=torch.float32).view(b, 1, 1, 1)

    x = x.clamp(0, 1) ** per_sample(*gamma)
    x = x * per_sample(1 - scale, 1 + scale) + per_sample(-offset, offset)
    x = _gaussian(x, per_sample(0, blur_px).view(b))
    low = np.flatnonzero(rng.random(b) < p_lowres)
    for i in low:  # the hand at ~100-160 px across, resized back as the pre-processing would
        side = int(rng.integers(*lowres_px))
        small = F.interpolate(x[i : i + 1], size=(side, side), mode="area")
        x[i : i + 1] = F.interpolate(small, size=(h, w), mode="bilinear", align_corners=False)
    x = x + torch.randn_like(x) * per_sample(0, noise)
    lossy = torch.as_tensor(rng.random(b) < p_lossy)
    if lossy.any() and h % 8 == 0 and w % 8 == 0:  # in 8-bit grey levels, as a JPEG of the export
        x[lossy] = block_dct_quantise(x[lossy] * 255, per_sample(*lossy_step).view(b)[lossy]) / 255
    return x.clamp(0, 1)


def _fit(net: base.BoneAgeNet, train_set: tuple, val_set: tuple, seed: int, minutes: float, max_steps: int,
         lr: float, log) -> tuple[int, tuple]:
    """Fine-tune (BatchNorm frozen) within ``minutes``/``max_steps``; keep the best validation MAE's weights."""
    (x, sex, age), (vx, vsex, vage) = train_set, val_set
    opt = torch.optim.AdamW(net.parameters(), lr=lr, weight_decay=1e-4)
    rng = np.random.default_rng(seed)
    t0, budget, step, batch = time.perf_counter(), minutes * 60, 0, 32
    best = (float(np.abs(base.predict(net, vx, vsex) - vage).mean()),  # the start counts: kept if never beaten
            {k: v.clone() for k, v in net.state_dict().items()}, 0)
    log(f"bone_age: validation MAE at the start {best[0]:.2f}")
    while (elapsed := time.perf_counter() - t0) < budget and step < max_steps:
        for group in opt.param_groups:  # cosine decay over the budget
            group["lr"] = lr * 0.5 * (1 + math.cos(math.pi * min(max(elapsed / budget, step / max_steps), 1.0)))
        idx = rng.integers(0, len(x), batch)
        xb = randomise_hand(torch.as_tensor(x[idx], dtype=torch.float32), rng, **AUGMENT)
        net.train()
        freeze_batchnorm(net)
        opt.zero_grad()
        loss = F.l1_loss(net(xb, torch.as_tensor(sex[idx]))[:, 0] / base.SCALE, torch.as_tensor(age[idx]) / base.SCALE)
        loss.backward()
        opt.step()
        step += 1
        if step % 100 == 0 or step == max_steps:
            val_mae = float(np.abs(base.predict(net, vx, vsex) - vage).mean())
            if val_mae < best[0]:
                best = (val_mae, {k: v.clone() for k, v in net.state_dict().items()}, step)
            log(f"bone_age: step {step} L1 {loss.item() * base.SCALE:.2f}, validation MAE {val_mae:.2f} ({elapsed:.0f} s)")
    net.load_state_dict(best[1])
    return step, best


def train(out: Path, init: Path, seed: int = 2, n_train: int = 3000, n_val: int = 200, n_test: int = 200,
          minutes: float = 25.0, smoke: bool = False, steps: int | None = None, log=print) -> dict:
    """Draw detector-mode hands, fine-tune ``init``'s weights, measure on held-out test hands, export."""
    torch.manual_seed(seed)
    torch.set_num_threads(2)
    size = 64 if smoke else SIZE
    if smoke:
        n_train, n_val, n_test = 6, 4, 4
    t0 = time.perf_counter()
    s_train, s_val, s_test = seed * 1000 + 11, seed * 1000 + 12, seed * 1000 + 13
    train_set, val_set = build(s_train, n_train, size), build(s_val, n_val, size)
    tx, tsex, tage = build(s_test, n_test, size)
    log(f"bone_age: {len(train_set[0])} training hands in {time.perf_counter() - t0:.0f} s")
    net = base.BoneAgeNet()
    load_onnx_weights(net, Path(init) / "model.onnx", prefix="")
    step, best = _fit(net, train_set, val_set, seed, minutes, 2 if smoke else (steps or 10**9), 5e-4, log)
    pred = base.predict(net, tx, tsex)
    metrics = {"bone_age_months": regression_report(tage, pred, 200 if smoke else 1000),
               "validation_mae_months": round(best[0], 2)}
    log(f"bone_age: trained {step} steps, kept {best[2]}; test MAE {metrics['bone_age_months']['mae']['value']:.2f}")
    data_card = {"synthetic": True, "generator": "radtriage.synth.xr_hand (acquisition detector, and phantom)",
                 "share_phantom": P_PHANTOM, "held_out_vendor": HELD_OUT_VENDOR,
                 "seeds": {"train": [s_train, n_train], "validation": [s_val, n_val], "test": [s_test, n_test]}}
    training = {"steps": step, "batch": 32, "kept_step": best[2], "seed": seed,
                "optimizer": "AdamW lr 5e-4 cosine, L1 loss, BatchNorm frozen",
                "init": f"{load_card(Path(init)).id} {load_card(Path(init)).version}",
                "domain_randomisation": {k: list(v) if isinstance(v, tuple) else v for k, v in AUGMENT.items()},
                "condition_boost": BOOST, "minutes": round((time.perf_counter() - t0) / 60, 1)}
    card = base._card(size, metrics, data_card, training)
    card["version"] = VERSION
    card = export_model(out / base.MODEL_ID, net, (torch.zeros(1, 1, size, size), torch.zeros(1, 1)), card)
    return {"card": card, "metrics": metrics}
