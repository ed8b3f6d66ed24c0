"""DRL sets (the shipped example set, bands, phantoms, units), the site's mapping, and judging: above a
level, a child at once, a pregnant patient's abdomen or pelvis at once, a repeat; 16 and 32 cm never mixed."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import numpy as np
import pytest

from radtriage.dose.config import load_dose_config, parse_dose_config
from radtriage.dose.drl import DrlError, load_set, parse_set
from radtriage.dose.judge import examination_of, judge
from radtriage.dose.model import DoseEvent, DoseReport, PatientDose
from radtriage.synth.dicom import make_study
from radtriage.synth.rdsr import ct_report, projection_report

ROOT = Path(__file__).parents[2]
WHEN = dt.datetime(2026, 12, 7, 3, 0, tzinfo=dt.UTC)


@pytest.fixture(scope="module")
def site():
    config, files = load_dose_config(ROOT / "configs" / "dose.yaml")
    (drl, _sha), = files
    config.check_against(drl, "configs/dose.yaml")
    return config, drl


def _ct(phantom: int, ctdi: float, dlp: float, *, age: float = 40, weight=None, pregnant=False,
        protocol="ROUTINE HEAD", region="Head", estimated=False) -> DoseReport:
    events = (DoseEvent(kind="ct", acquisition_type="Constant Angle Acquisition", dlp=5.0),
              DoseEvent(kind="ct", protocol=protocol, target_region=region, phantom_cm=phantom, ctdivol=ctdi, dlp=dlp))
    return DoseReport(study_uid="1.2.3", series_uid="1.2.3.4", sop_instance_uid="1.2.3.4.5", modality="CT",
                      source="header" if estimated else "rdsr", estimated=estimated, events=events,
                      dlp_total=dlp + 5.0, patient=PatientDose(age_years=age, weight_kg=weight, pregnant=pregnant),
                      performed_at=WHEN, facility="Site A", station="CT1", protocol=protocol)


def test_the_shipped_set_is_an_example_and_says_so(site):
    _config, drl = site
    assert drl.name == "EXAMPLE - not a published DRL" and drl.example
    assert all(lv.source == "example" for lv in drl.levels)
    with pytest.raises(DrlError, match="example"):
        parse_set({**drl.model_dump(mode="json"), "example": False}, "x.yaml")


def test_a_ct_level_names_its_phantom_and_a_unit_it_knows():
    base = {"name": "S", "version": "1", "source": "s", "bands": [{"name": "adult", "age_years": {"min": 16}}]}
    row = {"examination": "CT head", "band": "adult", "quantity": "CTDIvol", "value": 60, "unit": "mGy",
           "source": "s", "table": "1", "page": "2"}
    with pytest.raises(DrlError, match="phantom"):
        parse_set({**base, "levels": [row]}, "f")
    with pytest.raises(DrlError, match="unit"):
        parse_set({**base, "levels": [{**row, "phantom_cm": 16, "unit": "rad"}]}, "f")
    dap = {**row, "quantity": "DAP", "value": 100, "unit": "mGy.cm2"}
    got = parse_set({**base, "levels": [dap]}, "f")
    assert got.levels[0].registry_value == pytest.approx(0.1)


def test_bands_by_age_and_weight(site):
    _config, drl = site
    assert drl.band_for("CT head", 40, None) == "adult"
    assert drl.band_for("CT head", 0.5, 8) == "child 0-<1 y"
    assert drl.band_for("CT head", 7, None) == "child 5-<10 y"
    assert drl.band_for("CT chest", 7, 22) == "child 15-<30 kg"  # by weight where the set has weight bands
    assert drl.band_for("CT chest", 7, None) is None  # a child's chest without a weight: not judged
    assert drl.band_for("CT head", None, None) is None


def test_mapping_by_protocol_and_description(site):
    config, _ = site
    assert config.examination_of({"Modality": "CT", "ProtocolName": "ROUTINE HEAD"}) == "CT head"
    assert config.examination_of({"Modality": "CT", "StudyDescription": "CT ABDOMEN PELVIS C+"}) == "CT abdomen-pelvis"
    assert config.examination_of({"Modality": "DX", "StudyDescription": "XR CHEST PA"}) == "XR chest PA"
    assert config.examination_of({"Modality": "CT", "ProtocolName": "KNEE"}) is None


def test_mapping_to_an_examination_the_set_lacks_stops_start_up(site):
    config, drl = site
    data = config.model_dump(mode="json", by_alias=True, exclude_none=True)
    data["examinations"][0]["examination"] = "CT knee"
    with pytest.raises(DrlError, match="CT knee"):
        parse_dose_config(data, "dose.yaml").check_against(drl, "dose.yaml")


def test_adult_head_above_the_level_goes_to_the_digest(site):
    config, drl = site
    exam = examination_of([_ct(16, 75.0, 1100.0)], config, drl)
    assert (exam.examination, exam.band, exam.phantom_cm) == ("CT head", "adult", 16)
    flags = judge(exam, config, drl)
    assert {(f.reason, f.quantity, f.urgent) for f in flags} == {("above_drl", "CTDIvol", False),
                                                                ("above_drl", "DLP", False)}
    assert not judge(examination_of([_ct(16, 55.0, 900.0)], config, drl), config, drl)


def test_far_above_is_urgent(site):
    config, drl = site
    (flag,) = judge(examination_of([_ct(16, 130.0, 900.0)], config, drl), config, drl)
    assert flag.urgent and flag.value == 130.0 and flag.level == 60.0 and "2.17 x" in flag.detail


def test_a_paediatric_head_above_its_level_is_urgent(site):
    config, drl = site
    exam = examination_of([_ct(16, 45.0, 500.0, age=3)], config, drl)
    assert exam.band == "child 1-<5 y" and exam.child
    flags = judge(exam, config, drl)
    assert [(f.quantity, f.urgent) for f in flags] == [("CTDIvol", True), ("DLP", True)]


def test_16_and_32_cm_are_never_compared(site):
    config, drl = site
    # a child's chest on the 32 cm phantom: the set's level for that band is on 16 cm
    exam = examination_of([_ct(32, 9.0, 200.0, age=5, weight=20, protocol="CHEST", region="Chest")], config, drl)
    assert exam.band == "child 15-<30 kg" and exam.phantom_cm == 32
    assert judge(exam, config, drl) == []
    exam16 = examination_of([_ct(16, 9.0, 200.0, age=5, weight=20, protocol="CHEST", region="Chest")], config, drl)
    assert [f.quantity for f in judge(exam16, config, drl)] == ["CTDIvol"]


def test_mixed_phantoms_keep_the_dominant_one():
    rep = _ct(16, 50.0, 800.0)
    body = DoseEvent(kind="ct", protocol="NECK", phantom_cm=32, ctdivol=12.0, dlp=300.0)
    exam = examination_of([DoseReport(**{**rep.__dict__, "events": (*rep.events, body)})])
    assert exam.phantom_cm == 16 and exam.values == {"CTDIvol": 50.0, "DLP": 800.0}


def test_pregnant_abdomen_is_urgent_whatever_the_dose(site):
    config, drl = site
    exam = examination_of([_ct(32, 5.0, 200.0, pregnant=True, protocol="ABDOMEN PELVIS", region="Abdomen and Pelvis")],
                          config, drl)
    (flag,) = judge(exam, config, drl)
    assert flag.reason == "pregnant_abdomen_pelvis" and flag.urgent
    head = examination_of([_ct(16, 40.0, 600.0, pregnant=True)], config, drl)
    assert judge(head, config, drl) == []


def test_repeat_within_the_interval(site):
    config, drl = site
    exam = examination_of([_ct(16, 40.0, 600.0)], config, drl)
    (flag,) = judge(exam, config, drl, earlier=[WHEN - dt.timedelta(hours=5)])
    assert flag.reason == "repeat" and not flag.urgent
    assert judge(exam, config, drl, earlier=[WHEN - dt.timedelta(hours=30)]) == []


def test_header_estimate_says_so(site):
    config, drl = site
    exam = examination_of([_ct(16, 70.0, 900.0, estimated=True)], config, drl)
    (flag,) = judge(exam, config, drl)
    assert exam.estimated and "estimated" in flag.detail


def test_rdsr_wins_over_header_estimates(site):
    config, drl = site
    header = _ct(16, 90.0, 1500.0, estimated=True)
    rdsr = _ct(16, 50.0, 800.0)
    exam = examination_of([header, rdsr], config, drl)
    assert exam.source == "rdsr" and exam.values["CTDIvol"] == 50.0 and not exam.estimated


def test_generated_reports_map_and_band(site):
    config, drl = site
    rng = np.random.default_rng(0)
    study = make_study(rng, 0, "CT HEAD", age_years=(2, 3))
    rep = ct_report(rng, study, ("head",), child=True)
    rep = DoseReport(**{**rep.__dict__, "patient": PatientDose(age_years=2.5)})
    exam = examination_of([rep], config, drl)
    assert (exam.examination, exam.band) == ("CT head", "child 1-<5 y")
    xr = projection_report(rng, make_study(rng, 1, "XR CHEST", modality="XR"), views=1)
    xr = DoseReport(**{**xr.__dict__, "patient": PatientDose(age_years=50)})
    exam = examination_of([xr], config, drl)
    assert exam.examination == "XR chest PA" and set(exam.values) == {"DAP", "EntranceDose"}


def test_a_reason_writes_its_numbers_as_a_physicist_reads_them(site):
    config, drl = site
    flags = judge(examination_of([_ct(16, 75.4, 1950.0)], config, drl), config, drl)
    dlp = next(f for f in flags if f.quantity == "DLP")
    assert "DLP 1955 mGy.cm" in dlp.detail and "e+" not in dlp.detail, dlp.detail  # the total with the localizer's 5
    ctdi = next(f for f in flags if f.quantity == "CTDIvol")
    assert "CTDIvol 75.4 mGy" in ctdi.detail and "the DRL 60 mGy" in ctdi.detail, ctdi.detail
