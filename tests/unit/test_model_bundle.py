"""`MonaiBundleModel` beside `OnnxModel`: `load_model` picks by what the folder holds."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from radtriage.imaging.volume import Volume
from radtriage.inference import ich
from radtriage.inference.card import ModelCardError, TensorSpec, load_card
from radtriage.inference.model import Model, MonaiBundleModel, OnnxModel, load_model
from radtriage.inference.tasks import predictor
from radtriage.training.export import export_bundle, export_model

N_IN = len(ich.CHANNELS)


def _card_fields() -> dict:
    return {
        "id": "ich-test",
        "version": "0.0.1",
        "task": "ich",
        "architecture": "MONAI DenseNet 2D (untrained, test only)",
        "inputs": [TensorSpec(name="slices", shape=["batch", N_IN, ich.SIZE, ich.SIZE], description="2.5D slices")],
        "outputs": [TensorSpec(name="logits", shape=["batch", len(ich.OUTPUTS)], description="logits")],
        "preprocessing": {"size": ich.SIZE},
        "thresholds": {"any": 0.5},
        "training_data": {"synthetic": True},
    }


@pytest.fixture(scope="module")
def folders(tmp_path_factory) -> tuple[Path, Path]:
    from radtriage.training.ich import make_net

    torch.manual_seed(3)
    torch.set_num_threads(2)
    net = make_net().eval()
    with torch.no_grad():  # non-trivial BatchNorm statistics, so the two exports differ if either is wrong
        for m in net.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-0.1, 0.1)
                m.running_var.uniform_(0.5, 1.5)
    root = tmp_path_factory.mktemp("models")
    example = (torch.zeros(1, N_IN, ich.SIZE, ich.SIZE),)
    export_model(root / "onnx", net, example, _card_fields())
    export_bundle(root / "bundle", net, example, _card_fields())
    return root / "onnx", root / "bundle"


@pytest.fixture(scope="module")
def loaded(folders) -> tuple[Model, Model]:
    return load_model(folders[0]), load_model(folders[1])


def _x(n: int = 2) -> np.ndarray:
    return np.random.default_rng(0).random((n, N_IN, ich.SIZE, ich.SIZE), dtype=np.float32)


def test_bundle_layout_and_card(folders):
    _, bundle = folders
    assert (bundle / "models/model.ts").is_file()
    meta = json.loads((bundle / "configs/metadata.json").read_text())
    assert meta["name"] == "ich-test" and meta["version"] == "0.0.1" and meta["task"] == "ich"
    assert "not for clinical use" in meta["intended_use"]
    assert set(meta["network_data_format"]["inputs"]) == {"slices"}
    assert set(meta["network_data_format"]["outputs"]) == {"logits"}
    card = load_card(bundle)
    assert card.file == "models/model.ts" and card.size_bytes == (bundle / "models/model.ts").stat().st_size


def test_load_model_picks_the_runner_by_folder(loaded):
    a, b = loaded
    assert type(a) is OnnxModel and type(b) is MonaiBundleModel
    assert isinstance(a, Model) and isinstance(b, Model)
    assert a.input_names == b.input_names == ["slices"]
    assert a.output_names == b.output_names == ["logits"]
    assert b.card.id == "ich-test" and b.card.thresholds == {"any": 0.5}


def test_both_runners_give_the_same_logits(loaded):
    onnx, bundle = loaded
    x = _x()
    a = onnx.run(slices=x)["logits"]
    b = bundle.run(slices=x)["logits"]
    assert a.shape == b.shape == (2, len(ich.OUTPUTS)) and b.dtype == np.float32
    assert np.abs(a).max() > 1e-3  # not a degenerate all-zero network
    np.testing.assert_allclose(a, b, rtol=1e-3, atol=1e-4)
    assert not np.allclose(b[0], b[1])  # different slices, different logits: the network is really run


def test_bundle_inference_config_is_a_valid_monai_config(folders, loaded):
    from monai.bundle import ConfigParser

    _, bundle = folders
    parser = ConfigParser()
    parser.read_config(str(bundle / "configs/inference.json"))
    parser["bundle_root"] = str(bundle)
    assert parser.get_parsed_content("device").type in ("cpu", "cuda")
    net = parser.get_parsed_content("network")  # MONAI's own parser instantiates the network it names
    assert isinstance(net, torch.jit.ScriptModule) and not net.training
    ours = loaded[1].network.state_dict()
    theirs = net.state_dict()
    assert set(theirs) == set(ours) and len(ours) > 10
    assert all(torch.equal(theirs[k].cpu(), ours[k].cpu()) for k in ours)


def test_ich_predictor_runs_on_the_bundle_model(loaded):
    onnx, bundle = loaded
    hu = np.random.default_rng(1).normal(30, 20, (3, 48, 48)).astype(np.float32)
    vol = Volume(hu, (5.0, 1.0, 1.0))
    predict = predictor("ich")
    via_bundle = predict(bundle, vol)
    via_onnx = predict(onnx, vol)
    assert len(via_bundle["slice_probs"]) == 3 and 0.0 <= via_bundle["score"] <= 1.0
    assert via_bundle["key_slice"] == via_onnx["key_slice"]
    assert via_bundle["score"] == pytest.approx(via_onnx["score"], abs=1e-4)
    assert via_bundle["positive"] == (via_bundle["score"] >= 0.5)


def test_bundle_runner_checks_input_names(loaded):
    with pytest.raises(ValueError, match="do not match"):
        loaded[1].run(image=_x(1))


def test_tampered_network_fails_the_sha256_check(folders, tmp_path):
    _, bundle = folders
    copy = shutil.copytree(bundle, tmp_path / "bundle")
    ts = copy / "models/model.ts"
    ts.write_bytes(ts.read_bytes() + b"\0")
    with pytest.raises(ModelCardError, match="sha256"):
        load_model(copy)
    with pytest.raises(ModelCardError, match="sha256"):
        MonaiBundleModel(copy)


def test_bundle_without_its_configs_is_refused(folders, tmp_path):
    _, bundle = folders
    copy = shutil.copytree(bundle, tmp_path / "bundle")
    (copy / "configs/metadata.json").unlink()
    with pytest.raises(ModelCardError, match="metadata.json is missing"):
        load_model(copy)
    copy2 = shutil.copytree(bundle, tmp_path / "bundle2")
    (copy2 / "configs/inference.json").write_text(json.dumps({"network_def": "$torch.jit.load('other.ts')"}))
    with pytest.raises(ModelCardError, match="does not name"):
        load_model(copy2)


def test_folder_with_neither_fails_clearly(folders, tmp_path):
    _, bundle = folders
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ModelCardError, match="model.yaml"):
        load_model(empty)
    # a TorchScript file with a valid card but no bundle configs: neither ONNX nor a bundle
    loose = shutil.copytree(bundle, tmp_path / "loose")
    shutil.rmtree(loose / "configs")
    with pytest.raises(ModelCardError, match="cannot tell how to run models/model.ts"):
        load_model(loose)


def test_task_runner_loads_a_bundle_folder(folders):
    from types import SimpleNamespace

    from radtriage.inference.runner import PipelineError, TaskRunner

    root = folders[1].parent
    ops = [SimpleNamespace(op=name, params={}) for name in ("ct_hu_volume", "ich_windows", "ich_study_result")]
    spec = SimpleNamespace(id="stroke_ich", version="1", task="ich", model="bundle", thresholds={},
                           preprocess=ops[:2], postprocess=ops[2:])
    runner = TaskRunner(spec, root, threads=1)
    assert isinstance(runner.model, MonaiBundleModel) and runner.threshold("any", 0.9) == 0.5
    assert isinstance(TaskRunner(SimpleNamespace(**{**vars(spec), "model": "onnx"}), root).model, OnnxModel)
    with pytest.raises(PipelineError, match="is for task ich, not lvo"):
        TaskRunner(SimpleNamespace(**{**vars(spec), "task": "lvo"}), root)
