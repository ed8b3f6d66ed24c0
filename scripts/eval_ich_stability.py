#!/usr/bin/env python3
"""How far the ICH model's score of a normal head moves under what a real scanner or PACS could do to it.

What it measures
----------------
``--n`` synthetic NORMAL heads (`radtriage.synth.ct_head`, ``--mode`` phantom with each mimic at
``--p-mimic``, or scanner), each read by the ICH model as it is and under each perturbation below; for
each perturbation the largest and the mean change of the score and how many heads moved by 0.1 or more.
The perturbations and the 0.1 are fixed here, before any measurement, from what scanners and PACS
vary (not chosen afterwards to pass):

* ``hu+10`` / ``hu-10``: a calibration offset of +-10 HU (water within +-10 HU is the usual tolerance);
* ``scale1.02`` / ``scale0.98``: a calibration slope 2 % off (HU x 1.02 / x 0.98);
* ``noise5``: added noise with a CT-like texture, 5 HU standard deviation (white noise smoothed by a
  0.6-pixel Gaussian, rescaled): a lower mAs;
* ``blur0.7``: a softer kernel (in-plane Gaussian, 0.7 pixel);
* ``half-res``: a matrix of half the size, read back at the original (linear interpolation);
* ``j2k10``: lossy JPEG 2000 at 10:1 (OpenJPEG, per slice, 12 bits), as some PACS store.

Target (the card's): every perturbation moves every normal head's score by less than 0.1. Synthetic
heads say nothing about real patients: this measures the model's sensitivity to these changes.

The last line: ``RESULT max_shift=<largest over all> worst=<perturbation> heads=<n> moved=<heads x
perturbations at or over 0.1> model=<id>@<version>``.

Usage: ``.venv/bin/python scripts/eval_ich_stability.py [--n 20] [--mode phantom] [--model DIR]``.
"""

from __future__ import annotations

import argparse
import dataclasses
import tempfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
from scipy import ndimage

REPO = Path(__file__).resolve().parents[1]
LIMIT = 0.1


def _noise(a: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    n = ndimage.gaussian_filter(rng.standard_normal(a.shape).astype(np.float32), sigma=(0, 0.6, 0.6))
    return a + n * (5.0 / max(float(n.std()), 1e-6))


def _half_resolution(a: np.ndarray, _rng: np.random.Generator) -> np.ndarray:
    small = ndimage.zoom(a, (1, 0.5, 0.5), order=1)
    back = ndimage.zoom(small, (1, a.shape[1] / small.shape[1], a.shape[2] / small.shape[2]), order=1)
    return back[:, : a.shape[1], : a.shape[2]]


def _j2k(a: np.ndarray, _rng: np.random.Generator) -> np.ndarray:
    import openjpeg

    out = np.empty_like(a)
    for z, plane in enumerate(a):
        stored = np.clip(np.rint(plane) + 1024, 0, 4095).astype(np.uint16)
        data = openjpeg.encode(stored, bits_stored=12, compression_ratios=[10.0])
        out[z] = openjpeg.decode(data).astype(np.float32) - 1024
    return out


PERTURBATIONS: dict[str, Callable[[np.ndarray, np.random.Generator], np.ndarray]] = {
    "hu+10": lambda a, _r: a + 10,
    "hu-10": lambda a, _r: a - 10,
    "scale1.02": lambda a, _r: a * 1.02,
    "scale0.98": lambda a, _r: a * 0.98,
    "noise5": _noise,
    "blur0.7": lambda a, _r: ndimage.gaussian_filter(a, sigma=(0, 0.7, 0.7)),
    "half-res": _half_resolution,
    "j2k10": _j2k,
}


def main(argv: list[str] | None = None) -> int:
    from radtriage.datasets.layouts import examples
    from radtriage.inference.model import load_model
    from radtriage.inference.tasks import predictor
    from radtriage.synth import synthesize
    from radtriage.synth.ct_head.mimics import MIMICS

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--n", type=int, default=20)
    p.add_argument("--mode", choices=["scanner", "phantom"], default="phantom")
    p.add_argument("--matrix", type=int, default=256)
    p.add_argument("--p-mimic", type=float, default=0.3, help="phantom mode: each mimic's probability")
    p.add_argument("--seed", type=int, default=4242)
    p.add_argument("--model", type=Path, default=REPO / "models" / "ich-densenet2d")
    args = p.parse_args(argv)

    rng = np.random.default_rng(args.seed)
    net = load_model(args.model, 2)
    predict = predictor("ich")
    shifts: dict[str, list[float]] = {k: [] for k in PERTURBATIONS}
    base_scores = []
    with tempfile.TemporaryDirectory(prefix="ich-stability-") as tmp:
        root = Path(tmp)
        for i in range(args.n):
            options = {"positive": False, "acquisition": args.mode, "matrix": args.matrix}
            if args.mode == "phantom":
                options["mimics"] = [m for m in MIMICS if rng.random() < args.p_mimic]
            synthesize("ct-head", 1, args.seed + i, root, options)
        for ex in examples(root, "ich", "synthetic"):
            volume = ex.load()
            base = float(predict(net, volume)["score"])
            base_scores.append(base)
            for name, perturb in PERTURBATIONS.items():
                moved = dataclasses.replace(volume, array=perturb(volume.array.astype(np.float32), rng))
                shifts[name].append(abs(float(predict(net, moved)["score"]) - base))
    card = net.card
    print(f"{card.id} {card.version}: {len(base_scores)} synthetic normal heads ({args.mode} mode, matrix "
          f"{args.matrix}); scores as generated {min(base_scores):.3f}-{max(base_scores):.3f}")
    print(f"{'perturbation':<12} {'max shift':>9} {'mean':>7} {'heads >= 0.1':>13}")
    for name, s in shifts.items():
        print(f"{name:<12} {max(s):>9.3f} {np.mean(s):>7.3f} {sum(x >= LIMIT for x in s):>8}/{len(s)}")
    worst = max(shifts, key=lambda k: max(shifts[k]))
    moved = sum(x >= LIMIT for s in shifts.values() for x in s)
    print(f"target: every shift < {LIMIT}: {'met' if moved == 0 else 'NOT met'}")
    print(f"RESULT max_shift={max(shifts[worst]):.3f} worst={worst} heads={len(base_scores)} moved={moved} "
          f"model={card.id}@{card.version}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
