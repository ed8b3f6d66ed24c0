"""`TaskRunner`: one pipeline on one series, in-process (no Ray), with a real exported model."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from radtriage.datasets.synthetic import series_files
from radtriage.inference.runner import PipelineError, TaskRunner
from radtriage.pipelines import PipelineSpec, load_pipeline
from radtriage.synth import synthesize

REFERENCE = load_pipeline(Path(__file__).resolve().parents[2] / "pipelines" / "stroke_ich.yaml")


def Spec(**update) -> PipelineSpec:  # noqa: N802 - reads as the spec it builds
    """The reference ICH pipeline, version "1", with ``update`` (not validated again: a runner checks itself)."""
    return REFERENCE.model_copy(update={"version": "1", **update})


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> Path:
    from radtriage.training import ich

    out = tmp_path_factory.mktemp("models")
    ich.train(out, smoke=True, log=lambda *_: None)
    return out


@pytest.fixture(scope="module")
def head(tmp_path_factory) -> tuple[list[str], dict]:
    folder = synthesize("ct-head", 1, 5, tmp_path_factory.mktemp("head"), {"matrix": 128, "positive": True})[0]
    truth = json.loads((folder / "truth.json").read_text())
    return [str(p) for p in folder.glob("*.dcm")], truth  # all series: the localizer must be left out


def test_runner_gives_a_task_result_with_model_versions_and_timings(models, head, tmp_path):
    paths, truth = head
    main = [str(p) for p in series_files(Path(paths[0]).parent, truth["main_series_number"])]
    runner = TaskRunner(Spec(thresholds={"any": 0.0}), models)  # threshold 0: every study positive
    r = runner.run(main, key_image_dir=tmp_path / "keys")
    assert r.task == "ich" and r.model_id == "ich-densenet2d" and r.pipeline_version == "1"
    assert r.positive and r.findings[0].code == "ich" and r.findings[0].text.startswith("ICH - ")
    assert set(r.timings_ms) == {"load", "preprocess", "inference", "postprocess"}
    assert all(v >= 0 for v in r.timings_ms.values())
    assert r.provider == "CPUExecutionProvider"  # where it ran, shown with the timings
    assert r.findings[0].key_image and Path(r.findings[0].key_image).is_file()
    assert 0.0 <= r.scores["ich"] <= 1.0
    assert not TaskRunner(Spec(thresholds={"any": 1.01}), models).run(main).positive


def test_unreadable_series_and_wrong_model_are_pipeline_errors(models, tmp_path):
    bad = tmp_path / "x.dcm"
    bad.write_bytes(b"not dicom")
    with pytest.raises(PipelineError, match="could not be read"):
        TaskRunner(Spec(), models).run([str(bad)])
    with pytest.raises(PipelineError, match="is for task ich, not lvo"):
        TaskRunner(Spec(task="lvo"), models)


def test_the_runner_runs_the_specs_ops_and_refuses_params_its_model_was_not_trained_with(models, head):
    paths, truth = head
    main = [str(p) for p in series_files(Path(paths[0]).parent, truth["main_series_number"])]
    windows, volume = REFERENCE.preprocess[1], REFERENCE.postprocess[1]
    with pytest.raises(PipelineError, match="ich_windows size 128 is not the size 160"):
        TaskRunner(Spec(preprocess=[REFERENCE.preprocess[0], windows.model_copy(update={"params": {"size": 128}})]),
                   models)
    with pytest.raises(PipelineError, match=r"pre-processing failed: .*fewer than the 1000"):
        TaskRunner(Spec(preprocess=[REFERENCE.preprocess[0].model_copy(update={"params": {"min_slices": 1000}}),
                                    windows]), models).run(main)
    with pytest.raises(PipelineError, match="ich_volume_ml needs the prediction"):
        TaskRunner(Spec(postprocess=[volume]), models)
    scores_only = TaskRunner(Spec(postprocess=[REFERENCE.postprocess[0]], thresholds={"any": 0.0}), models).run(main)
    assert scores_only.positive and [f.code for f in scores_only.findings if f.code == "ich"] == []
