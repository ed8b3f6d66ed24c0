"""Bone-age models on a fresh detector-mode test set and on the phantom-mode test set of the 0.2.0 card.

The detector-mode hands (``acquisition="detector"``, every vendor, the held-out one included) are drawn
from seeds no training used; each hand has the department's conditions drawn as a department would, and
every sixth hand in turn is forced to show one of `FOCUS` (low-resolution hands are drawn at the detector's
own matrix and exported small; the rest on a 384-px square). Reports, per model: MAE (95% bootstrap CI),
mean error (bias) overall and per bone-age band, MAE per condition and for the held-out vendor, and the
phantom-mode test MAE. Writes JSON and prints a ``RESULT`` line per model.

    RADTRIAGE_TRAIN_CACHE=/tmp/cache .venv/bin/python scripts/eval_bone_age.py \\
        --model models/bone-age-resnet2d --model /tmp/cand/bone-age-resnet2d [--n 300] [--seed 9001] [--out x.json]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

import numpy as np

os.environ.setdefault("ORT_DISABLE_TELEMETRY", "1")

FOCUS = (None, "low_resolution", "8bit", "cast", "rotated", "low_exposure")
BANDS = ((0, 24), (24, 72), (72, 120), (120, 168), (168, 230))


def _one(args: tuple[int, int]) -> tuple[np.ndarray, float, float, list[str], str]:
    from radtriage.inference.bone_age import sex_code
    from radtriage.synth.xr_hand import department
    from radtriage.training.bone_age_detector import render_hand

    seed, i = args
    rng = np.random.default_rng([seed, i])
    focus = FOCUS[i % len(FOCUS)]
    conds = set(department.draw_conditions(rng)) | ({focus} if focus else set())
    native = "low_resolution" in conds
    x, truth = render_hand(rng, 192, tuple(sorted(conds)), None, native)
    return (x.astype(np.float16), truth["bone_age_months"], sex_code(truth["sex"]), truth["conditions"],
            truth["acquisition"]["vendor"])


def test_set(seed: int, n: int) -> dict[str, np.ndarray]:
    from radtriage.synth.xr_hand.department import CONDITIONS
    from radtriage.training.data import cached, draw

    def make() -> dict[str, np.ndarray]:
        rows = draw(_one, [(seed, i) for i in range(n)], 2, chunksize=4)
        return {"x": np.stack([r[0] for r in rows]), "age": np.array([r[1] for r in rows], np.float32),
                "sex": np.array([[r[2]] for r in rows], np.float32),
                "conditions": np.array([[c in r[3] for c in CONDITIONS] for r in rows]),
                "vendor": np.array([r[4] for r in rows])}

    return cached("bone_age_eval", [seed, n, list(FOCUS)], make)


def predict(model: Path, x: np.ndarray, sex: np.ndarray) -> np.ndarray:
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 2
    sess = ort.InferenceSession(str(model / "model.onnx"), opts, providers=["CPUExecutionProvider"])
    return np.concatenate([sess.run(None, {"image": x[i : i + 32].astype(np.float32), "sex": sex[i : i + 32]})[0][:, 0]
                           for i in range(0, len(x), 32)])


def _mae(t: np.ndarray, p: np.ndarray) -> dict:
    from radtriage.training.metrics import bootstrap_ci

    d = np.abs(p - t)
    lo, hi = bootstrap_ci(lambda i: float(d[i].mean()), len(d)) if len(d) > 1 else (float("nan"),) * 2
    return {"n": int(len(d)), "mae": round(float(d.mean()), 2), "ci95": [round(lo, 2), round(hi, 2)],
            "bias": round(float((p - t).mean()), 2)}


def report(ts: dict, pred: np.ndarray, held_out_vendor: str) -> dict:
    from radtriage.synth.xr_hand.department import CONDITIONS
    from radtriage.training.metrics import regression_report

    age = ts["age"]
    out = {"overall": regression_report(age, pred), "bands": {}, "conditions": {}}
    for lo, hi in BANDS:
        m = (age >= lo) & (age < hi)
        if m.sum():
            out["bands"][f"{lo}-{hi}"] = _mae(age[m], pred[m])
    none = ~ts["conditions"][:, [CONDITIONS.index(c) for c in FOCUS[1:]]].any(1)
    out["conditions"]["none_of_these"] = _mae(age[none], pred[none])
    for c in FOCUS[1:]:
        m = ts["conditions"][:, CONDITIONS.index(c)]
        out["conditions"][c] = _mae(age[m], pred[m])
    v = ts["vendor"] == held_out_vendor
    out["held_out_vendor"] = {"vendor": held_out_vendor, **_mae(age[v], pred[v])}
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", type=Path, action="append", required=True)
    p.add_argument("--n", type=int, default=300)
    p.add_argument("--seed", type=int, default=9001)
    p.add_argument("--phantom-n", type=int, default=300, help="the 0.2.0 card's phantom test set (seed 1003)")
    p.add_argument("--out", type=Path)
    args = p.parse_args(argv)
    from radtriage.training import bone_age
    from radtriage.training.bone_age_detector import HELD_OUT_VENDOR

    ts = test_set(args.seed, args.n)
    px, psex, page = bone_age.build(1003, args.phantom_n)
    results = {}
    for model in args.model:
        r = report(ts, predict(model, ts["x"], ts["sex"]), HELD_OUT_VENDOR)
        r["phantom"] = _mae(page, predict(model, px, psex))
        results[str(model)] = r
        o = r["overall"]
        print(f"RESULT {model}: detector MAE {o['mae']['value']:.2f} [{o['mae']['ci95'][0]:.2f}, "
              f"{o['mae']['ci95'][1]:.2f}] bias {o['bland_altman']['bias']:.2f} (n {o['n']}); "
              + "; ".join(f"{k} {v['mae']} (n {v['n']})" for k, v in r["conditions"].items())
              + f"; bands bias " + " ".join(f"{k}:{v['bias']}" for k, v in r["bands"].items())
              + f"; vendor {HELD_OUT_VENDOR} {r['held_out_vendor']['mae']}; phantom MAE {r['phantom']['mae']} "
              f"{r['phantom']['ci95']} bias {r['phantom']['bias']}")
    if args.out:
        args.out.write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
