"""Train a reference model on synthetic data and export it to models/<id>/.

    python scripts/train.py ich [--minutes 12] [--seed 1] [--out models]
    python scripts/train.py ich --smoke --out /tmp/m   # two steps, tiny data, export
    python scripts/train.py ich --dataset /data/rsna-ich   # a site's own data (RSNA ICH, LUNA16, RSNA bone age layouts)

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
    args = p.parse_args(argv)
    module = importlib.import_module(TASKS[args.task])
    extra = {}
    if args.dataset is not None:
        from radtriage.datasets.layouts import examples

        extra["dataset"] = examples(args.dataset, args.task, args.layout)
    result = module.train(Path(args.out), seed=args.seed, minutes=args.minutes, smoke=args.smoke, steps=args.steps, **extra)
    card = result["card"]
    print(f"wrote {Path(args.out) / card.id} ({card.size_bytes / 1e6:.1f} MB, sha256 {card.sha256[:16]}...)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
