"""The `bone_age` reference model: bone age in months from a hand radiograph and sex.

A small MONAI ResNet reads the radiograph cropped to the hand (see
`radtriage.inference.bone_age.to_input`, shared with inference); its features
are joined with sex (1 male, 0 female) and a small head gives bone age in
months. Trained on synthetic hands (`radtriage.synth.xr_hand`) only, or on a
site's labelled hands (RSNA bone age layout) when given a dataset.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import torch
from monai.networks.nets import ResNet

from radtriage.inference.bone_age import SIZE, sex_code, to_input
from radtriage.inference.card import TensorSpec
from radtriage.training.data import cached, draw
from radtriage.training.export import export_model
from radtriage.training.metrics import regression_report

MODEL_ID = "bone-age-resnet2d"
MODEL_VERSION = "0.2.0"
SCALE = 100.0  # the network works in hundreds of months
RENDER = 384  # synthetic hands are drawn at this square size, then cropped and resized to SIZE


class BoneAgeNet(torch.nn.Module):
    """ResNet features of the image, joined with sex, to months."""

    def __init__(self) -> None:
        super().__init__()
        self.features = ResNet(
            block="basic", layers=(1, 1, 1, 1), block_inplanes=(32, 64, 128, 256),
            spatial_dims=2, n_input_channels=1, conv1_t_stride=2, num_classes=64,
        )
        self.head = torch.nn.Sequential(torch.nn.ReLU(), torch.nn.Linear(65, 32), torch.nn.ReLU(), torch.nn.Linear(32, 1))

    def forward(self, image: torch.Tensor, sex: torch.Tensor) -> torch.Tensor:
        return self.head(torch.cat([self.features(image), sex], dim=1)) * SCALE


def _one_hand(args: tuple[int, int, int]) -> tuple[np.ndarray, float, float, str]:
    from radtriage.synth import xr_hand

    seed, i, size = args
    s = xr_hand.sample(np.random.default_rng([seed, i]), size=max(RENDER, size))
    return to_input(s.image, size).astype(np.float16), s.truth["bone_age_months"], sex_code(s.truth["sex"]), s.truth["sex"]


def build(seed: int, n: int, size: int = SIZE, workers: int = 2) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``n`` synthetic hands (hand i from (seed, i)): inputs (n, 1, size, size), sex (n, 1), bone age (n,).

    Drawn in worker processes and cached (see `radtriage.training.data`).
    """

    def make() -> dict[str, np.ndarray]:
        rows = draw(_one_hand, [(seed, i, size) for i in range(n)], workers if n > 8 else 1, chunksize=16)
        return {"x": np.stack([r[0] for r in rows]), "sex": np.array([[r[2]] for r in rows], np.float32),
                "age": np.array([r[1] for r in rows], np.float32)}

    z = cached("bone_age", [seed, n, size, RENDER], make)
    return z["x"], z["sex"], z["age"]


def from_examples(examples: Iterable, size: int = SIZE) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A site's labelled hands (`radtriage.datasets.Example`, task bone_age) as training arrays."""
    xs, sexes, ages = [], [], []
    for e in examples:
        xs.append(to_input(e.load().array, size).astype(np.float16))
        sexes.append([sex_code(e.label["sex"])])
        ages.append(float(e.label["bone_age_months"]))
    if not xs:
        raise ValueError("the dataset holds no labelled hands")
    return np.stack(xs), np.array(sexes, np.float32), np.array(ages, np.float32)


def predict(net: torch.nn.Module, x: np.ndarray, sex: np.ndarray, batch: int = 64) -> np.ndarray:
    net.eval()
    out = []
    with torch.no_grad():
        for i in range(0, len(x), batch):
            xb = torch.as_tensor(x[i : i + batch], dtype=torch.float32)
            out.append(net(xb, torch.as_tensor(sex[i : i + batch])).numpy()[:, 0])
    return np.concatenate(out)


def recalibrate_batchnorm(net: torch.nn.Module, x: np.ndarray, sex: np.ndarray, rng: np.random.Generator,
                          batches: int = 20, batch: int = 32) -> None:
    """Re-estimate BatchNorm statistics on un-augmented training images (cumulative average).

    Training batches are augmented (gamma, noise); inference images are not. The
    running statistics are recomputed on plain images so eval-mode normalisation
    matches what the model sees at inference.
    """
    bns = [m for m in net.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    saved = [m.momentum for m in bns]
    for m in bns:
        m.reset_running_stats()
        m.momentum = None
    net.train()
    with torch.no_grad():
        for _ in range(batches):
            idx = rng.integers(0, len(x), batch)
            net(torch.as_tensor(x[idx], dtype=torch.float32), torch.as_tensor(sex[idx]))
    for m, mom in zip(bns, saved, strict=True):
        m.momentum = mom
    net.eval()


def _split(n: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    order = np.random.default_rng(seed).permutation(n)
    n_val, n_test = max(1, n // 10), max(1, n // 5)
    return order[n_val + n_test :], order[:n_val], order[n_val : n_val + n_test]


def _hands(dataset: Iterable | None, seed: int, size: int, n_train: int, n_val: int, n_test: int) -> tuple[tuple, dict]:
    """((images, sex, age) of training, validation and test), and the card's ``training_data``."""
    if dataset is not None:
        ax, asex, aage = from_examples(dataset, size)
        tr, va, te = _split(len(ax), seed)
        parts = tuple((ax[i], asex[i], aage[i]) for i in (tr, va, te))
        return parts, {"synthetic": False, "source": "site dataset (RSNA bone age layout)", "hands": int(len(ax))}
    parts = (build(seed * 1000 + 1, n_train, size), build(seed * 1000 + 2, n_val, size),
             build(seed * 1000 + 3, n_test, size))
    return parts, {"synthetic": True, "generator": "radtriage.synth.xr_hand",
                   "seeds": {"train": [seed * 1000 + 1, n_train], "validation": [seed * 1000 + 2, n_val],
                             "test": [seed * 1000 + 3, n_test]}}


def _fit(net: BoneAgeNet, train_set: tuple, val_set: tuple, seed: int, minutes: float, max_steps: int,
         log) -> tuple[int, int, tuple]:
    """Train within ``minutes`` or ``max_steps``; keep the weights of best validation MAE.

    Returns (steps, batch, (best validation MAE, its weights, its step)).
    """
    (x, sex, age), (vx, vsex, vage) = train_set, val_set
    base_lr = 2e-3
    opt = torch.optim.AdamW(net.parameters(), lr=base_lr, weight_decay=1e-4)
    rng = np.random.default_rng(seed)
    t_train, budget = time.perf_counter(), minutes * 60
    step, batch = 0, 32
    best = (float("inf"), None, 0)
    while (elapsed := time.perf_counter() - t_train) < budget and step < max_steps:
        for group in opt.param_groups:  # cosine decay over the time budget
            group["lr"] = base_lr * 0.5 * (1 + math.cos(math.pi * min(max(elapsed / budget, step / max_steps), 1.0)))
        idx = rng.integers(0, len(x), batch)
        xb = torch.as_tensor(x[idx], dtype=torch.float32)
        # exposure and contrast vary between systems; quantum noise
        gamma = torch.as_tensor(rng.uniform(0.8, 1.25, (batch, 1, 1, 1)), dtype=torch.float32)
        xb = xb.clamp(0, 1) ** gamma + torch.randn_like(xb) * float(rng.uniform(0, 0.03))
        net.train()
        opt.zero_grad()
        loss = torch.nn.functional.l1_loss(net(xb.clamp(0, 1), torch.as_tensor(sex[idx]))[:, 0] / SCALE,
                                           torch.as_tensor(age[idx]) / SCALE)
        loss.backward()
        opt.step()
        step += 1
        if step % 200 == 0 or step == max_steps:
            raw_mae = float(np.abs(predict(net, vx, vsex) - vage).mean())
            recalibrate_batchnorm(net, x, sex, np.random.default_rng(step))
            val_mae = float(np.abs(predict(net, vx, vsex) - vage).mean())
            if val_mae < best[0]:
                best = (val_mae, {k: v.clone() for k, v in net.state_dict().items()}, step)
            log(f"bone_age: step {step} L1 {loss.item() * SCALE:.2f} months, validation MAE {val_mae:.2f} "
                f"(before BatchNorm recalibration {raw_mae:.2f}) ({elapsed:.0f} s)")
    if best[1] is not None:
        net.load_state_dict(best[1])
    return step, batch, best


def _card(size: int, metrics: dict, data_card: dict, training: dict) -> dict:
    return {
        "id": MODEL_ID, "version": MODEL_VERSION, "task": "bone_age",
        "architecture": "MONAI ResNet 2D (7x7/2 stem, basic blocks 1-1-1-1, widths 32-256) features + sex, MLP head",
        "inputs": [
            TensorSpec(name="image", shape=["batch", 1, size, size],
                       description="PA hand radiograph, bone bright (MONOCHROME1 inverted), percentiles 0.5-99.5 to [0,1], square crop around the hand, resized"),
            TensorSpec(name="sex", shape=["batch", 1], description="1 male, 0 female"),
        ],
        "outputs": [TensorSpec(name="bone_age_months", shape=["batch", 1], description="bone age in months")],
        "preprocessing": {"size": size, "photometric": "MONOCHROME2 (invert MONOCHROME1)",
                          "intensity": "0.5th-99.5th percentile to [0, 1]",
                          "crop": "square around the largest bright object (hand and forearm), shutters trimmed, 10% margin"},
        "metrics": metrics,
        "training_data": data_card,
        "training": training,
        "not_for": ["clinical use", "real radiographs (never trained or validated on them)",
                    "skeletal dysplasias, fractures or casts"],
        "limitations": ["trained on synthetic hands only; Greulich-Pyle timing as modelled by the generator"],
    }


def train(out: Path, seed: int = 1, n_train: int = 6000, n_val: int = 300, n_test: int = 300, minutes: float = 14.0,
          smoke: bool = False, steps: int | None = None, log=print, dataset: Iterable | None = None) -> dict:
    """Draw (or read) the hands, train, keep the best validation step, measure on the test hands, export."""
    torch.manual_seed(seed)
    torch.set_num_threads(2)
    size = 64 if smoke else SIZE
    if smoke:
        n_train, n_val, n_test = 8, 4, 4
    t0 = time.perf_counter()
    (train_set, val_set, (tx, tsex, tage)), data_card = _hands(dataset, seed, size, n_train, n_val, n_test)
    log(f"bone_age: {len(train_set[0])} training hands in {time.perf_counter() - t0:.0f} s")
    net = BoneAgeNet()
    max_steps = 2 if smoke else (steps or 10**9)
    step, batch, best = _fit(net, train_set, val_set, seed, minutes, max_steps, log)
    log(f"bone_age: trained {step} step in {time.perf_counter() - t0:.0f} s; kept step {best[2]}")
    pred = predict(net, tx, tsex)
    metrics = {"bone_age_months": regression_report(tage, pred, 200 if smoke else 1000),
               "validation_mae_months": round(best[0], 2)}
    log(f"bone_age: test MAE {metrics['bone_age_months']['mae']['value']:.2f} months")
    training = {"steps": step, "batch": batch, "optimizer": "AdamW lr 2e-3 cosine, L1 loss", "kept_step": best[2],
                "seed": seed, "minutes": round((time.perf_counter() - t0) / 60, 1)}
    card = export_model(out / MODEL_ID, net, (torch.zeros(1, 1, size, size), torch.zeros(1, 1)),
                        _card(size, metrics, data_card, training))
    return {"card": card, "metrics": metrics}
