"""The `bone_age` reference model: bone age in months from a hand radiograph and sex.

A small MONAI DenseNet reads the radiograph (bone bright, [0, 1], padded to a
square and resized to 256x256); its features are joined with sex (1 male,
0 female) and a linear head gives bone age in months. Trained on synthetic
hands (`radtriage.synth.xr_hand`) only.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import torch
from monai.networks.nets import DenseNet

from radtriage.inference.card import TensorSpec
from radtriage.training.export import export_model
from radtriage.training.metrics import regression_report

SIZE = 256
MODEL_ID = "bone-age-densenet2d"
MODEL_VERSION = "0.1.0"
SCALE = 100.0  # the network works in hundreds of months


class BoneAgeNet(torch.nn.Module):
    """DenseNet features of the image, joined with sex, to months."""

    def __init__(self) -> None:
        super().__init__()
        self.features = DenseNet(
            spatial_dims=2, in_channels=1, out_channels=32,
            init_features=16, growth_rate=12, block_config=(4, 8, 12, 8),
        )
        self.head = torch.nn.Sequential(torch.nn.ReLU(), torch.nn.Linear(33, 32), torch.nn.ReLU(), torch.nn.Linear(32, 1))

    def forward(self, image: torch.Tensor, sex: torch.Tensor) -> torch.Tensor:
        return self.head(torch.cat([self.features(image), sex], dim=1)) * SCALE


def build(seed: int, n: int, size: int = SIZE) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[dict]]:
    """``n`` synthetic hands (hand i from (seed, i)): images, sex, bone age, truth."""
    from radtriage.synth import xr_hand

    xs, sexes, ages, truths = [], [], [], []
    for i in range(n):
        s = xr_hand.sample(np.random.default_rng([seed, i]), size=size)
        xs.append(s.image.astype(np.float16)[None])
        sexes.append([1.0 if s.truth["sex"] == "M" else 0.0])
        ages.append(s.truth["bone_age_months"])
        truths.append(s.truth)
    return np.stack(xs), np.array(sexes, np.float32), np.array(ages, np.float32), truths


def predict(net: torch.nn.Module, x: np.ndarray, sex: np.ndarray, batch: int = 64) -> np.ndarray:
    net.eval()
    out = []
    with torch.no_grad():
        for i in range(0, len(x), batch):
            xb = torch.as_tensor(x[i : i + batch], dtype=torch.float32)
            out.append(net(xb, torch.as_tensor(sex[i : i + batch])).numpy()[:, 0])
    return np.concatenate(out)


def train(out: Path, seed: int = 1, n_train: int = 4000, n_test: int = 300, minutes: float = 15.0,
          smoke: bool = False, log=print) -> dict:
    torch.manual_seed(seed)
    torch.set_num_threads(2)
    if smoke:
        n_train, n_test = 8, 4
    t0 = time.perf_counter()
    size = 64 if smoke else SIZE
    x, sex, age, _ = build(seed * 1000 + 1, n_train, size)
    log(f"bone_age: {n_train} training hands in {time.perf_counter() - t0:.0f} s")
    net = BoneAgeNet()
    opt = torch.optim.AdamW(net.parameters(), lr=2e-3, weight_decay=1e-4)
    rng = np.random.default_rng(seed)
    deadline = time.perf_counter() + minutes * 60
    steps, batch = 0, 32
    max_steps = 2 if smoke else 10**9
    while time.perf_counter() < deadline and steps < max_steps:
        idx = rng.integers(0, len(x), batch)
        xb = torch.as_tensor(x[idx], dtype=torch.float32)
        # exposure and contrast vary between systems
        gain = torch.as_tensor(rng.uniform(0.85, 1.15, (batch, 1, 1, 1)), dtype=torch.float32)
        gamma = torch.as_tensor(rng.uniform(0.8, 1.25, (batch, 1, 1, 1)), dtype=torch.float32)
        xb = (xb.clamp(0, 1) ** gamma * gain).clamp(0, 1)
        net.train()
        opt.zero_grad()
        loss = torch.nn.functional.l1_loss(net(xb, torch.as_tensor(sex[idx]))[:, 0], torch.as_tensor(age[idx]))
        loss.backward()
        opt.step()
        steps += 1
        if steps % 100 == 0:
            log(f"bone_age: step {steps} L1 {loss.item():.2f} months")
    log(f"bone_age: trained {steps} steps in {time.perf_counter() - t0:.0f} s")
    tx, tsex, tage, _ = build(seed * 1000 + 3, n_test, size)
    pred = predict(net, tx, tsex)
    metrics = {"bone_age_months": regression_report(tage, pred, 200 if smoke else 1000)}
    log(f"bone_age: test MAE {metrics['bone_age_months']['mae']['value']:.2f} months")
    card = export_model(
        out / MODEL_ID,
        net,
        (torch.zeros(1, 1, size, size), torch.zeros(1, 1)),
        ["image", "sex"],
        ["bone_age_months"],
        {
            "id": MODEL_ID,
            "version": MODEL_VERSION,
            "task": "bone_age",
            "architecture": "MONAI DenseNet 2D features (init 16, growth 12, blocks 4-8-12-8) + sex, MLP head",
            "inputs": [
                TensorSpec(name="image", shape=["batch", 1, size, size],
                           description="PA hand radiograph, bone bright, [0,1] (MONOCHROME1 inverted), padded to square, resized"),
                TensorSpec(name="sex", shape=["batch", 1], description="1 male, 0 female"),
            ],
            "outputs": [TensorSpec(name="bone_age_months", shape=["batch", 1], description="bone age in months")],
            "preprocessing": {"size": size, "photometric": "MONOCHROME2 (invert MONOCHROME1)",
                              "intensity": "stored value / (2**BitsStored - 1)", "padding": "to square, background 0"},
            "metrics": metrics,
            "training_data": {"synthetic": True, "generator": "radtriage.synth.xr_hand",
                              "seeds": {"train": [seed * 1000 + 1, n_train], "test": [seed * 1000 + 3, n_test]}},
            "training": {"steps": steps, "batch": batch, "optimizer": "AdamW lr 2e-3, L1 loss", "seed": seed,
                         "minutes": round((time.perf_counter() - t0) / 60, 1)},
            "not_for": ["clinical use", "real radiographs (never trained or validated on them)",
                        "skeletal dysplasias, fractures or casts"],
            "limitations": ["trained on synthetic hands only; Greulich-Pyle timing as modelled by the generator"],
        },
    )
    return {"card": card, "metrics": metrics}
