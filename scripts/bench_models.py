#!/usr/bin/env python3
"""Benchmark the reference models: one study, from DICOM files to the task's result.

What it measures
----------------
For each task whose model folder is in ``--models`` (default ``models/``), the
wall time of reading one study's main series from DICOM files
(`radtriage.imaging.series.load_series`), pre-processing, ONNX Runtime on the
CPU with ``--threads`` (default 2) threads, and post-processing: the task
predictor the service runs (`radtriage.inference.tasks.predictor`). The
median of ``--repeat`` (default 10) runs after one warm-up run is reported;
loading the model (session creation) is timed once and reported apart,
because the service keeps its models loaded.

Studies (synthetic, written by this script into a temporary folder, not timed):
* ich: a CT head of 32 axial 4 mm slices, 512x512 (`synth.ct_head`);
* lvo: a CTA head with 1 mm slices, 512x512 (`synth.cta_head`);
* nodule: a chest CT with 1.25 mm slices, 512x512 (`synth.ct_chest`);
* bone_age: a paediatric hand radiograph at the detector's own matrix (`synth.xr_hand`).

There is no peer product to compare with on this machine; the figures are
set against the issue's targets (ich 1.5 s, lvo 3 s, nodule 10 s, bone age 0.5 s).
The last line is ``RESULT ich_s=<n> lvo_s=<n> nodule_s=<n> bone_age_s=<n>``
(``nan`` for a task without a model).

    python scripts/bench_models.py [--models models] [--repeat 10] [--threads 2]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("ORT_DISABLE_TELEMETRY", "1")

import numpy as np  # noqa: E402

TARGETS_S = {"ich": 1.5, "lvo": 3.0, "nodule": 10.0, "bone_age": 0.5}


def write_studies(root: Path, seed: int) -> dict[str, list[Path]]:
    """One study per task; returns the files of each main series."""
    from radtriage.datasets.synthetic import series_files
    from radtriage.synth import ct_head, synthesize
    from radtriage.synth.dicom import CtSeries, make_study, write_ct_series

    rng = np.random.default_rng(seed)
    head = ct_head.sample(rng, matrix=512, positive=True, slice_thickness=4.0, max_slices=32)
    study = make_study(rng, 0, "CT BRAIN NON-CONTRAST")
    files = {"ich": write_ct_series(root / "ct-head", rng, study, CtSeries(2, "Head 4.0 H31s", "HEAD", "HEAD", "H31s"),
                                    head.hu, head.spacing, head.origin)}
    for task, kind, options in (("lvo", "cta-head", {"slice_thickness": 1.0, "lvo": True}),
                                ("nodule", "ct-chest", {"slice_spacing": 1.25, "positive": True}),
                                ("bone_age", "xr-hand", {})):
        folder = synthesize(kind, 1, seed, root, options)[0]
        truth = json.loads((folder / "truth.json").read_text())
        files[task] = series_files(folder, int(truth["main_series_number"]))
    return files


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--models", type=Path, default=Path("models"))
    p.add_argument("--repeat", type=int, default=10)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--seed", type=int, default=7)
    args = p.parse_args(argv)

    from radtriage.imaging.series import load_series
    from radtriage.inference.card import CARD_FILE, load_card
    from radtriage.inference.model import load_model
    from radtriage.inference.tasks import predictor

    folders = {}
    for card_path in sorted(args.models.glob(f"*/{CARD_FILE}")):
        card = load_card(card_path.parent)
        folders.setdefault(card.task, card_path.parent)
    results: dict[str, float] = {}
    with tempfile.TemporaryDirectory(prefix="bench-models-") as tmp:
        t = time.perf_counter()
        files = write_studies(Path(tmp), args.seed)
        print(f"wrote the synthetic studies in {time.perf_counter() - t:.1f} s (not timed below)")
        for task in TARGETS_S:
            if task not in folders:
                print(f"{task}: no model in {args.models}; skipped")
                results[task] = float("nan")
                continue
            t = time.perf_counter()
            model = load_model(folders[task], threads=args.threads)
            load_model_s = time.perf_counter() - t
            predict = predictor(task)
            times, loads = [], []
            for i in range(args.repeat + 1):
                t0 = time.perf_counter()
                volume = load_series(files[task])
                t1 = time.perf_counter()
                out = predict(model, volume)
                t2 = time.perf_counter()
                if i:  # the first run warms caches and is not counted
                    times.append(t2 - t0)
                    loads.append(t1 - t0)
            med = statistics.median(times)
            results[task] = med
            shape = "x".join(str(n) for n in volume.array.shape)
            summary = {k: v for k, v in out.items() if not isinstance(v, (list, dict))}
            print(f"{task}: {model.card.id} {model.card.version}; study {shape} ({len(files[task])} files); "
                  f"median {med:.3f} s (of which DICOM read {statistics.median(loads):.3f} s), "
                  f"min {min(times):.3f} s, max {max(times):.3f} s; model load {load_model_s:.2f} s; "
                  f"target {TARGETS_S[task]} s {'met' if med <= TARGETS_S[task] else 'NOT met'}; {summary}")
    print("RESULT " + " ".join(f"{task}_s={results[task]:.3f}" for task in TARGETS_S))
    return 0


if __name__ == "__main__":
    sys.exit(main())
