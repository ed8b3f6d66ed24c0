"""The `ich` reference model: slice-level haemorrhage (any + 5 RSNA subtypes).

A small MONAI DenseNet reads each axial slice as three CT windows (brain,
subdural, bone) at 160x160 and gives six logits in RSNA order. A study's
score is the highest slice probability of "any"; its subtype the subtype of
highest probability. Trained on synthetic CT heads only (see
`radtriage.synth.ct_head`); the card says so and what it is not for.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from monai.networks.nets import DenseNet

from radtriage.inference.card import TensorSpec
from radtriage.inference.preprocess import HEAD_WINDOWS, ct_windows
from radtriage.training.export import export_model
from radtriage.training.metrics import binary_report, threshold_for_sensitivity

SUBTYPES = ("epidural", "intraparenchymal", "intraventricular", "subarachnoid", "subdural")
OUTPUTS = (*SUBTYPES, "any")
SIZE = 160
MODEL_ID = "ich-densenet2d"
MODEL_VERSION = "0.1.0"


def make_net() -> torch.nn.Module:
    return DenseNet(
        spatial_dims=2, in_channels=len(HEAD_WINDOWS), out_channels=len(OUTPUTS),
        init_features=16, growth_rate=12, block_config=(4, 8, 12, 8),
    )


@dataclass
class SliceSet:
    """Windowed slices with their labels, and which study each came from."""

    x: np.ndarray  # (n, 3, SIZE, SIZE) float16
    y: np.ndarray  # (n, 6) uint8
    study: np.ndarray  # (n,) int
    study_positive: np.ndarray  # (n_studies,) uint8
    study_subtype: list[str | None]


def slice_labels(truth: dict, n_slices: int) -> np.ndarray:
    """(z, 6) labels from a ct-head truth: each haemorrhage marks its slices."""
    y = np.zeros((n_slices, len(OUTPUTS)), dtype=np.uint8)
    for h in truth.get("haemorrhages", []):
        k = SUBTYPES.index(h["subtype"])
        for z in h["slices"]:
            if 0 <= z < n_slices:
                y[z, k] = 1
                y[z, -1] = 1
    return y


def _one_study(args: tuple[int, int, dict]) -> tuple[np.ndarray, np.ndarray, list]:
    from radtriage.synth import ct_head

    seed, i, kwargs = args
    s = ct_head.sample(np.random.default_rng([seed, i]), **kwargs)
    torch.set_num_threads(1)
    return (
        ct_windows(s.hu, size=SIZE).astype(np.float16),
        slice_labels(s.truth, s.hu.shape[0]),
        s.truth.get("haemorrhages", []),
    )


def build(seed: int, n_studies: int, sample_kwargs: dict | None = None, workers: int = 2) -> SliceSet:
    """Draw ``n_studies`` synthetic heads (study i from (seed, i)) as training slices."""
    jobs = [(seed, i, dict(sample_kwargs or {})) for i in range(n_studies)]
    if workers > 1 and n_studies > 1:
        import multiprocessing as mp

        with mp.get_context("spawn").Pool(workers) as pool:
            results = pool.map(_one_study, jobs, chunksize=1)
    else:
        results = [_one_study(j) for j in jobs]
    xs, ys, ss, pos, sub = [], [], [], [], []
    for i, (x, y, hs) in enumerate(results):
        xs.append(x)
        ys.append(y)
        ss.append(np.full(len(x), i))
        pos.append(1 if hs else 0)
        sub.append(hs[0]["subtype"] if hs else None)
    return SliceSet(np.concatenate(xs), np.concatenate(ys), np.concatenate(ss), np.array(pos, np.uint8), sub)


def predict(net: torch.nn.Module, x: np.ndarray, batch: int = 64) -> np.ndarray:
    net.eval()
    out = []
    with torch.no_grad():
        for i in range(0, len(x), batch):
            out.append(torch.sigmoid(net(torch.as_tensor(x[i : i + batch], dtype=torch.float32))).numpy())
    return np.concatenate(out)


def study_scores(probs: np.ndarray, study: np.ndarray, n_studies: int) -> np.ndarray:
    """A study's score: its highest slice probability of any haemorrhage."""
    scores = np.zeros(n_studies)
    np.maximum.at(scores, study, probs[:, -1])
    return scores


def train(
    out: Path,
    seed: int = 1,
    n_train: int = 240,
    n_val: int = 60,
    n_test: int = 200,
    minutes: float = 12.0,
    smoke: bool = False,
    sample_kwargs: dict | None = None,
    log=print,
) -> dict:
    """Train, choose the threshold on validation, measure on a fresh test set, export."""
    torch.manual_seed(seed)
    torch.set_num_threads(2)
    kw = dict(DEFAULT_SAMPLE if sample_kwargs is None else sample_kwargs)
    if smoke:
        n_train, n_val, n_test, kw = 2, 2, 2, {**kw, **_SMOKE_SAMPLE}
    t0 = time.perf_counter()
    workers = 1 if smoke else 2
    data = build(seed * 1000 + 1, n_train, kw, workers)
    val = build(seed * 1000 + 2, n_val, kw, workers)
    log(f"ich: {len(data.x)} training slices from {n_train} studies in {time.perf_counter() - t0:.0f} s")

    net = make_net()
    opt = torch.optim.AdamW(net.parameters(), lr=2e-3, weight_decay=1e-4)
    pos_rate = data.y.mean(axis=0).clip(1e-3, 1)
    loss_fn = torch.nn.BCEWithLogitsLoss(pos_weight=torch.as_tensor((1 - pos_rate) / pos_rate).clamp(max=20))
    rng = np.random.default_rng(seed)
    deadline = time.perf_counter() + minutes * 60
    steps, batch = 0, 32
    max_steps = 2 if smoke else 10**9
    while time.perf_counter() < deadline and steps < max_steps:
        # oversample slices with haemorrhage to half of each batch
        pos_idx, neg_idx = np.flatnonzero(data.y[:, -1]), np.flatnonzero(data.y[:, -1] == 0)
        half = batch // 2
        idx = np.concatenate([
            rng.choice(pos_idx, half) if len(pos_idx) else rng.choice(neg_idx, half),
            rng.choice(neg_idx, batch - half),
        ])
        x = torch.as_tensor(data.x[idx], dtype=torch.float32)
        if rng.random() < 0.5:
            x = torch.flip(x, dims=[3])  # left-right
        net.train()
        opt.zero_grad()
        loss = loss_fn(net(x), torch.as_tensor(data.y[idx], dtype=torch.float32))
        loss.backward()
        opt.step()
        steps += 1
        if steps % 100 == 0:
            log(f"ich: step {steps} loss {loss.item():.4f}")
    log(f"ich: trained {steps} steps in {time.perf_counter() - t0:.0f} s")

    val_scores = study_scores(predict(net, val.x), val.study, n_val)
    threshold = threshold_for_sensitivity(val.study_positive, val_scores, 0.95)
    test = build(seed * 1000 + 3, n_test, kw, workers)
    test_scores = study_scores(predict(net, test.x), test.study, n_test)
    metrics = {"study_level": binary_report(test.study_positive, test_scores, threshold, 200 if smoke else 1000)}
    log(f"ich: test AUC {metrics['study_level']['auc']['value']:.3f} at threshold {threshold:.3f}")
    card = export_model(
        out / MODEL_ID,
        net,
        (torch.zeros(1, len(HEAD_WINDOWS), SIZE, SIZE),),
        ["slices"],
        ["logits"],
        {
            "id": MODEL_ID,
            "version": MODEL_VERSION,
            "task": "ich",
            "architecture": "MONAI DenseNet 2D (init 16, growth 12, blocks 4-8-12-8), 0.38 M parameters",
            "inputs": [TensorSpec(name="slices", shape=["batch", 3, SIZE, SIZE],
                                  description="axial slices, 3 CT windows (brain 40/80, subdural 80/200, bone 600/2800) scaled to [0,1], resized to 160x160")],
            "outputs": [TensorSpec(name="logits", shape=["batch", 6],
                                   description="logits of " + ", ".join(OUTPUTS) + " (sigmoid for probabilities)")],
            "preprocessing": {"windows_hu": [list(w) for w in HEAD_WINDOWS], "size": SIZE,
                              "orientation": "axial, DICOM LPS rows/columns as stored",
                              "aggregation": "study score = max slice P(any)"},
            "thresholds": {"any": round(threshold, 4)},
            "metrics": metrics,
            "training_data": {"synthetic": True, "generator": "radtriage.synth.ct_head",
                              "seeds": {"train": [seed * 1000 + 1, n_train], "validation": [seed * 1000 + 2, n_val],
                                        "test": [seed * 1000 + 3, n_test]},
                              "slices": int(len(data.x))},
            "training": {"steps": steps, "batch": batch, "optimizer": "AdamW lr 2e-3", "seed": seed,
                         "minutes": round((time.perf_counter() - t0) / 60, 1)},
            "not_for": ["clinical use", "real patient CT (never trained or validated on it)", "paediatric heads",
                        "contrast-enhanced CT"],
            "limitations": ["trained on synthetic phantoms only", "threshold chosen for 95% sensitivity on synthetic validation data"],
        },
    )
    return {"card": card, "metrics": metrics}


_SMOKE_SAMPLE: dict = {"matrix": 64, "max_slices": 4}
DEFAULT_SAMPLE: dict = {"matrix": 192}
