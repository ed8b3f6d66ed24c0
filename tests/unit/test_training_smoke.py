"""`scripts/train.py TASK --smoke` trains two steps on tiny synthetic data and exports."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from radtriage.inference.card import load_card

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.slow
@pytest.mark.parametrize("task,model_id", [("ich", "ich-densenet2d"), ("bone_age", "bone-age-densenet2d")])
def test_smoke_training_exports_a_loadable_model(task, model_id, tmp_path):
    import onnxruntime as ort

    r = subprocess.run(
        [sys.executable, str(REPO / "scripts" / "train.py"), task, "--smoke", "--out", str(tmp_path)],
        capture_output=True, text=True, timeout=300,
    )
    assert r.returncode == 0, r.stderr[-2000:]
    card = load_card(tmp_path / model_id)
    assert card.task == task and card.training_data["synthetic"] is True
    assert "not for clinical use" in card.intended_use
    sess = ort.InferenceSession(str(tmp_path / model_id / "model.onnx"), providers=["CPUExecutionProvider"])
    feeds = {}
    for spec, inp in zip(card.inputs, sess.get_inputs()):
        shape = [2 if isinstance(d, str) else d for d in spec.shape]
        feeds[inp.name] = np.zeros(shape, dtype=np.float32)
    outs = sess.run(None, feeds)
    assert outs[0].shape[0] == 2  # dynamic batch
