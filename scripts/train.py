"""Train a reference model on synthetic data and export it to models/<id>/.

    python scripts/train.py ich [--minutes 12] [--seed 1] [--out models]
    python scripts/train.py ich --smoke --out /tmp/m   # two steps, tiny data, export
    python scripts/train.py ich --dataset /data/rsna-ich   # a site's own data (RSNA ICH, LUNA16, RSNA bone age layouts)
    python scripts/train.py ich --init models/ich-densenet2d --matrix 256 --p-mimic 0.3 --augment --version 1.1.0 --out /tmp/cand
        # fine-tune the shipped model on heads with normal mimics, with domain randomisation
    python scripts/train.py bone_age --acquisition detector --init models/bone-age-resnet2d --minutes 25 --out /tmp/cand
        # fine-tune the shipped bone-age model on detector-mode hands, with domain randomisation

Only tasks whose training module exists are offered.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from pathlib import Path

os.environ.setdefault("ORT_DISABLE_TELEMETRY", "1")

TASKS = {task: f"radtriage.training.{task}" for task in ("ich", "lvo", "nodule", "bone_age")}


def _ich_options(args: argparse.Namespace) -> dict:
    """The ich trainer's extra options, only those given (its defaults otherwise)."""
    extra = {k: v for k, v in (("n_train", args.n_train), ("n_val", args.n_val), ("n_test", args.n_test),
                               ("version", args.version), ("init", args.init)) if v is not None}
    if args.matrix is not None or args.p_mimic is not None:
        from radtriage.training.ich import DEFAULT_SAMPLE

        extra["sample_kwargs"] = {**DEFAULT_SAMPLE, **({} if args.matrix is None else {"matrix": args.matrix}),
                                  **({} if args.p_mimic is None else {"p_mimic": args.p_mimic})}
    if args.augment:
        extra["augment"] = {}
    return extra


def _bone_age_detector_options(args: argparse.Namespace) -> dict:
    """The detector-mode bone-age trainer's options (`training.bone_age_detector`); it needs --init."""
    if args.init is None:
        raise SystemExit("bone_age --acquisition detector fine-tunes a model: give --init <model folder>")
    return {"init": args.init, **{k: v for k, v in (("n_train", args.n_train), ("n_val", args.n_val),
                                                      ("n_test", args.n_test)) if v is not None}}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("task", choices=sorted(TASKS))
    p.add_argument("--out", default="models")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--minutes", type=float, default=12.0, help="training time budget")
    p.add_argument("--steps", type=int, help="stop after this many steps (or at --minutes)")
    p.add_argument("--dataset", type=Path, help="train on a site's labelled data instead of synthetic studies")
    p.add_argument("--layout", help="the dataset's layout (rsna-ich, luna16, rsna-bone-age); detected when left out")
    p.add_argument("--smoke", action="store_true", help="two steps on tiny data, then export")
    p.add_argument("--n-train", type=int, help="ich: synthetic training heads")
    p.add_argument("--n-val", type=int, help="ich: synthetic validation heads")
    p.add_argument("--n-test", type=int, help="ich: synthetic test heads")
    p.add_argument("--matrix", type=int, help="ich: the generator's matrix (default 512)")
    p.add_argument("--p-mimic", type=float, help="ich: each normal mimic in a head with this probability")
    p.add_argument("--augment", action="store_true", help="ich: domain randomisation (training.augment)")
    p.add_argument("--version", help="ich: the card's version")
    p.add_argument("--init", type=Path, help="ich, bone_age: start from this model folder's weights (fine-tuning)")
    p.add_argument("--acquisition", choices=["detector"], help="bone_age: detector-mode hands, domain randomisation")
    args = p.parse_args(argv)
    module = importlib.import_module(TASKS[args.task])
    extra = _ich_options(args) if args.task == "ich" else {}
    if args.task == "bone_age" and args.acquisition == "detector":
        module, extra = importlib.import_module("radtriage.training.bone_age_detector"), _bone_age_detector_options(args)
    if args.dataset is not None:
        from radtriage.datasets.layouts import examples

        extra["dataset"] = examples(args.dataset, args.task, args.layout)
    result = module.train(Path(args.out), seed=args.seed, minutes=args.minutes, smoke=args.smoke, steps=args.steps, **extra)
    card = result["card"]
    print(f"wrote {Path(args.out) / card.id} ({card.size_bytes / 1e6:.1f} MB, sha256 {card.sha256[:16]}...)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
