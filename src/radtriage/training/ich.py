"""The `ich` reference model: slice-level haemorrhage (any + 5 RSNA subtypes).

A small MONAI DenseNet reads each axial slice as three CT windows (brain,
subdural, bone) at 160x160, plus the brain window of its neighbours, and gives
six logits in RSNA order. The exported graph reads each slice and its
left-right mirror and averages the two (`MirrorAverage`): a haemorrhage is one
either way round, and the average halves the chance that one odd slice of a
normal head scores high. A study's score is the highest slice probability of
"any"; its subtype the subtype of highest probability. Trained on synthetic CT
heads only (see `radtriage.synth.ct_head`); the card says so and what it is
not for.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import torch
from monai.networks.nets import DenseNet

from radtriage.inference.card import TensorSpec, load_card
from radtriage.inference.ich import CHANNELS, OUTPUTS, SIZE, SUBTYPES, neighbours, windows, with_context
from radtriage.inference.preprocess import HEAD_WINDOWS
from radtriage.training.augment import DEFAULTS as AUGMENT_DEFAULTS, channel_windows, randomise
from radtriage.training.data import cached, draw, site_parts
from radtriage.training.onnx_init import freeze_batchnorm, load_onnx_weights
from radtriage.training.export import export_model
from radtriage.training.metrics import auc, binary_report, threshold_for_sensitivity

MODEL_ID = "ich-densenet2d"
MODEL_VERSION = "0.3.0"
LOSSY_LIMITATION = ("lossy compression far past diagnostic quality (pydicom-data's 693_J2KI, JPEG 2000 at 339:1) "
                    "can score as haemorrhage; the stroke pipelines do not read CT above 10:1")


def make_net() -> torch.nn.Module:
    return DenseNet(
        spatial_dims=2, in_channels=len(CHANNELS), out_channels=len(OUTPUTS),
        init_features=16, growth_rate=12, block_config=(4, 8, 12, 8),
    )


class MirrorAverage(torch.nn.Module):
    """The net's logits averaged over each slice and its left-right mirror (exported as one graph)."""

    def __init__(self, net: torch.nn.Module) -> None:
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (self.net(x) + self.net(torch.flip(x, dims=[3]))) / 2


@dataclass
class SliceSet:
    """Windowed slices with their labels, neighbours, and which study each came from."""

    win: np.ndarray  # (n, 3, SIZE, SIZE) float16 windows
    y: np.ndarray  # (n, 6) uint8
    below: np.ndarray  # (n,) index of the slice below (itself at the edge)
    above: np.ndarray  # (n,) index of the slice above
    study: np.ndarray  # (n,) int
    study_positive: np.ndarray  # (n_studies,) uint8
    study_subtype: list[str | None]

    def inputs(self, idx: np.ndarray, swap: bool = False) -> np.ndarray:
        below, above = (self.above, self.below) if swap else (self.below, self.above)
        return with_context(self.win, idx, below[idx], above[idx])


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
    torch.set_num_threads(1)
    s = ct_head.sample(np.random.default_rng([seed, i]), **study_options(seed, i, kwargs))
    return windows(s.hu).astype(np.float16), slice_labels(s.truth, s.hu.shape[0]), s.truth.get("haemorrhages", [])


def study_options(seed: int, i: int, kwargs: dict) -> dict:
    """``sample`` options of study i: a training-only ``p_mimic`` becomes the study's own draw of normal mimics.

    Each of `mimics.MIMICS` is in the study with probability ``p_mimic`` (from its own stream, (seed, i, 7)),
    positives as well as normals, so that a mimic says nothing about the label.
    """
    kw = dict(kwargs)
    p = kw.pop("p_mimic", None)
    if p is not None:
        from radtriage.synth.ct_head.mimics import MIMICS

        r = np.random.default_rng([seed, i, 7])
        kw["mimics"] = [m for m in MIMICS if r.random() < p]
    return kw


def build(seed: int, n_studies: int, sample_kwargs: dict | None = None, workers: int = 2) -> SliceSet:
    """Draw ``n_studies`` synthetic heads (study i from (seed, i)) as training slices (cached, see `training.data`)."""
    kwargs = dict(sample_kwargs or {})

    def make() -> dict[str, np.ndarray]:
        out = _assemble(draw(_one_study, [(seed, i, kwargs) for i in range(n_studies)], workers))
        return {"win": out.win, "y": out.y, "below": out.below, "above": out.above, "study": out.study,
                "study_positive": out.study_positive, "study_subtype": np.array([s or "" for s in out.study_subtype])}

    z = cached("ich", [seed, n_studies, kwargs, SIZE], make)
    sub = [s or None for s in z["study_subtype"].tolist()]
    return SliceSet(z["win"], z["y"], z["below"], z["above"], z["study"], z["study_positive"], sub)


def _assemble(results: list) -> SliceSet:
    wins, ys, ss, lo, hi, pos, sub = [], [], [], [], [], [], []
    offset = 0
    for i, (w, y, hs) in enumerate(results):
        below, above = neighbours(len(w))
        wins.append(w)
        ys.append(y)
        ss.append(np.full(len(w), i))
        lo.append(below + offset)
        hi.append(above + offset)
        offset += len(w)
        pos.append(1 if hs else 0)
        sub.append(hs[0]["subtype"] if hs else None)
    return SliceSet(np.concatenate(wins), np.concatenate(ys), np.concatenate(lo), np.concatenate(hi),
                   np.concatenate(ss), np.array(pos, np.uint8), sub)


def from_examples(examples: Iterable, n_max: int | None = None) -> SliceSet:
    """A site's labelled heads (`radtriage.datasets.Example`, task ich, with slice labels) as a SliceSet."""
    results = []
    for e in examples:
        vol = e.load()
        y = np.zeros((vol.array.shape[0], len(OUTPUTS)), np.uint8)
        for k, name in enumerate(OUTPUTS):
            for z in e.label.get("slice_labels", {}).get(name, []):
                if 0 <= z < len(y):
                    y[z, k] = 1
        subtypes = [{"subtype": t} for t in e.label.get("subtypes", [])] if e.label.get("positive") else []
        results.append((windows(vol.array).astype(np.float16), y, subtypes))
        if n_max and len(results) >= n_max:
            break
    if not results:
        raise ValueError("the dataset holds no labelled heads")
    return _assemble(results)


def _subset(data: SliceSet, studies: np.ndarray) -> SliceSet:
    """The slices of some studies, renumbered."""
    new_id = {int(s): i for i, s in enumerate(studies)}
    keep = np.flatnonzero(np.isin(data.study, studies))
    remap = np.full(len(data.win), -1)
    remap[keep] = np.arange(len(keep))
    return SliceSet(data.win[keep], data.y[keep], remap[data.below[keep]], remap[data.above[keep]],
                    np.array([new_id[int(s)] for s in data.study[keep]]), data.study_positive[studies],
                    [data.study_subtype[int(s)] for s in studies])


def split(data: SliceSet, seed: int) -> tuple[SliceSet, SliceSet, SliceSet]:
    """Train / validation / test (70/10/20) by study, never one study in two parts."""
    order = np.random.default_rng(seed).permutation(len(data.study_positive))
    n_val, n_test = max(1, len(order) // 10), max(1, len(order) // 5)
    return (_subset(data, order[n_val + n_test :]), _subset(data, order[:n_val]),
            _subset(data, order[n_val : n_val + n_test]))


def predict(net: torch.nn.Module, data: SliceSet, batch: int = 64) -> np.ndarray:
    """P of the six outputs for every slice of ``data``."""
    net.eval()
    out = []
    with torch.no_grad():
        for i in range(0, len(data.win), batch):
            idx = np.arange(i, min(i + batch, len(data.win)))
            out.append(torch.sigmoid(net(torch.as_tensor(data.inputs(idx), dtype=torch.float32))).numpy())
    return np.concatenate(out)


def study_scores(probs: np.ndarray, study: np.ndarray, n_studies: int) -> np.ndarray:
    """A study's score: its highest slice probability of any haemorrhage."""
    scores = np.zeros(n_studies)
    np.maximum.at(scores, study, probs[:, -1])
    return scores


def _slice_sets(dataset: Iterable | None, seed: int, n_train: int, n_val: int, kw: dict, smoke: bool,
                workers: int) -> tuple[SliceSet, SliceSet, SliceSet | None, dict]:
    """(training, validation, test or None: drawn after training, the card's ``training_data``)."""
    if dataset is None:
        data = build(seed * 1000 + 1, n_train, kw, workers)
        val = build(seed * 1000 + 2, n_val, kw, workers)
        return data, val, None, {"synthetic": True, "generator": "radtriage.synth.ct_head", "options": kw}
    whole = from_examples(dataset, 4 if smoke else None)
    data, val, test = site_parts(whole, len(whole.study_positive), smoke, lambda w: split(w, seed))
    return data, val, test, {"synthetic": False, "source": "site dataset (RSNA ICH layout)",
                             "studies": len(whole.study_positive)}


def _loss(data: SliceSet) -> torch.nn.Module:
    """Binary cross-entropy of the six outputs, each subtype weighted to its rate among positive slices.

    Half of each batch is a slice with haemorrhage (`_fit`), so "any" needs no
    extra weight: weighting it as well made normal slices score high, and a
    study's score is its highest slice.
    """
    pos = data.y[data.y[:, -1] == 1]
    sub_rate = (pos.mean(axis=0) / 2 if len(pos) else np.full(len(OUTPUTS), 0.5)).clip(1e-3, 0.5)
    weight = ((1 - sub_rate) / sub_rate).clip(max=5.0)
    weight[-1] = 1.0
    return torch.nn.BCEWithLogitsLoss(pos_weight=torch.as_tensor(weight, dtype=torch.float32))


def _fit(net: torch.nn.Module, data: SliceSet, seed: int, minutes: float, max_steps: int, log,
         augment: dict | None = None, base_lr: float = 2e-3, frozen_bn: bool = False) -> tuple[int, int]:
    """Train within ``minutes`` or ``max_steps``, half of each batch slices with haemorrhage; (steps, batch).

    augment: `training.augment.randomise` settings (domain randomisation in HU) in place of the default
    calibration offset and white noise. frozen_bn: BatchNorm on its running statistics (fine-tuning, `onnx_init`).
    """
    opt = torch.optim.AdamW(net.parameters(), lr=base_lr, weight_decay=1e-4)
    loss_fn = _loss(data)
    rng = np.random.default_rng(seed)
    t_train = time.perf_counter()
    budget = minutes * 60
    step, batch = 0, 32
    pos_idx, neg_idx = np.flatnonzero(data.y[:, -1]), np.flatnonzero(data.y[:, -1] == 0)
    window_hu = channel_windows(HEAD_WINDOWS, CHANNELS)
    while (elapsed := time.perf_counter() - t_train) < budget and step < max_steps:
        for group in opt.param_groups:  # cosine decay over the time budget
            group["lr"] = base_lr * 0.5 * (1 + math.cos(math.pi * min(max(elapsed / budget, step / max_steps), 1.0)))
        # oversample slices with haemorrhage to half of each batch
        half = batch // 2
        idx = np.concatenate([
            rng.choice(pos_idx, half) if len(pos_idx) else rng.choice(neg_idx, half),
            rng.choice(neg_idx, batch - half),
        ])
        x = torch.as_tensor(data.inputs(idx, swap=bool(rng.random() < 0.5)), dtype=torch.float32)
        if rng.random() < 0.5:
            x = torch.flip(x, dims=[3])  # left-right
        if augment is not None:
            x = randomise(x, rng, *window_hu, **augment)
        else:  # scanner variation: calibration offset (~+-3 HU in the brain window) and noise
            x = x + torch.as_tensor(rng.normal(0, 0.03, (batch, 1, 1, 1)), dtype=torch.float32)
            x = x + torch.randn_like(x) * float(rng.uniform(0, 0.04))
        net.train()
        if frozen_bn:
            freeze_batchnorm(net)
        opt.zero_grad()
        loss = loss_fn(net(x.clamp(0, 1)), torch.as_tensor(data.y[idx], dtype=torch.float32))
        loss.backward()
        opt.step()
        step += 1
        if step % 100 == 0:
            log(f"ich: step {step} loss {loss.item():.4f} ({elapsed:.0f} s)")
    return step, batch


def _test_metrics(test: SliceSet, test_scores: np.ndarray, threshold: float, smoke: bool) -> dict:
    """Study-level report at ``threshold``, and each subtype's AUC against the negatives."""
    metrics = {"study_level": binary_report(test.study_positive, test_scores, threshold, 200 if smoke else 1000)}
    for name in SUBTYPES:  # each subtype's studies against the negatives
        keep = np.array([sub in (name, None) for sub in test.study_subtype])
        if 0 < test.study_positive[keep].sum() < keep.sum():
            metrics.setdefault("auc_by_subtype", {})[name] = round(auc(test.study_positive[keep], test_scores[keep]), 4)
    return metrics


def _card(threshold: float, metrics: dict, training_data: dict, training: dict, version: str = MODEL_VERSION) -> dict:
    return {
        "id": MODEL_ID, "version": version, "task": "ich",
        "architecture": "MONAI DenseNet 2D (init 16, growth 12, blocks 4-8-12-8), 2.5D input, mirror-averaged",
        "inputs": [TensorSpec(name="slices", shape=["batch", len(CHANNELS), SIZE, SIZE],
                              description="per axial slice: " + ", ".join(CHANNELS) + " (CT windows brain 40/80, "
                              "subdural 80/200, bone 600/2800, scaled to [0,1]), resized to 160x160")],
        "outputs": [TensorSpec(name="logits", shape=["batch", 6],
                               description="logits of " + ", ".join(OUTPUTS) + ", averaged over the slice and its "
                               "left-right mirror (sigmoid for probabilities)")],
        "preprocessing": {"windows_hu": [list(w) for w in HEAD_WINDOWS], "size": SIZE,
                          "orientation": "axial, DICOM LPS rows/columns as stored",
                          "channels": list(CHANNELS), "aggregation": "study score = max slice P(any)"},
        "thresholds": {"any": round(threshold, 4)},
        "metrics": metrics,
        "training_data": training_data,
        "training": training,
        "not_for": ["clinical use", "real patient CT (never trained or validated on it)", "paediatric heads",
                    "contrast-enhanced CT"],
        "limitations": ["trained on synthetic phantoms only", "threshold chosen for 95% sensitivity on synthetic validation data",
                        LOSSY_LIMITATION],
    }


def train(out: Path, seed: int = 1, n_train: int = 600, n_val: int = 200, n_test: int = 200,
          minutes: float = 12.0, smoke: bool = False, steps: int | None = None,
          sample_kwargs: dict | None = None, log=print, dataset: Iterable | None = None,
          augment: dict | None = None, version: str = MODEL_VERSION, init: Path | None = None) -> dict:
    """Train, choose the threshold on validation, measure on a fresh test set, export.

    sample_kwargs: `ct_head.sample` options, plus ``p_mimic`` (`study_options`); augment: domain randomisation
    (`training.augment.randomise` settings, {} for its defaults); version: the card's version; init: a model
    folder of this architecture to start from (fine-tuning at lr 5e-4 with BatchNorm frozen, `onnx_init`).
    """
    torch.manual_seed(seed)
    torch.set_num_threads(2)
    kw = dict(DEFAULT_SAMPLE if sample_kwargs is None else sample_kwargs)
    if smoke:
        n_train, n_val, n_test, kw = 2, 2, 2, {**kw, **_SMOKE_SAMPLE}
    t0 = time.perf_counter()
    workers = 1 if smoke else 2
    data, val, test, data_card = _slice_sets(dataset, seed, n_train, n_val, kw, smoke, workers)
    if dataset is not None:
        n_val, n_test = len(val.study_positive), len(test.study_positive)
    else:
        data_card["seeds"] = {"train": [seed * 1000 + 1, n_train], "validation": [seed * 1000 + 2, n_val],
                              "test": [seed * 1000 + 3, n_test]}
        if "p_mimic" in kw:
            data_card["mimics"] = (f"each normal mimic (radtriage.synth.ct_head.mimics.MIMICS) in a head with probability "
                                   f"{kw['p_mimic']}, normal and haemorrhage heads alike")
    log(f"ich: {len(data.win)} training slices from {n_train} studies in {time.perf_counter() - t0:.0f} s")

    net = make_net()
    if init is not None:
        load_onnx_weights(net, Path(init) / "model.onnx")
    t_train = time.perf_counter()
    augment = None if augment is None else {**AUGMENT_DEFAULTS, **augment}
    step, batch = _fit(net, data, seed, minutes, 2 if smoke else (steps or 10**9), log, augment,
                       2e-3 if init is None else 5e-4, init is not None)
    train_s = time.perf_counter() - t_train
    log(f"ich: trained {step} steps in {train_s:.0f} s ({time.perf_counter() - t0:.0f} s with drawing the data)")

    net = MirrorAverage(net)
    val_scores = study_scores(predict(net, val), val.study, n_val)
    threshold = threshold_for_sensitivity(val.study_positive, val_scores, 0.95)
    test = test or build(seed * 1000 + 3, n_test, kw, workers)
    test_scores = study_scores(predict(net, test), test.study, n_test)
    metrics = _test_metrics(test, test_scores, threshold, smoke)
    log(f"ich: test AUC {metrics['study_level']['auc']['value']:.3f} at threshold {threshold:.3f}; "
        f"by subtype {metrics.get('auc_by_subtype')}")
    training = {"steps": step, "batch": batch, "optimizer": "AdamW lr 2e-3", "seed": seed,
                "sampling": "half of each batch slices with haemorrhage", "test_time": "mirror average in the graph",
                "train_minutes": round(train_s / 60, 1), "minutes": round((time.perf_counter() - t0) / 60, 1)}
    if init is not None:
        training.update(optimizer="AdamW lr 5e-4, BatchNorm frozen", init=str(load_card(Path(init)).version))
    if augment is not None:
        training["domain_randomisation"] = {k: list(v) if isinstance(v, tuple) else v for k, v in augment.items()}
    card = export_model(out / MODEL_ID, net, (torch.zeros(1, len(CHANNELS), SIZE, SIZE),),
                        _card(threshold, metrics, {**data_card, "training_slices": int(len(data.win))}, training,
                              version))
    return {"card": card, "metrics": metrics}


_SMOKE_SAMPLE: dict = {"matrix": 64, "max_slices": 4}
DEFAULT_SAMPLE: dict = {"matrix": 512}
