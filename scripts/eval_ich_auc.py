#!/usr/bin/env python3
"""ICH models side by side on one fresh synthetic test set: study AUC, sensitivity and specificity with 95% CIs.

The test set is `training.ich.build` of ``--seed`` (default 1003: the test set of `scripts/train.py ich`
with seed 1, whose training and validation heads are drawn from 1001 and 1002), ``--n`` heads, half with haemorrhage, in phantom mode at ``--matrix``, each normal mimic with
probability ``--p-mimic`` (0: none) in normal and haemorrhage heads alike. Each ``--model`` folder's ONNX
graph reads every slice as the service's ich op would give it (windows at 160 x 160 with the neighbours'
brain window); a study scores its highest slice, judged at the model card's threshold. Synthetic heads say
nothing about real patients. One line per model::

    RESULT model=<id>@<version> auc=<a> auc_low=<l> auc_high=<h> sensitivity=<s> specificity=<p> n=<n>

Usage: ``.venv/bin/python scripts/eval_ich_auc.py --model models/ich-densenet2d --model DIR [--n 200]``
(``RADTRIAGE_TRAIN_CACHE`` keeps the drawn set for a second run).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np


def main(argv: list[str] | None = None) -> int:
    from radtriage.inference.model import load_model
    from radtriage.training.ich import build, study_scores
    from radtriage.training.metrics import binary_report
    from radtriage.validation.run import operating_threshold

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", type=Path, action="append", required=True, help="a model folder (repeatable)")
    p.add_argument("--seed", type=int, default=1003)
    p.add_argument("--n", type=int, default=200)
    p.add_argument("--matrix", type=int, default=256)
    p.add_argument("--p-mimic", type=float, default=0.3)
    p.add_argument("--acquisition", choices=["phantom", "scanner"], default="phantom")
    args = p.parse_args(argv)

    kw: dict = {"matrix": args.matrix} if args.acquisition == "phantom" else {"matrix": args.matrix, "acquisition": "scanner"}
    if args.acquisition == "phantom" and args.p_mimic > 0:
        kw["p_mimic"] = args.p_mimic
    test = build(args.seed, args.n, kw)
    print(f"{args.n} synthetic heads ({int(test.study_positive.sum())} with haemorrhage), {len(test.win)} slices, {kw}")
    for folder in args.model:
        net = load_model(folder, 2)
        name = net.input_names[0]
        probs = []
        for i in range(0, len(test.win), 32):
            idx = np.arange(i, min(i + 32, len(test.win)))
            logits = next(iter(net.run(**{name: test.inputs(idx).astype(np.float32)}).values()))
            probs.append(1 / (1 + np.exp(-logits)))
        scores = study_scores(np.concatenate(probs), test.study, args.n)
        threshold = operating_threshold(net.card)
        r = binary_report(test.study_positive, scores, threshold)
        (a, (lo, hi)), sens, spec = (r["auc"]["value"], r["auc"]["ci95"]), r["sensitivity"], r["specificity"]
        print(f"{net.card.id} {net.card.version} at {threshold:.4f}: AUC {a:.3f} ({lo:.3f}-{hi:.3f}), "
              f"sensitivity {sens['value']:.3f} ({sens['ci95'][0]:.3f}-{sens['ci95'][1]:.3f}), "
              f"specificity {spec['value']:.3f} ({spec['ci95'][0]:.3f}-{spec['ci95'][1]:.3f})")
        print(f"RESULT model={net.card.id}@{net.card.version} auc={a:.3f} auc_low={lo:.3f} auc_high={hi:.3f} "
              f"sensitivity={sens['value']:.3f} specificity={spec['value']:.3f} n={args.n}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
