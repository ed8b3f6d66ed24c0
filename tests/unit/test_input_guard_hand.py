"""The bone-age input guard on hands it cannot read: two hands, a cast or splint over the wrist, an adult, an
age far outside the range or unknown, no hand at all; normal hands (phantom and detector mode, rotated, 8-bit,
low-resolution exports) pass. Every case runs the committed bone_age pipeline (`TaskRunner` through
`serving.app.run_one`) on DICOM files written by the synthetic generator (`radtriage.synth.xr_hand`)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from radtriage.imaging.series import load_series
from radtriage.inference import guard
from radtriage.inference.card import load_card
from radtriage.inference.runner import TaskRunner
from radtriage.pipelines import load_pipeline
from radtriage.serving.app import run_one
from radtriage.synth import synthesize
from tests.unit.test_input_guard import NOT_APPLICABLE, _copy

REPO = Path(__file__).resolve().parents[2]
CARD = load_card(REPO / "models" / "bone-age-resnet2d")
CASES = {  # name: (seed, options)
    "normal": (71, {"acquisition": "detector", "conditions": ("collimation", "marker")}),
    "rotated_8bit": (72, {"acquisition": "detector", "conditions": ("rotated", "8bit", "fingers_together")}),
    "low_resolution": (73, {"acquisition": "detector", "conditions": ("low_resolution", "off_centre", "ring")}),
    "phantom": (74, {}),
    "two_hands": (75, {"acquisition": "detector", "conditions": ("second_hand", "collimation")}),
    "cast": (76, {"acquisition": "detector", "conditions": ("cast", "collimation", "marker")}),
    "splint": (77, {"acquisition": "detector", "conditions": ("splint",)}),
    "mono1": (78, {"acquisition": "detector", "conditions": ("collimation",), "photometric": "MONOCHROME1"}),
    "mono2": (78, {"acquisition": "detector", "conditions": ("collimation",), "photometric": "MONOCHROME2"}),
}


@pytest.fixture(scope="module")
def hands(tmp_path_factory) -> dict[str, list[Path]]:
    root = tmp_path_factory.mktemp("hands")
    out = {}
    for name, (seed, options) in CASES.items():
        (folder,) = synthesize("xr-hand", 1, seed, root / name, options)
        out[name] = [sorted(folder.glob("*.dcm"))[0]]  # the first view (PA, or the oblique)
    return out


def _run(files: list[Path]) -> dict:
    runner = TaskRunner(load_pipeline(REPO / "pipelines" / "bone_age.yaml"), REPO / "models")
    return run_one(runner, [str(p) for p in files], None)


def _refused(outcome: dict, reason: str) -> None:
    assert outcome.get("not_applicable") is True, outcome
    assert outcome["error"].startswith(NOT_APPLICABLE) and reason in outcome["error"], outcome


@pytest.mark.parametrize("name", ["normal", "rotated_8bit", "low_resolution", "phantom"])
def test_a_readable_hand_passes_the_guard_and_gets_a_bone_age(hands, name):
    assert guard.failures(CARD, load_series(hands[name])) == []
    outcome = _run(hands[name])
    assert outcome["ok"] and outcome["result"]["scores"]["bone_age_months"] > 0, outcome


def test_two_hands_on_one_plate_are_refused_as_two_hands(hands):
    _refused(_run(hands["two_hands"]), "hand_count 2, validated [1, 1]")


@pytest.mark.parametrize("name", ["cast", "splint"])
def test_a_cast_or_splint_over_the_wrist_is_refused_by_the_wrist_cover_ratio(hands, name):
    value = guard.measure(CARD.validated_range, load_series(hands[name]))["wrist_cover_ratio"]
    assert value > CARD.validated_range.checks["wrist_cover_ratio"].max
    _refused(_run(hands[name]), "wrist_cover_ratio")


@pytest.mark.parametrize("age,reason", [("045Y", "age_months 540, validated [0, 216]"),
                                        ("019Y", "age_months 228, validated [0, 216]"),
                                        (None, "age_months unknown")])
def test_an_adult_or_an_age_outside_the_range_or_unknown_is_refused(hands, tmp_path, age, reason):
    def set_age(ds):
        del ds.PatientBirthDate
        if age is None:
            del ds.PatientAge
        else:
            ds.PatientAge = age

    _refused(_run([Path(p) for p in _copy(hands["normal"], tmp_path / "aged", set_age)]), reason)


def test_a_plate_with_no_hand_is_refused(hands, tmp_path):
    def flat(ds):  # a flat-field exposure: a heel-effect ramp and noise, nothing on the plate
        a = ds.pixel_array
        ramp = np.linspace(0.4, 0.6, a.shape[0])[:, None] * np.ones(a.shape[1])
        noisy = ramp + np.random.default_rng(1).normal(0, 0.01, a.shape)
        ds.PixelData = np.clip(noisy * (2 ** int(ds.BitsStored) - 1), 0, None).astype(a.dtype).tobytes()

    outcome = _run([Path(p) for p in _copy(hands["normal"], tmp_path / "flat", flat)])
    assert outcome.get("not_applicable") is True, outcome


def test_the_same_hand_stored_monochrome1_or_monochrome2_gets_the_same_bone_age(hands):
    ages = [_run(hands[name])["result"]["scores"]["bone_age_months"] for name in ("mono1", "mono2")]
    assert ages[0] == pytest.approx(ages[1], abs=0.5)
