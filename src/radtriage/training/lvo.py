"""The `lvo` reference model: large-vessel occlusion on a CT angiogram of the head.

Each study becomes one 2D image (`radtriage.inference.lvo.views`, the same
function the predictor calls): a bone-free axial MIP of the whole coverage
above a bone-free coronal MIP, 1 mm a pixel, in a vessel window. A small MONAI
DenseNet gives six logits: P(LVO), side (left/right) and segment
(ica_t/m1/m2, the generator's names).

Data: synthetic CTAs from `radtriage.synth.cta_head.sample` at a 256 matrix
(0.84-0.98 mm pixels, the scanner's slice thicknesses), drawn in pairs for
training (the same seed with and without an occlusion: same head, vessels and
noise, so the only difference to learn is the occlusion), and alternating
positive/negative for validation and test, each set from its own seed.
Augmentation: left-right flip with the side label swapped, small shifts,
intensity scale and offset, noise. The threshold is chosen on validation
(95 % sensitivity); test metrics carry bootstrap 95 % CIs. A smaller set at
the full 512 matrix checks that the model does not depend on the matrix.

Generated views are cached when ``RADTRIAGE_TRAIN_CACHE`` names a folder (see
`training.data`), keyed on seeds, options, the generator's and
the pre-processing's versions.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from monai.networks.nets import DenseNet

from radtriage.inference import lvo as pre
from radtriage.inference.card import TensorSpec
from radtriage.training.data import cached, draw, site_parts
from radtriage.training.export import export_model
from radtriage.training.metrics import auc, binary_report, bootstrap_ci, threshold_for_sensitivity

MODEL_ID = "lvo-densenet2d"
MODEL_VERSION = "0.1.0"
SIDES, SEGMENTS = pre.SIDES, pre.SEGMENTS
DEFAULT_SAMPLE: dict = {"matrix": 256}
FULL_SAMPLE: dict = {"matrix": 512}
_SMOKE_SAMPLE: dict = {"matrix": 64, "slice_thickness": 2.0, "coverage_mm": 40.0}
TARGET_SENSITIVITY = 0.95
BASE_LR = 2e-3
BATCH = 32  # studies per step


def make_net() -> torch.nn.Module:
    return DenseNet(
        spatial_dims=2, in_channels=pre.SHAPE[0], out_channels=len(pre.OUTPUTS),
        init_features=16, growth_rate=12, block_config=(4, 8, 12, 8),
    )


@dataclass
class ViewSet:
    """Pre-processed studies and their labels."""

    x: np.ndarray  # (n, *pre.SHAPE) float16
    positive: np.ndarray  # (n,) uint8
    side: np.ndarray  # (n,) int8: index in SIDES, -1 for negatives
    segment: np.ndarray  # (n,) int8: index in SEGMENTS, -1 for negatives


def _one_study(args: tuple[int, int, bool, dict]) -> tuple[np.ndarray, int, int, int]:
    from radtriage.synth import cta_head

    seed, i, lvo, kwargs = args
    torch.set_num_threads(1)
    s = cta_head.sample(np.random.default_rng([seed, i]), lvo=lvo, **kwargs)
    t = s.truth
    x = pre.views(s.hu, s.spacing).astype(np.float16)  # the generator writes an identity direction (LPS axial)
    side = SIDES.index(t["side"]) if t["lvo"] else -1
    seg = SEGMENTS.index(t["segment"]) if t["lvo"] else -1
    return x, int(t["lvo"]), side, seg


def build(seed: int, n: int, kwargs: dict, paired: bool, workers: int = 2, log=print) -> ViewSet:
    """``n`` studies from seed ``seed`` (study i from (seed, i)), drawn and cached by `training.data`.

    ``paired``: each index gives two studies, with and without an occlusion
    (2n in all); otherwise study i is positive when i is even.
    """
    if paired:
        jobs = [(seed, i, lvo, kwargs) for i in range(n) for lvo in (True, False)]
    else:
        jobs = [(seed, i, i % 2 == 0, kwargs) for i in range(n)]

    def make() -> dict[str, np.ndarray]:
        t0 = time.perf_counter()
        results = draw(_one_study, jobs, workers, chunksize=4)
        log(f"lvo: drew {len(jobs)} studies (seed {seed}, {kwargs}) in {time.perf_counter() - t0:.0f} s")
        return {"x": np.stack([r[0] for r in results]), "positive": np.array([r[1] for r in results], np.uint8),
                "side": np.array([r[2] for r in results], np.int8), "segment": np.array([r[3] for r in results], np.int8)}

    z = cached("lvo", [seed, n, kwargs, paired, pre.VERSION], make)
    return ViewSet(z["x"], z["positive"], z["side"], z["segment"])


def from_examples(examples: Iterable, n_max: int | None = None) -> ViewSet:
    """A site's labelled CTAs (`radtriage.datasets.Example`, task lvo) as a ViewSet (`preprocess` of each volume)."""
    xs, pos, sides, segs = [], [], [], []
    for e in examples:
        xs.append(pre.preprocess(e.load())[0].astype(np.float16))
        p = bool(e.label.get("positive"))
        pos.append(int(p))
        side, seg = e.label.get("side"), e.label.get("segment")
        sides.append(SIDES.index(side) if p and side in SIDES else -1)
        segs.append(SEGMENTS.index(seg) if p and seg in SEGMENTS else -1)
        if n_max and len(xs) >= n_max:
            break
    if not xs:
        raise ValueError("the dataset holds no labelled CTAs")
    return ViewSet(np.stack(xs), np.array(pos, np.uint8), np.array(sides, np.int8), np.array(segs, np.int8))


def split(data: ViewSet, seed: int) -> tuple[ViewSet, ViewSet, ViewSet]:
    """Seeded 60/20/20 split into train, validation and test, stratified by label."""
    rng = np.random.default_rng(seed)
    parts: list[list[int]] = [[], [], []]
    for label in (0, 1):
        idx = rng.permutation(np.flatnonzero(data.positive == label))
        a, b = int(round(0.6 * len(idx))), int(round(0.8 * len(idx)))
        for k, chunk in enumerate((idx[:a], idx[a:b], idx[b:])):
            parts[k] += chunk.tolist()

    def take(i: list[int]) -> ViewSet:
        i = np.sort(np.asarray(i, int))
        return ViewSet(data.x[i], data.positive[i], data.side[i], data.segment[i])

    return take(parts[0]), take(parts[1]), take(parts[2])


def augment(x: torch.Tensor, side: torch.Tensor, rng: np.random.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-study flip (side label swapped), shifts, intensity scale/offset and noise."""
    n = x.shape[0]
    x = x.clone()
    side = side.clone()
    flip = torch.as_tensor(rng.random(n) < 0.5)
    x[flip] = torch.flip(x[flip], dims=[3])  # columns run along the patient's x: a mirror of the patient
    side[flip & (side >= 0)] = 1 - side[flip & (side >= 0)]
    a = pre.AXIAL // pre.POOL
    for k in range(n):
        dc, dr = (int(v) for v in rng.integers(-3, 4, 2))
        dz = int(rng.integers(-5, 6))
        x[k, :, :a] = torch.roll(x[k, :, :a], (dr, dc), dims=(1, 2))
        x[k, :, a:] = torch.roll(x[k, :, a:], (dz, dc), dims=(1, 2))
    scale = torch.as_tensor(rng.uniform(0.85, 1.15, (n, 1, 1, 1)), dtype=torch.float32)
    offset = torch.as_tensor(rng.normal(0.0, 0.02, (n, 1, 1, 1)), dtype=torch.float32)
    noise = torch.as_tensor(rng.uniform(0.0, 0.03, (n, 1, 1, 1)), dtype=torch.float32)
    x = x * scale + offset + torch.randn_like(x) * noise
    return x.clamp(0.0, 1.0), side


def loss_fn(logits: torch.Tensor, pos: torch.Tensor, side: torch.Tensor, seg: torch.Tensor) -> torch.Tensor:
    loss = F.binary_cross_entropy_with_logits(logits[:, 0], pos.float())
    m = pos > 0
    if m.any():
        loss = loss + 0.5 * F.cross_entropy(logits[m, 1:3], side[m].long())
        loss = loss + 0.5 * F.cross_entropy(logits[m, 3:6], seg[m].long())
    return loss


def infer(net: torch.nn.Module, x: np.ndarray, batch: int = 32) -> np.ndarray:
    """Logits (n, 6) of pre-processed studies."""
    net.eval()
    out = []
    with torch.no_grad():
        for i in range(0, len(x), batch):
            out.append(net(torch.as_tensor(x[i : i + batch], dtype=torch.float32)).numpy())
    return np.concatenate(out) if out else np.zeros((0, len(pre.OUTPUTS)), np.float32)


def _accuracy(hits: np.ndarray, rounds: int) -> dict:
    hits = np.asarray(hits, float)
    if not len(hits):
        return {"n": 0, "value": float("nan"), "ci95": [float("nan"), float("nan")]}
    return {"n": int(len(hits)), "value": float(hits.mean()),
            "ci95": list(bootstrap_ci(lambda i: float(hits[i].mean()), len(hits), rounds))}


def report(y: np.ndarray, side: np.ndarray, seg: np.ndarray, logits: np.ndarray, threshold: float,
           rounds: int = 1000) -> dict:
    """Binary metrics of P(LVO) and side/segment accuracy (on all positives, and on the true positives)."""
    score = 1.0 / (1.0 + np.exp(-logits[:, 0].astype(np.float64)))
    out = binary_report(y, score, threshold, rounds)
    pos = y > 0
    tp = pos & (score >= threshold)
    side_hit = np.argmax(logits[:, 1:3], axis=1) == side
    seg_hit = np.argmax(logits[:, 3:6], axis=1) == seg
    out["side_accuracy"] = _accuracy(side_hit[tp], rounds)
    out["segment_accuracy"] = _accuracy(seg_hit[tp], rounds)
    out["side_accuracy_all_positives"] = _accuracy(side_hit[pos], rounds)
    out["segment_accuracy_all_positives"] = _accuracy(seg_hit[pos], rounds)
    by_seg = {}
    for k, name in enumerate(SEGMENTS):
        keep = (~pos) | (seg == k)
        if 0 < y[keep].sum() < keep.sum():
            by_seg[name] = round(auc(y[keep], score[keep]), 4)
    out["auc_by_segment"] = by_seg
    return out


def _summary(name: str, m: dict) -> str:
    a = m["auc"]
    return (f"{name}: n {m['n']} AUC {a['value']:.3f} [{a['ci95'][0]:.3f}, {a['ci95'][1]:.3f}]; "
            f"at {m['threshold']:.3f} sensitivity {m['sensitivity']['value']:.3f} "
            f"[{m['sensitivity']['ci95'][0]:.3f}, {m['sensitivity']['ci95'][1]:.3f}] specificity "
            f"{m['specificity']['value']:.3f} [{m['specificity']['ci95'][0]:.3f}, {m['specificity']['ci95'][1]:.3f}]; "
            f"side {m['side_accuracy']['value']:.3f} segment {m['segment_accuracy']['value']:.3f} "
            f"(true positives, n {m['side_accuracy']['n']}); by segment AUC {m['auc_by_segment']}")


def _view_sets(dataset: Iterable | None, seed: int, n_pairs: int, n_val: int, n_test: int, n_full: int, kw: dict,
               smoke: bool, workers: int, log) -> tuple[ViewSet, ViewSet, ViewSet, ViewSet | None, dict]:
    """(training, validation, test, test at matrix 512 or None, the card's ``training_data``)."""
    if dataset is not None:
        whole = from_examples(dataset, 4 if smoke else None)
        data, val, test = site_parts(whole, len(whole.x), smoke, lambda w: split(w, seed))
        return data, val, test, None, {
            "synthetic": False, "source": "site dataset (radtriage.datasets Examples, task lvo)",
            "studies": int(len(whole.x)), "split": "60/20/20 stratified, seed " + str(seed),
            "train": int(len(data.x)), "validation": int(len(val.x)), "test": int(len(test.x))}
    seeds = {"train": seed * 1000 + 11, "validation": seed * 1000 + 12, "test": seed * 1000 + 13,
             "test_matrix512": seed * 1000 + 14}
    data = build(seeds["train"], n_pairs, kw, True, workers, log)
    val = build(seeds["validation"], n_val, kw, False, workers, log)
    test = build(seeds["test"], n_test, kw, False, workers, log)
    full = build(seeds["test_matrix512"], n_full, dict(FULL_SAMPLE), False, workers, log) if n_full else None
    return data, val, test, full, {
        "synthetic": True, "generator": "radtriage.synth.cta_head.sample",
        "sample_options": kw, "seeds": {
            "train": [seeds["train"], n_pairs, "pairs: the same seed with and without an occlusion"],
            "validation": [seeds["validation"], n_val, "alternating positive/negative"],
            "test": [seeds["test"], n_test, "alternating positive/negative"],
            **({"test_matrix512": [seeds["test_matrix512"], n_full, "alternating, matrix 512"]}
               if n_full else {}),
        },
        "studies": int(len(data.x)),
    }


def _fit(net: torch.nn.Module, data: ViewSet, seed: int, minutes: float, max_steps: int, log) -> int:
    """Train within ``minutes`` or ``max_steps`` (short warm-up, then cosine decay); the steps taken."""
    base_lr, batch = BASE_LR, BATCH
    opt = torch.optim.AdamW(net.parameters(), lr=base_lr, weight_decay=1e-4)
    rng = np.random.default_rng(seed)
    t_train = time.perf_counter()
    budget = minutes * 60
    steps_done = 0
    while (elapsed := time.perf_counter() - t_train) < budget and steps_done < max_steps:
        for group in opt.param_groups:  # short warm-up, then cosine decay over the time budget
            frac = min(max(elapsed / budget, steps_done / max_steps), 1.0)
            group["lr"] = base_lr * min(1.0, (steps_done + 1) / 50) * 0.5 * (1 + math.cos(math.pi * frac))
        idx = rng.choice(len(data.x), min(batch, len(data.x)), replace=False)
        x = torch.as_tensor(data.x[idx], dtype=torch.float32)
        side = torch.as_tensor(data.side[idx], dtype=torch.int64)
        x, side = augment(x, side, rng)
        net.train()
        opt.zero_grad()
        loss = loss_fn(net(x), torch.as_tensor(data.positive[idx]), side,
                       torch.as_tensor(data.segment[idx], dtype=torch.int64))
        loss.backward()
        opt.step()
        steps_done += 1
        if steps_done % 50 == 0:
            log(f"lvo: step {steps_done} loss {loss.item():.4f} ({elapsed:.0f} s)")
    return steps_done


def _evaluate(net: torch.nn.Module, val: ViewSet, test: ViewSet, full: ViewSet | None, rounds: int,
              test_name: str, log) -> tuple[float, dict]:
    """The threshold chosen on validation, and the test sets' reports at it."""
    val_logits = infer(net, val.x)
    val_score = 1.0 / (1.0 + np.exp(-val_logits[:, 0].astype(np.float64)))
    threshold = float(threshold_for_sensitivity(val.positive, val_score, TARGET_SENSITIVITY))
    metrics: dict = {"test": report(test.positive, test.side, test.segment, infer(net, test.x), threshold, rounds)}
    log("lvo: " + _summary(test_name, metrics["test"]))
    if full is not None:
        metrics["test_matrix512"] = report(full.positive, full.side, full.segment, infer(net, full.x), threshold,
                                           rounds)
        log("lvo: " + _summary("test (matrix 512)", metrics["test_matrix512"]))
    return threshold, metrics


def _card(n_params: int, threshold: float, metrics: dict, data_card: dict, training: dict) -> dict:
    return {
        "id": MODEL_ID, "version": MODEL_VERSION, "task": "lvo",
        "architecture": f"MONAI DenseNet 2D (init 16, growth 12, blocks 4-8-12-8), {n_params / 1e6:.2f} M parameters, "
                        "one image of two MIPs per study, heads for presence, side and segment",
        "inputs": [TensorSpec(name="views", shape=["batch", *pre.SHAPE],
                              description=f"per study: bone-free axial MIP ({pre.AXIAL}x{pre.AXIAL} mm) above "
                              f"bone-free coronal MIP ({pre.CORONAL_Z}x{pre.AXIAL} mm), {pre.MM * pre.POOL:g} mm "
                              "pixels (max-pooled), "
                              f"HU window {pre.WINDOW_HU[0]:g}-{pre.WINDOW_HU[1]:g} scaled to [0,1], patient left "
                              "on the image's right (radiological convention); radtriage.inference.lvo.views")],
        "outputs": [TensorSpec(name="logits", shape=["batch", len(pre.OUTPUTS)],
                               description="logits of " + ", ".join(pre.OUTPUTS) + ": sigmoid of lvo; softmax "
                               "over side_*; softmax over segment_*")],
        "preprocessing": {"function": "radtriage.inference.lvo.views", "version": pre.VERSION,
                          "mm_per_pixel": pre.MM * pre.POOL, "mip_grid_mm": pre.MM, "pool": pre.POOL, "bone_hu": pre.BONE_HU, "bone_dilate_mm": pre.BONE_DILATE * pre.MM,
                          "window_hu": list(pre.WINDOW_HU), "axial": pre.AXIAL, "coronal_rows": pre.CORONAL_Z,
                          "orientation": "reoriented from the direction cosines to superior/posterior/patient-left; "
                                         "columns toward the patient's left",
                          "resampling": "trilinear to 1 mm isotropic; MIPs max-pooled 2x2"},
        "thresholds": {"lvo": round(threshold, 4)},
        "metrics": metrics,
        "training_data": data_card,
        "training": training,
        "not_for": ["clinical use", "real patient CTA (never trained or validated on it)",
                    "non-contrast CT, CT perfusion or venous-phase CTA", "paediatric heads",
                    "posterior-circulation (basilar, vertebral, PCA) or distal (M3 and beyond, ACA) occlusions",
                    "aneurysm, stenosis or dissection detection"],
        "limitations": [
            "trained and tested on synthetic phantoms only (radtriage.synth.cta_head); real anatomy, "
            "artefacts and collateral patterns are richer",
            f"threshold chosen for {TARGET_SENSITIVITY:.0%} sensitivity on synthetic validation data",
            "side and segment are the most probable ones even when the score is below the threshold",
            "bone is removed by a threshold: arteries touching bone (petrous/cavernous ICA) are removed too",
            "oblique volumes are turned to the nearest axis-aligned orientation, not resampled",
        ],
    }


def train(out: Path, seed: int = 1, minutes: float = 12.0, smoke: bool = False, log=print,
          dataset: Iterable | None = None, steps: int | None = None, n_pairs: int = 600, n_val: int = 200,
          n_test: int = 300, n_full: int = 40, sample_kwargs: dict | None = None) -> dict:
    """Train, choose the threshold on validation, measure on fresh test sets, export to ``out/MODEL_ID``.

    ``dataset``: a site's labelled studies (`radtriage.datasets.Example`s of
    task lvo) to train on instead of synthetic ones (split 60/20/20, seeded).
    ``steps``: stop after this many steps (or at ``minutes``).
    """
    torch.manual_seed(seed)
    torch.set_num_threads(2)
    kw = dict(DEFAULT_SAMPLE if sample_kwargs is None else sample_kwargs)
    rounds = 1000
    if smoke:
        n_pairs, n_val, n_test, n_full, rounds = 2, 4, 4, 0, 50
        kw = {**kw, **_SMOKE_SAMPLE}
    workers = 1 if smoke else 2
    t0 = time.perf_counter()
    data, val, test, full, data_card = _view_sets(dataset, seed, n_pairs, n_val, n_test, n_full, kw, smoke,
                                                  workers, log)
    log(f"lvo: {len(data.x)} training studies, data ready in {time.perf_counter() - t0:.0f} s")

    net = make_net()
    t_train = time.perf_counter()
    steps_done = _fit(net, data, seed, minutes, 2 if smoke else (steps or 10**9), log)
    train_s = time.perf_counter() - t_train
    log(f"lvo: trained {steps_done} steps in {train_s:.0f} s")

    threshold, metrics = _evaluate(net, val, test, full, rounds,
                                   "test" if dataset is not None else "test (matrix 256)", log)
    n_params = sum(p.numel() for p in net.parameters())
    training = {"steps": steps_done, "batch": BATCH, "optimizer": f"AdamW lr {BASE_LR:g}, cosine over the time budget",
                "augmentation": "left-right flip with side swap, shifts, intensity scale/offset, noise",
                "seed": seed, "threshold": f"highest with sensitivity >= {TARGET_SENSITIVITY} on validation",
                "train_minutes": round(train_s / 60, 1),
                "minutes": round((time.perf_counter() - t0) / 60, 1)}
    card = export_model(out / MODEL_ID, net, (torch.zeros(1, *pre.SHAPE),),
                        _card(n_params, threshold, metrics, data_card, training))
    return {"card": card, "metrics": metrics}
