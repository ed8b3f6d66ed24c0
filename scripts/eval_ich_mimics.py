#!/usr/bin/env python3
"""How often the ICH model calls a normal head with mimics haemorrhage: specificity and false positives per mimic.

What it measures
----------------
``--n`` synthetic NORMAL heads (no haemorrhage) from `radtriage.synth.ct_head`, in the generator's
``--mode``: ``scanner`` (projection, noise for the mAs, beam hardening, metal; every mimic drawn with its
own probability) or ``phantom`` (the mode the reference model was trained in; each mimic added with
probability ``--p-mimic``). Each head goes through the input guard and the ICH model as `radtriage
validate` runs them (`validation.run.predict_cases`); at the model card's threshold it prints the
specificity with a 95% Wilson interval, the guard's refusals, and per mimic the heads that had it, the
false positives among them and that share. Synthetic heads say nothing about real patients: this measures
how the model reads the generator's mimics.

The last line printed is machine-readable::

    RESULT specificity=<s> ci_low=<l> ci_high=<h> n=<measured> refused=<n> mode=<mode> model=<id>@<version>

``--model DIR`` (repeatable) reads another model folder (a candidate) instead of the shipped
models/ich-densenet2d; given more than once, every model reads the same heads, one report and RESULT
line each.

Usage: ``.venv/bin/python scripts/eval_ich_mimics.py [--n 60] [--mode scanner] [--matrix 256] [--model DIR ...]``.
"""

from __future__ import annotations

import argparse
import json
import math
import tempfile
from collections import Counter
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]


def wilson(k: int, n: int, z: float = 1.96) -> tuple[float, float]:
    if n == 0:
        return float("nan"), float("nan")
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return max(0.0, centre - half), min(1.0, centre + half)


def main(argv: list[str] | None = None) -> int:
    from radtriage.datasets.layouts import examples
    from radtriage.inference.model import load_model
    from radtriage.inference.tasks import predictor
    from radtriage.synth import synthesize
    from radtriage.synth.ct_head.mimics import MIMICS
    from radtriage.validation.run import operating_threshold, predict_cases

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--n", type=int, default=60)
    p.add_argument("--mode", choices=["scanner", "phantom"], default="scanner")
    p.add_argument("--matrix", type=int, default=256)
    p.add_argument("--p-mimic", type=float, default=0.3, help="phantom mode: each mimic's probability")
    p.add_argument("--seed", type=int, default=2026)
    p.add_argument("--model", type=Path, action="append", help="a model folder (repeatable; default the shipped model)")
    p.add_argument("--heads", type=Path, help="keep the generated heads in this folder; a second run with the same "
                   "folder and options reads them instead of generating them again")
    args = p.parse_args(argv)

    rng = np.random.default_rng(args.seed)
    nets = [load_model(d, 2) for d in (args.model or [REPO / "models" / "ich-densenet2d"])]
    with tempfile.TemporaryDirectory(prefix="ich-mimics-") as tmp:
        root = args.heads or Path(tmp)
        done = root / f"done-{args.mode}-{args.n}-{args.matrix}-{args.p_mimic}-{args.seed}"
        for i in range(0 if done.exists() else args.n):
            options = {"positive": False, "acquisition": args.mode, "matrix": args.matrix}
            if args.mode == "phantom":
                options["mimics"] = [m for m in MIMICS if rng.random() < args.p_mimic]
            synthesize("ct-head", 1, args.seed + i, root, options)  # one folder per study under root
        root.mkdir(parents=True, exist_ok=True)
        done.touch()
        truths = {t.parent.name: json.loads(t.read_text()) for t in root.glob("*/truth.json")}
        for net in nets:
            results = predict_cases(net, predictor("ich"), examples(root, "ich", "synthetic"), None, None)
            _report(args, net.card, operating_threshold(net.card), results, truths)
    return 0


def _report(args: argparse.Namespace, card, threshold: float, results: list, truths: dict) -> None:
    """Specificity, refusals, false positives per mimic and the RESULT line of one model."""
    measured = [r for r in results if r.measured]
    refused = [r for r in results if r.refused]
    positive = {r.id for r in measured if r.prediction["score"] >= threshold}
    had, fp = Counter(), Counter()
    for r in measured:
        for m in {m["name"] for m in truths[r.id].get("mimics", [])}:
            had[m] += 1
            fp[m] += r.id in positive
    tn = len(measured) - len(positive)
    lo, hi = wilson(tn, len(measured))
    print(f"{card.id} {card.version}: {args.n} synthetic normal heads ({args.mode} mode, matrix {args.matrix}); "
          f"threshold {threshold:g}")
    print(f"refused by the input guard: {len(refused)}" + (f" (first: {refused[0].refused})" if refused else ""))
    print(f"specificity {tn}/{len(measured)} = {tn / max(len(measured), 1):.3f} (95% CI {lo:.3f}-{hi:.3f})")
    print(f"{'mimic':<30} {'heads':>5} {'FP':>4} {'FP share':>9}")
    for m in sorted(had, key=lambda m: -fp[m] / had[m]):
        print(f"{m:<30} {had[m]:>5} {fp[m]:>4} {fp[m] / had[m]:>9.2f}")
    scores = sorted(round(float(r.prediction["score"]), 3) for r in measured)
    print("scores (sorted):", scores)
    print(f"RESULT specificity={tn / max(len(measured), 1):.3f} ci_low={lo:.3f} ci_high={hi:.3f} "
          f"n={len(measured)} refused={len(refused)} mode={args.mode} model={card.id}@{card.version}")


if __name__ == "__main__":
    raise SystemExit(main())
