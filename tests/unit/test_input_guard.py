"""The input guard: a series outside its model's validated range (declared in the committed model cards) gets
no result but "AI not applicable: outside the model's validated range (<check> <value>, validated [<range>])".

Every case runs the committed reference pipelines (`TaskRunner` through `serving.app.run_one`, the call the
dispatcher and the Ray deployments make) on DICOM files written by the synthetic generators.
"""

from __future__ import annotations

import dataclasses
import json
import re
import shutil
from pathlib import Path

import numpy as np
import pydicom
import pytest

from radtriage.imaging.series import load_series
from radtriage.inference import guard
from radtriage.inference.card import load_card
from radtriage.inference.runner import PipelineError, TaskRunner
from radtriage.pipelines import load_pipeline
from radtriage.serving.app import run_one
from radtriage.synth import synthesize

REPO = Path(__file__).resolve().parents[2]
MODELS = REPO / "models"
NOT_APPLICABLE = "AI not applicable: outside the model's validated range ("


def _runner(pipeline: str) -> TaskRunner:
    return TaskRunner(load_pipeline(REPO / "pipelines" / f"{pipeline}.yaml"), MODELS)


def _main(folder: Path) -> list[Path]:
    truth = json.loads((folder / "truth.json").read_text())
    return sorted(folder.glob(f"{truth['main_series_number']:03d}_*.dcm"))


def _copy(files: list[Path], out: Path, edit) -> list[str]:
    """The series rewritten into ``out`` with ``edit(dataset)`` applied to each file."""
    out.mkdir(parents=True)
    paths = []
    for f in files:
        ds = pydicom.dcmread(f)
        edit(ds)
        ds.save_as(out / f.name)
        paths.append(str(out / f.name))
    return paths


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("guard")
    synthesize("ct-head", 2, 61, root / "head", {"matrix": 128})
    synthesize("cta-head", 1, 62, root / "cta", {"matrix": 256})
    synthesize("cta-head", 1, 63, root / "cta5", {"matrix": 256, "slice_thickness": 5.0, "coverage_mm": 110})
    synthesize("ct-chest", 1, 64, root / "chest", {"matrix": 256})
    synthesize("xr-hand", 2, 65, root / "hand")
    return root


def _studies(data: Path, kind: str) -> list[Path]:
    return sorted(p for p in (data / kind).iterdir() if p.is_dir())


def test_normal_synthetic_heads_chests_and_hands_pass_and_get_their_results(data):
    models = {"head": "ich-densenet2d", "cta": "lvo-densenet2d", "chest": "nodule-cnn3d", "hand": "bone-age-resnet2d"}
    cards = {m: load_card(MODELS / m) for m in models.values()}
    for study, model in [(s, m) for kind, m in models.items() for s in _studies(data, kind)]:
        files = _main(study) if model != "bone-age-resnet2d" else [sorted(study.glob("*.dcm"))[0]]
        assert guard.failures(cards[model], load_series(files)) == [], (study.name, model)
    ich = _runner("stroke_ich")
    for study in _studies(data, "head"):
        outcome = run_one(ich, [str(p) for p in _main(study)], None)
        assert outcome["ok"] and outcome["result"]["model_id"] == "ich-densenet2d"
    hand = _studies(data, "hand")[0]
    outcome = run_one(_runner("bone_age"), [str(p) for p in sorted(hand.glob("001_*.dcm"))], None)
    assert outcome["ok"] and outcome["result"]["scores"]["bone_age_months"] > 0


def test_an_hu_shifted_head_is_refused_naming_the_check_its_value_and_the_range(data, tmp_path):
    study = _studies(data, "head")[0]

    def shift(ds):
        ds.RescaleIntercept = float(ds.RescaleIntercept) + 200  # a miscalibrated scanner: +200 HU everywhere

    shifted = _copy(_main(study), tmp_path / "shifted", shift)
    outcome = run_one(_runner("stroke_ich"), shifted, None)
    assert outcome["ok"] is False and outcome.get("not_applicable") is True, outcome
    reason = outcome["error"]
    assert reason.startswith(NOT_APPLICABLE) and reason.endswith(")")
    assert re.search(r"air_hu -8\d\d, validated \[-1100, -900\]", reason), reason
    assert re.search(r"brain_hu 2\d\d, validated \[15, 45\]", reason), reason
    assert re.search(r"csf_hu 2\d\d, validated \[-10, 32\]", reason), reason


def _plain_header(ds):
    """The contrast study made to look plain: every contrast tag removed, plain-CT descriptions."""
    for elem in list(ds):
        if elem.keyword.startswith("Contrast"):
            del ds[elem.tag]
    ds.StudyDescription = "CT HEAD WO CONTRAST"
    ds.SeriesDescription = "Head 5mm"


def test_a_contrast_head_without_its_contrast_tags_is_refused_by_the_ich_pipeline_from_its_pixels(data, tmp_path):
    ich = _runner("stroke_ich")
    # a 5 mm reconstruction, like the plain heads the model was trained on: contrast is the one thing outside
    files = _copy(_main(_studies(data, "cta5")[0]), tmp_path / "cta5", _plain_header)
    header = pydicom.dcmread(files[0], stop_before_pixels=True)
    assert not [e.keyword for e in header if "Contrast" in e.keyword]
    outcome = run_one(ich, files, None)
    assert outcome.get("not_applicable") is True, outcome
    checks = outcome["error"][len(NOT_APPLICABLE):-1].split("; ")
    assert len(checks) == 1 and re.fullmatch(r"contrast_spots \d+(\.\d+)?, validated \[0, 1\]", checks[0]), checks
    # the thin CTA source series as sent: contrast and slice spacing
    files = _copy(_main(_studies(data, "cta")[0]), tmp_path / "cta", _plain_header)
    outcome = run_one(ich, files, None)
    assert outcome.get("not_applicable") is True and "contrast_spots" in outcome["error"], outcome
    # the LVO model (a CTA model) takes the same pixels: it needs the contrast
    lvo = load_card(MODELS / "lvo-densenet2d")
    assert guard.failures(lvo, load_series([Path(p) for p in files])) == []


def test_a_chest_shifted_in_hu_and_a_head_for_the_chest_model_are_refused(data):
    nodule = load_card(MODELS / "nodule-cnn3d")
    chest = load_series(_main(_studies(data, "chest")[0]))
    assert guard.failures(nodule, chest) == []
    shifted = _values(guard.failures(nodule, dataclasses.replace(chest, array=chest.array + 200)))
    assert -850 < shifted["air_hu"] < -750 and -700 < shifted["lung_hu"] < -550, shifted
    head = _values(guard.failures(nodule, load_series(_main(_studies(data, "head")[0]))))
    assert head["slice_spacing_mm"] == 5 and head["fov_mm"] < 290, head


def _values(failures: list[str]) -> dict[str, float]:
    """``["air_hu -799, validated [-1100, -900]", ...]`` as ``{"air_hu": -799.0, ...}``."""
    out = {}
    for f in failures:
        name, value = re.fullmatch(r"(\w+) (\S+), validated \[\S+, \S+\]", f).groups()
        out[name] = float(value)
    return out


def test_a_radiograph_without_a_hand_or_of_an_adult_is_refused(data, tmp_path):
    bone_age = _runner("bone_age")
    pa = [sorted(_studies(data, "hand")[0].glob("001_*.dcm"))[0]]

    def adult(ds):
        ds.PatientBirthDate = f"{int(ds.StudyDate[:4]) - 25}{ds.StudyDate[4:]}"
        ds.PatientAge = "025Y"

    outcome = run_one(bone_age, _copy(pa, tmp_path / "adult", adult), None)
    assert outcome.get("not_applicable") is True and "age_months 300, validated [0, 216]" in outcome["error"], outcome

    def empty(ds):  # the detector exposed with nothing on it: noise only
        pixels = ds.pixel_array
        noise = np.random.default_rng(0).normal(pixels.mean(), 20, pixels.shape)
        ds.PixelData = np.clip(noise, 0, 2 ** int(ds.BitsStored) - 1).astype(pixels.dtype).tobytes()

    outcome = run_one(bone_age, _copy(pa, tmp_path / "empty", empty), None)
    assert outcome.get("not_applicable") is True and "foreground_" in outcome["error"], outcome


def test_a_card_naming_an_unknown_measure_stops_the_pipeline_at_start(tmp_path):
    folder = tmp_path / "ich-densenet2d"
    shutil.copytree(MODELS / "ich-densenet2d", folder)
    card = folder / "model.yaml"
    card.write_text(card.read_text() + "    pixel_luck: {min: 0}\n")
    with pytest.raises(PipelineError, match="validated_range: unknown measure 'pixel_luck' for ct_head"):
        TaskRunner(load_pipeline(REPO / "pipelines" / "stroke_ich.yaml"), tmp_path)
