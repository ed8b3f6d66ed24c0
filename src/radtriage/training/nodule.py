"""The `nodule` reference model: false-positive reduction of lung nodule candidates.

Candidates come from the classical stage of `radtriage.inference.nodule`
(lung mask + multi-scale blobs, no learning). A small MONAI 3D CNN
(`Classifier`, residual units) scores a 32^3 patch at 1.25 mm around each
candidate: nodule or not (vessel cross-sections and bifurcations, pleura,
airways). Trained on synthetic chest CTs (`radtriage.synth.ct_chest`) or, when
``dataset`` is given, on labelled `Example`s (e.g. LUNA16). Measured by FROC
(LUNA16 rules, `radtriage.training.metrics.froc`) on a fresh seeded test set,
with exactly the candidates, measurement and post-processing `predict` uses.

Per scan, candidates and their patches do not depend on the model, so they are
cached (``CACHE``, keyed by the pre-processing version, seeds and sampling
options): a second run with the same seeds only trains.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from pathlib import Path

import numpy as np
import torch
from monai.networks.nets import Classifier

from radtriage.imaging.volume import Volume
from radtriage.inference import nodule as pre
from radtriage.inference.card import TensorSpec
from radtriage.training.export import export_model
from radtriage.training.metrics import FROC_FP_RATES, froc

MODEL_ID = "nodule-cnn3d"
MODEL_VERSION = "0.2.0"
CACHE = Path(os.environ.get("RADTRIAGE_NODULE_CACHE", "/tmp/radtriage-nodule-cache"))
MIN_DIAMETER_MM = 4.0  # nodules counted in the reported FROC
JITTER_PER_NODULE = 4  # extra positive patches per training nodule, around its true centre
TRAIN_SAMPLE: dict = {"positive_fraction": 0.85, "matrix": 384}
EVAL_SAMPLE: dict = {}
_SMOKE_SAMPLE: dict = {"matrix": 96, "n_slices": 48, "slice_spacing": 2.5}


def make_net() -> torch.nn.Module:
    return Classifier(in_shape=(1, pre.PATCH, pre.PATCH, pre.PATCH), classes=1, channels=(8, 16, 32, 64),
                      strides=(2, 2, 2, 2), num_res_units=1, norm="batch", dropout=0.1)


# --------------------------------------------------------------------------- per-scan records


def _hits(lps: np.ndarray, nodules: list[dict]) -> np.ndarray:
    """Per candidate: True when within the radius of any labelled nodule (LUNA16 hit rule)."""
    y = np.zeros(len(lps), bool)
    for n in nodules:
        d = np.linalg.norm(lps - np.asarray(n["centre_mm"], float), axis=1)
        y |= d <= float(n["diameter_mm"]) / 2
    return y


def record(volume: Volume, nodules: list[dict], *, describe: bool, jitter: int = 0,
           rng: np.random.Generator | None = None) -> dict:
    """Candidates of one volume with labels (and, for evaluation, their measurements).

    ``nodules``: ``[{"centre_mm": [x, y, z] LPS, "diameter_mm": d}, ...]``.
    ``jitter`` extra patches per nodule around its true centre (training).
    """
    c = pre.candidates(volume)
    out = {
        "patches": np.round(c.patches * 255).astype(np.uint8),
        "label": _hits(c.lps, nodules).astype(np.uint8),
        "truth": [{"centre_mm": [float(v) for v in n["centre_mm"]], "diameter_mm": float(n["diameter_mm"]),
                   "type": n.get("type")} for n in nodules],
    }
    if describe:
        out["describe"] = [pre.describe(volume, c, i) for i in range(len(c.lps))]
    out["extra"] = np.zeros((0,) + (pre.PATCH,) * 3, np.uint8)
    if jitter and nodules:
        rng = rng or np.random.default_rng(0)
        iso, scale, spacing = pre.resample(volume)
        centres = []
        for n in nodules:
            g = volume.lps_to_voxel(np.asarray(n["centre_mm"], float)) / scale
            r_vox = float(n["diameter_mm"]) / 2 / np.asarray(spacing)
            for k in range(jitter):
                off = np.zeros(3) if k == 0 else rng.uniform(-0.4, 0.4, 3) * r_vox
                centres.append(np.clip(np.round(g + off), 0, np.array(iso.shape) - 1))
        extra = pre.normalise(pre.extract_patches(iso, np.array(centres, int), fill=pre.PATCH_WINDOW_HU[0]))
        out["extra"] = np.round(extra * 255).astype(np.uint8)
    return out


def _synthetic_volume(seed: int, i: int, options: dict) -> tuple[Volume, list[dict], np.random.Generator]:
    from radtriage.synth import ct_chest

    rng = np.random.default_rng([seed, i])
    opts = dict(options)
    frac = opts.pop("positive_fraction", None)
    if frac is not None:
        opts["positive"] = bool(rng.random() < frac)
    s = ct_chest.sample(rng, **opts)
    vol = Volume(s.hu.astype(np.float32), s.spacing, s.origin, np.eye(3))
    return vol, s.truth["nodules"], rng


def _cache_path(split: str, seed: int, i: int, options: dict) -> Path:
    key = hashlib.sha256(json.dumps([pre.PREPROCESSING_VERSION, split, options], sort_keys=True).encode())
    return CACHE / f"{split}-{key.hexdigest()[:10]}" / f"{seed}-{i}.npz"


def _save(path: Path, rec: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp.npz")
    meta = {k: rec[k] for k in ("truth", "describe") if k in rec}
    np.savez(tmp, patches=rec["patches"], label=rec["label"], extra=rec.get("extra", np.zeros((0,) + rec["patches"].shape[1:], np.uint8)),
             meta=np.array(json.dumps(meta)))
    tmp.replace(path)


def _load(path: Path) -> dict:
    with np.load(path) as z:
        rec = {"patches": z["patches"], "label": z["label"], "extra": z["extra"]}
        rec.update(json.loads(str(z["meta"])))
    return rec


def _one_synthetic(args: tuple) -> str:
    split, seed, i, options, describe, jitter, use_cache = args
    torch.set_num_threads(1)
    path = _cache_path(split, seed, i, options)
    if use_cache and path.is_file():
        return str(path)
    vol, nodules, rng = _synthetic_volume(seed, i, options)
    rec = record(vol, nodules, describe=describe, jitter=jitter, rng=rng)
    if not use_cache:
        path = path.with_name(f"nocache-{os.getpid()}-{seed}-{i}.npz")
    _save(path, rec)
    return str(path)


def synthetic_records(split: str, seed: int, n: int, options: dict, *, describe: bool, jitter: int = 0,
                      workers: int = 2, use_cache: bool = True, log=print) -> list[dict]:
    """Records of ``n`` synthetic scans (scan i drawn from ``(seed, i)``), cached under ``CACHE``."""
    jobs = [(split, seed, i, dict(options), describe, jitter, use_cache) for i in range(n)]
    t0 = time.perf_counter()
    if workers > 1 and n > 1:
        import multiprocessing as mp

        with mp.get_context("spawn").Pool(workers) as pool:
            paths = pool.map(_one_synthetic, jobs, chunksize=1)
    else:
        paths = [_one_synthetic(j) for j in jobs]
    recs = [_load(Path(p)) for p in paths]
    if not use_cache:
        for p in paths:
            Path(p).unlink(missing_ok=True)
    log(f"nodule: {split}: {n} scans, {sum(len(r['label']) for r in recs)} candidates in "
        f"{time.perf_counter() - t0:.0f} s")
    return recs


def dataset_records(examples, *, describe: bool, jitter: int = 0, seed: int = 0) -> list[dict]:
    """Records of labelled `Example`s (task ``nodule``), loaded one at a time."""
    rng = np.random.default_rng(seed)
    out = []
    for ex in examples:
        vol = ex.load()
        rec = record(vol, list(ex.label.get("nodules", [])), describe=describe, jitter=jitter, rng=rng)
        rec["id"] = ex.id
        out.append(rec)
    return out


# --------------------------------------------------------------------------- training


def _augment(x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """Flips on every axis, 90-degree rotations (the grid is isotropic), intensity and noise."""
    def r() -> float:
        return float(torch.rand(1, generator=gen))

    for d in (2, 3, 4):
        if r() < 0.5:
            x = torch.flip(x, dims=[d])
    k = int(torch.randint(0, 4, (1,), generator=gen))
    plane = [(3, 4), (2, 3), (2, 4)][int(torch.randint(0, 3, (1,), generator=gen))]
    x = torch.rot90(x, k, dims=plane)
    n = x.shape[0]
    scale = 1 + (torch.rand(n, 1, 1, 1, 1, generator=gen) - 0.5) * 0.12
    shift = (torch.rand(n, 1, 1, 1, 1, generator=gen) - 0.5) * 0.05
    noise = torch.randn(x.shape, generator=gen) * (torch.rand(n, 1, 1, 1, 1, generator=gen) * 0.02)
    return (x * scale + shift + noise).clamp(0, 1)


def net_scores(net: torch.nn.Module, patches_u8: np.ndarray, batch: int = 128) -> np.ndarray:
    net.eval()
    out = []
    with torch.no_grad():
        for i in range(0, len(patches_u8), batch):
            x = torch.as_tensor(patches_u8[i:i + batch], dtype=torch.float32)[:, None] / 255.0
            out.append(torch.sigmoid(net(x)).reshape(-1).numpy())
    return np.concatenate(out) if out else np.zeros(0)


def evaluate(net: torch.nn.Module, recs: list[dict], min_diameter_mm: float = MIN_DIAMETER_MM,
             rounds: int = 0, cases: list | None = None) -> tuple[dict, list]:
    """FROC of the whole pipeline (the post-processing `predict` applies) over records.

    ``cases`` (from an earlier call) skips scoring again."""
    if cases is None:
        cases = []
        for rec in recs:
            scores = net_scores(net, rec["patches"])
            cases.append((rec["truth"], pre.finalize(rec["describe"], scores)))
    return froc(cases, min_diameter_mm=min_diameter_mm, rounds=rounds), cases


def candidate_recall(recs: list[dict], min_diameter_mm: float = MIN_DIAMETER_MM) -> dict:
    """Share of nodules hit by any candidate, whatever the model says (the ceiling of sensitivity)."""
    cases = [(r["truth"], [{"centre_mm": d["centre_mm"], "score": 1.0} for d in r["describe"] if d]) for r in recs]
    rep = froc(cases, min_diameter_mm=min_diameter_mm)
    n = rep["n_nodules"]
    return {"recall": rep["n_nodules_hit"] / n if n else float("nan"), "n_nodules": n,
            "false_candidates_per_scan": rep["n_false_positives"] / max(rep["n_scans"], 1),
            "min_diameter_mm": min_diameter_mm}


def threshold_at_fp_rate(report: dict, rate: float = 1.0) -> float:
    """The lowest threshold whose FP/scan is <= ``rate`` on a FROC curve."""
    thr = np.asarray(report["curve"]["thresholds"])
    fpr = np.asarray(report["curve"]["fp_per_scan"])
    ok = thr[(fpr <= rate) & np.isfinite(thr)]
    return float(ok.min()) if len(ok) else 1.0


def _split_examples(dataset, seed: int) -> tuple[list, list, list]:
    """80/10/10 by a hash of each example's id (stable across runs)."""
    parts: tuple[list, list, list] = ([], [], [])
    for ex in dataset:
        h = int(hashlib.sha256(f"{seed}:{ex.id}".encode()).hexdigest()[:8], 16) % 10
        parts[0 if h < 8 else 1 if h < 9 else 2].append(ex)
    return parts


def _scan_records(dataset, seed: int, n_train: int, n_val: int, n_test: int, smoke: bool, workers: int,
                  log) -> tuple[list[dict], list[dict], list[dict], dict]:
    """Per-scan records of training, validation and test, and the card's ``training_data``."""
    if dataset is not None:
        tr, va, te = _split_examples(dataset, seed)
        if not (tr and va and te):
            raise ValueError(f"nodule: the dataset split 80/10/10 left a split empty "
                             f"(train {len(tr)}, validation {len(va)}, test {len(te)}): give more examples")
        data = dataset_records(tr, describe=False, jitter=JITTER_PER_NODULE, seed=seed)
        val = dataset_records(va, describe=True)
        test = dataset_records(te, describe=True)
        return data, val, test, {"synthetic": False, "source": "labelled examples (radtriage.datasets)",
                                 "split": "80/10/10 by sha256(seed:id)",
                                 "scans": {"train": len(tr), "validation": len(va), "test": len(te)}}
    seeds = {"train": seed * 1000 + 41, "validation": seed * 1000 + 42, "test": seed * 1000 + 43}
    train_opts, eval_opts = dict(TRAIN_SAMPLE), dict(EVAL_SAMPLE)
    if smoke:
        train_opts = {**_SMOKE_SAMPLE, "n_nodules": 2}
        eval_opts = {**_SMOKE_SAMPLE, "n_nodules": 1}
    kw = dict(workers=workers, use_cache=not smoke, log=log)
    data = synthetic_records("train", seeds["train"], n_train, train_opts, describe=False,
                             jitter=JITTER_PER_NODULE, **kw)
    val = synthetic_records("validation", seeds["validation"], n_val, eval_opts, describe=True, **kw)
    test = synthetic_records("test", seeds["test"], n_test, eval_opts, describe=True, **kw)
    return data, val, test, {
        "synthetic": True, "generator": "radtriage.synth.ct_chest",
        "seeds": {k: [v, n] for k, v, n in (("train", seeds["train"], n_train),
                                            ("validation", seeds["validation"], n_val),
                                            ("test", seeds["test"], n_test))},
        "sampling": {"train": train_opts, "evaluation": eval_opts or "generator defaults (512 matrix)"}}


BATCH = 32  # patches per step, half of them nodules


def _fit(net: torch.nn.Module, pos: np.ndarray, neg: np.ndarray, seed: int, budget: float, max_steps: int,
         log) -> int:
    """Train for ``budget`` seconds or ``max_steps``, half of each batch nodule patches; the steps taken."""
    opt = torch.optim.AdamW(net.parameters(), lr=1e-3, weight_decay=1e-4)
    loss_fn = torch.nn.BCEWithLogitsLoss()
    rng = np.random.default_rng(seed)
    gen = torch.Generator().manual_seed(seed)
    batch = BATCH
    t_train = time.perf_counter()
    steps = 0
    losses: list[float] = []
    while steps < max_steps and (time.perf_counter() - t_train) < budget:
        frac = (time.perf_counter() - t_train) / budget
        for group in opt.param_groups:  # cosine decay over the time budget
            group["lr"] = 1e-3 * (0.05 + 0.95 * 0.5 * (1 + np.cos(np.pi * min(frac, 1.0))))
        half = batch // 2
        xb = np.concatenate([pos[rng.integers(0, len(pos), half)] if len(pos) else neg[rng.integers(0, len(neg), half)],
                             neg[rng.integers(0, len(neg), batch - half)]])
        yb = np.concatenate([np.ones(half) if len(pos) else np.zeros(half), np.zeros(batch - half)])
        x = _augment(torch.as_tensor(xb, dtype=torch.float32)[:, None] / 255.0, gen)
        net.train()
        opt.zero_grad()
        loss = loss_fn(net(x).reshape(-1), torch.as_tensor(yb, dtype=torch.float32))
        loss.backward()
        opt.step()
        steps += 1
        losses.append(loss.item())
        if steps % 100 == 0:
            log(f"nodule: step {steps} loss {np.mean(losses[-100:]):.4f} ({time.perf_counter() - t_train:.0f} s)")
    log(f"nodule: trained {steps} steps in {time.perf_counter() - t_train:.0f} s")
    return steps


def _froc_brief(rep: dict) -> dict:
    return {k: rep[k] for k in ("cpm", "sensitivity", "n_scans", "n_nodules", "n_nodules_hit",
                                "min_diameter_mm") if k in rep} | (
        {"cpm_ci95": rep["cpm_ci95"]} if "cpm_ci95" in rep else {})


def _evaluate(net: torch.nn.Module, val: list[dict], test: list[dict], smoke: bool, log) -> tuple[float, dict]:
    """The threshold at 1 false positive per scan on validation, and the FROC metrics on test."""
    val_report, _ = evaluate(net, val)
    threshold = threshold_at_fp_rate(val_report, 1.0)
    test_report, test_cases = evaluate(net, test, rounds=0 if smoke else 200)
    all_sizes, _ = evaluate(net, test, min_diameter_mm=0.0, cases=test_cases)
    ceiling = candidate_recall(test)
    sens = {k: round(v, 4) for k, v in test_report["sensitivity"].items()}
    log(f"nodule: test CPM (>= {MIN_DIAMETER_MM:g} mm) {test_report['cpm']:.3f} "
        f"CI95 {test_report.get('cpm_ci95')}; sensitivity at FP/scan {sens}; "
        f"{test_report['n_nodules_hit']}/{test_report['n_nodules']} nodules found (score >= {pre.MIN_SCORE}); "
        f"candidate recall {ceiling['recall']:.3f}")
    log(f"nodule: validation CPM {val_report['cpm']:.3f}; threshold at 1 FP/scan {threshold:.3f}; "
        f"test CPM all sizes {all_sizes['cpm']:.3f}")
    return threshold, {
        "froc_test": _froc_brief(test_report),
        "froc_test_all_sizes": _froc_brief(all_sizes),
        "froc_validation": _froc_brief(val_report),
        "candidate_recall_test": ceiling,
        "definition": "LUNA16 FROC: hit within nodule radius, each nodule once; sensitivity at "
                      + ", ".join(f"{r:g}" for r in FROC_FP_RATES) + " FP/scan; CPM = mean",
    }


def _card(n_params: int, threshold: float, metrics: dict, source: dict, training: dict) -> dict:
    return {
        "id": MODEL_ID, "version": MODEL_VERSION, "task": "nodule",
        "architecture": "candidate generation (classical: lung mask + multi-scale DoG blobs with a Hessian "
                        "blobness rank) + MONAI Classifier 3D (residual units, channels 8-16-32-64, "
                        f"strides 2) on {pre.PATCH}^3 patches, "
                        f"{n_params / 1e6:.2f} M parameters",
        "inputs": [TensorSpec(name="patches", shape=["batch", 1, pre.PATCH, pre.PATCH, pre.PATCH],
                              description=f"{pre.PATCH}^3 patches at {pre.GRID_MM} mm isotropic centred on "
                                          f"candidates, HU {pre.PATCH_WINDOW_HU} scaled to [0,1]")],
        "outputs": [TensorSpec(name="logits", shape=["batch", 1],
                               description="logit that the candidate is a nodule (sigmoid for the score)")],
        "preprocessing": {
            "version": pre.PREPROCESSING_VERSION,
            "module": "radtriage.inference.nodule",
            "grid_mm": pre.GRID_MM, "patch": pre.PATCH, "patch_window_hu": list(pre.PATCH_WINDOW_HU),
            "candidates": "lung mask (air < -400 HU not touching the in-plane border, >= 50 mL, holes "
                          "filled per slice, 15 mm closing, plus a 5 mm band outside); HU clipped to "
                          f"{list(pre.CLIP_HU)}, outside the lung {pre.LUNG_FILL_HU} HU; DoG maxima at "
                          "3 pyramid levels ranked by response x blobness, quotas "
                          f"{[lv[2] for lv in pre.LEVELS]}",
            "postprocessing": f"score >= {pre.MIN_SCORE}, non-maximum suppression within the radius of a "
                              f"higher-scored finding, at most {pre.MAX_FINDINGS}; size by threshold "
                              "segmentation half way between lung and core",
        },
        "thresholds": {"nodule": round(threshold, 4)},
        "metrics": metrics,
        "training_data": source,
        "training": training,
        "not_for": ["clinical use", "real patient CT (never trained or validated on it)",
                    "nodules < 4 mm or masses > 30 mm", "lung cancer risk or Lung-RADS category",
                    "contrast-enhanced or paediatric CT"],
        "limitations": [
            "trained and tested on synthetic phantoms only (radtriage.synth.ct_chest): no fissures, "
            "emphysema, fibrosis, effusion, atelectasis or motion",
            "candidate generation caps sensitivity (see n_nodules_hit); juxtapleural nodules at the lung "
            "bases and small ground-glass nodules are missed most often",
            "sizes come from a simple threshold segmentation, not a validated volumetry tool",
            "threshold chosen at 1 false positive per scan on synthetic validation data",
        ],
    }


def train(out: Path, seed: int = 1, minutes: float = 12.0, smoke: bool = False, log=print, dataset=None,
          n_train: int = 60, n_val: int = 20, n_test: int = 100, workers: int = 2, steps: int | None = None) -> dict:
    """Build (or load cached) candidates, train the classifier, choose the threshold, test, export.

    ``minutes`` bounds the whole run; training gets what building the data
    left, less ~90 s for evaluation and export (at least 30 s); ``steps``
    stops it earlier (``smoke``: 2 steps on tiny data).
    """
    torch.manual_seed(seed)
    torch.set_num_threads(2)
    t0 = time.perf_counter()
    if smoke:
        n_train, n_val, n_test, workers = 2, 1, 1, 1
    data, val, test, source = _scan_records(dataset, seed, n_train, n_val, n_test, smoke, workers, log)
    pos = np.concatenate([r["patches"][r["label"] == 1] for r in data] + [r["extra"] for r in data])
    neg = np.concatenate([r["patches"][r["label"] == 0] for r in data])
    log(f"nodule: {len(pos)} positive and {len(neg)} negative training patches "
        f"({time.perf_counter() - t0:.0f} s)")
    source["patches"] = {"positive": int(len(pos)), "negative": int(len(neg))}

    net = make_net()
    # ``minutes`` bounds the whole run: building (or loading) candidates, training, evaluation, export
    budget = max(30.0, minutes * 60 - (time.perf_counter() - t0) - 90.0)
    steps = _fit(net, pos, neg, seed, budget, 2 if smoke else (int(steps) if steps else 10**9), log)
    threshold, metrics = _evaluate(net, val, test, smoke, log)
    training = {"steps": steps, "batch": BATCH, "optimizer": "AdamW lr 1e-3, cosine", "seed": seed,
                "augmentation": "flips (3 axes), 90-degree rotations, intensity scale/shift, noise; "
                                f"{JITTER_PER_NODULE} patches per nodule around its centre",
                "minutes": round((time.perf_counter() - t0) / 60, 1)}
    card = export_model(out / MODEL_ID, net, (torch.zeros(1, 1, pre.PATCH, pre.PATCH, pre.PATCH),),
                        _card(sum(p.numel() for p in net.parameters()), threshold, metrics, source,
                                          training))
    return {"card": card, "metrics": metrics}
