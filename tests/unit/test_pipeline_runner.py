"""`TaskRunner`: one pipeline on one series, in-process (no Ray), with a real exported model."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from radtriage.datasets.synthetic import series_files
from radtriage.inference.pipeline import PipelineError, TaskRunner
from radtriage.synth import synthesize


@dataclass
class Spec:
    id: str = "stroke_ich"
    version: str = "1"
    task: str = "ich"
    model: str = "ich-densenet2d"
    thresholds: dict = field(default_factory=dict)


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
    assert set(r.timings_ms) == {"load", "inference", "postprocess"} and all(v >= 0 for v in r.timings_ms.values())
    assert 0.0 <= r.scores["ich"] <= 1.0
    assert not TaskRunner(Spec(thresholds={"any": 1.01}), models).run(main).positive


def test_unreadable_series_and_wrong_model_are_pipeline_errors(models, tmp_path):
    bad = tmp_path / "x.dcm"
    bad.write_bytes(b"not dicom")
    with pytest.raises(PipelineError, match="could not be read"):
        TaskRunner(Spec(), models).run([str(bad)])
    with pytest.raises(PipelineError, match="is for task ich, not lvo"):
        TaskRunner(Spec(task="lvo"), models)
