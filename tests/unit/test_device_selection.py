"""Which device a model replica runs on follows its deployment's resources: a replica given a GPU runs on CUDA
or refuses to start (never slowly on the CPU unnoticed); a replica given none runs on the CPU. On this CPU-only
machine the refusal is what can be seen; the choice itself is a pure function, checked for both cases."""

from __future__ import annotations

from pathlib import Path

import pytest

from radtriage.inference.model import CPU, CUDA, DeviceError, choose_providers, load_model

REPO = Path(__file__).resolve().parents[2]
ICH = REPO / "models" / "ich-densenet2d"


def test_providers_follow_the_gpus_a_replica_was_given() -> None:
    assert choose_providers(0, [CUDA, CPU]) == [CPU]  # a GPU on the node is not this replica's unless Ray gave it
    assert choose_providers(1, [CUDA, CPU]) == [CUDA, CPU]
    assert choose_providers(0.25, ["TensorrtExecutionProvider", CUDA, CPU]) == [CUDA, CPU]
    with pytest.raises(DeviceError, match="onnxruntime-gpu"):
        choose_providers(1, [CPU])


def test_onnx_model_says_where_it_runs_and_refuses_a_gpu_it_does_not_have() -> None:
    import onnxruntime as ort

    model = load_model(ICH, threads=1)
    assert model.provider == CPU
    if CUDA not in ort.get_available_providers():
        with pytest.raises(DeviceError, match="asks for 1 GPU"):
            load_model(ICH, threads=1, gpus=1)


def test_a_pipeline_given_a_gpu_it_cannot_use_fails_with_the_reason(make_settings) -> None:
    import onnxruntime as ort

    from radtriage.inference.tasks import OPS
    from radtriage.pipelines import load_pipelines
    from radtriage.serving.runners import InProcessRunner

    if CUDA in ort.get_available_providers():
        pytest.skip("this machine has CUDA")
    settings = make_settings(inference={"enabled": True, "use_ray": False, "pipelines_dir": str(REPO / "pipelines"),
                                        "models_dir": str(REPO / "models"),
                                        "deployments": {"stroke_ich": {"num_gpus": 1}}})
    runner = InProcessRunner(load_pipelines(REPO / "pipelines", ops=OPS), settings)
    assert "stroke_ich" not in runner.runners and "GPU" in runner.errors["stroke_ich"]
    assert runner.runners["stroke_lvo"].model.provider == CPU
