import os

import numpy as np
import pytest
import torch

from radtriage.inference.card import ModelCardError, TensorSpec, load_card
from radtriage.training.export import export_model

os.environ.setdefault("ORT_DISABLE_TELEMETRY", "1")


def _fields():
    return dict(
        id="tiny", version="0.0.1", task="ich", architecture="Linear",
        inputs=[TensorSpec(name="x", shape=["batch", 4], description="features")],
        outputs=[TensorSpec(name="y", shape=["batch", 2], description="logits")],
        preprocessing={}, training_data={"synthetic": True},
    )


def test_export_then_load_and_run(tmp_path):
    import onnxruntime as ort

    torch.manual_seed(0)
    net = torch.nn.Linear(4, 2)
    card = export_model(tmp_path / "tiny", net, (torch.zeros(1, 4),), _fields())
    assert load_card(tmp_path / "tiny") == card
    assert "not for clinical use" in (tmp_path / "tiny" / "model.yaml").read_text()
    sess = ort.InferenceSession(str(tmp_path / "tiny" / "model.onnx"), providers=["CPUExecutionProvider"])
    x = np.random.default_rng(0).standard_normal((5, 4)).astype(np.float32)  # dynamic batch
    (y,) = sess.run(None, {"x": x})
    np.testing.assert_allclose(y, net(torch.from_numpy(x)).detach().numpy(), rtol=1e-5, atol=1e-5)


def test_tampered_model_is_refused(tmp_path):
    export_model(tmp_path / "tiny", torch.nn.Linear(4, 2), (torch.zeros(1, 4),), _fields())
    with open(tmp_path / "tiny" / "model.onnx", "ab") as f:
        f.write(b"\0")
    with pytest.raises(ModelCardError, match="sha256"):
        load_card(tmp_path / "tiny")
