"""`scripts/train.py TASK --smoke` trains two steps on tiny synthetic data and exports."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from radtriage.inference.card import load_card
from tests.unit.test_dataset_layouts import _png, rsna_root  # noqa: F401 - a fixture

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.slow
@pytest.mark.parametrize("task,model_id", [("ich", "ich-densenet2d"), ("bone_age", "bone-age-resnet2d")])
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


def test_ich_trains_on_a_site_dataset_in_the_rsna_layout(rsna_root, tmp_path):
    """--dataset: the RSNA ICH loader's studies are split by study and the card says where they came from."""
    from radtriage.datasets.layouts import examples
    from radtriage.training import ich

    root, _ = rsna_root
    result = ich.train(tmp_path, smoke=True, dataset=examples(root, "ich"), log=lambda *_: None)
    card = load_card(tmp_path / ich.MODEL_ID)
    assert card.training_data["synthetic"] is False and card.training_data["studies"] == 2
    assert result["card"].sha256 == card.sha256


def test_bone_age_trains_on_a_site_dataset_in_the_rsna_layout(tmp_path):
    from radtriage.datasets.layouts import examples
    from radtriage.training import bone_age

    root = tmp_path / "data"
    rows = ["id,boneage,male"]
    for i in range(10):
        _png(root / "boneage-training-dataset" / f"{100 + i}.png", 40 + 10 * i, shape=(80, 60))
        rows.append(f"{100 + i},{12 * (i + 1)},{i % 2 == 0}")
    (root / "boneage-training-dataset.csv").write_text("\n".join(rows) + "\n")
    bone_age.train(tmp_path / "out", smoke=True, dataset=examples(root, "bone_age"), log=lambda *_: None)
    card = load_card(tmp_path / "out" / bone_age.MODEL_ID)
    assert card.training_data == {"synthetic": False, "source": "site dataset (RSNA bone age layout)", "hands": 10}
