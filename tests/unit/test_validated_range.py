"""A validated input range measured on data: `guard.observed` spans what it saw (plus its margin), so each
volume it measured passes the guard and a shifted one does not; `radtriage models range --write` puts it in
a copy of the model card, which still loads (the model file and its sha256 untouched)."""

from __future__ import annotations

import dataclasses
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np

from radtriage.datasets.layouts import examples
from radtriage.inference import guard
from radtriage.inference.card import load_card
from radtriage.synth import synthesize

REPO = Path(__file__).resolve().parents[2]


def test_observed_range_passes_what_it_measured_and_refuses_a_shift(tmp_path: Path) -> None:
    synthesize("ct-head", 3, 5, tmp_path / "heads", {"matrix": 128})
    volumes = [ex.load() for ex in examples(tmp_path / "heads", "ich")]
    vr, spans = guard.observed("ct_head", volumes, "test heads", margin=0.1,
                               names=["air_hu", "brain_hu", "bone_hu", "noise_hu", "fov_mm"])
    assert set(vr.checks) == {"air_hu", "brain_hu", "bone_hu", "noise_hu", "fov_mm"}
    assert all(n == 3 for *_, n in spans.values())
    lo, hi, _ = spans["brain_hu"]
    assert vr.checks["brain_hu"].min == round(lo - 0.1 * (hi - lo), 3)
    card = load_card(REPO / "models" / "ich-densenet2d").model_copy(update={"validated_range": vr})
    assert all(guard.failures(card, v) == [] for v in volumes)
    shifted = dataclasses.replace(volumes[0], array=np.asarray(volumes[0].array, np.float32) + 60.0)  # miscalibrated
    assert any(f.startswith("brain_hu") for f in guard.failures(card, shifted))


def test_models_range_writes_the_measured_range_into_the_card(tmp_path: Path) -> None:
    synthesize("ct-head", 2, 6, tmp_path / "heads", {"matrix": 128})
    models = tmp_path / "models"
    shutil.copytree(REPO / "models" / "ich-densenet2d", models / "ich-densenet2d")
    before = load_card(models / "ich-densenet2d")
    env_args = [f"--config={tmp_path / 'absent.yaml'}"]
    out = subprocess.run([sys.executable, "-m", "radtriage.cli", *env_args, "models", "range", "stroke_ich",
                          "--dataset", str(tmp_path / "heads"), "--write"], capture_output=True, text=True,
                         timeout=300, cwd=REPO, env={**_env(), "RADTRIAGE_INFERENCE__MODELS_DIR": str(models),
                                                     "RADTRIAGE_DATA_DIR": str(tmp_path / "data")})
    assert out.returncode == 0, out.stderr[-2000:]
    assert "brain_hu" in out.stdout and "written:" in out.stdout
    after = load_card(models / "ich-densenet2d")  # checks the sha256 of the model file again
    assert after.sha256 == before.sha256 and after.validated_range.source.startswith("measured on heads")
    assert set(after.validated_range.checks) <= set(before.validated_range.checks)


def _env() -> dict[str, str]:
    import os

    return {k: v for k, v in os.environ.items() if not k.startswith("RADTRIAGE_")}
