"""Dose in: RDSRs (CT and projection X-ray) read back to what was written, header-only CT estimates marked
as such, radiography header values; a dose SR is routed to no image pipeline."""

from __future__ import annotations

import dataclasses
import subprocess
from pathlib import Path

import numpy as np
import pydicom
import pytest

from radtriage.dose.header import ct_estimate, projection_values
from radtriage.dose.model import DoseReport, to_unit
from radtriage.dose.rdsr import NotADoseReport, read_rdsr
from radtriage.synth.dicom import CtSeries, make_study, write_ct_series, write_radiograph
from radtriage.synth.rdsr import ct_report, projection_report, write_rdsr
from tests.helpers import dcmtk


def _written(tmp_path: Path, report: DoseReport, study) -> tuple[Path, DoseReport]:
    path = write_rdsr(tmp_path, np.random.default_rng(1), study, report)
    return path, read_rdsr(pydicom.dcmread(path))


def test_ct_rdsr_reads_back_to_what_was_written(tmp_path):
    rng = np.random.default_rng(7)
    study = make_study(rng, 0, "CT HEAD AND CHEST", age_years=(40, 60))
    report = ct_report(rng, study, ("head", "chest", "abdomen-pelvis"))
    path, got = _written(tmp_path, report, study)
    assert got.source == "rdsr" and not got.estimated and got.modality == "CT"
    assert len(got.events) == 4  # the localizer and three acquisitions, in their order
    for want, have in zip(report.events, got.events, strict=True):
        assert have == dataclasses.replace(want, ctdivol=have.ctdivol, dlp=have.dlp)
        assert have.ctdivol == pytest.approx(want.ctdivol) if want.ctdivol is not None else have.ctdivol is None
        assert have.dlp == pytest.approx(want.dlp) if want.dlp is not None else have.dlp is None
    assert [e.phantom_cm for e in got.events] == [None, 16, 32, 32]  # both phantoms, kept apart
    assert got.dlp_total == pytest.approx(report.dlp_total)
    assert got.events[0].is_localizer and not got.events[1].is_localizer
    assert got.study_uid == study.study_uid and got.series_uid and got.sop_instance_uid
    assert got.patient.sex == study.patient.sex and 40 <= got.patient.age_years <= 61
    assert got.protocol == "ROUTINE HEAD" and got.facility == study.institution


def test_child_body_on_the_16_cm_phantom(tmp_path):
    rng = np.random.default_rng(3)
    study = make_study(rng, 1, "CT CHEST", age_years=(4, 6))
    report = ct_report(rng, study, ("chest",), child=True, phantom=16)
    _, got = _written(tmp_path, report, study)
    assert got.events[1].phantom_cm == 16 and got.patient.age_years < 7


def test_projection_rdsr_reads_back_in_registry_units(tmp_path):
    rng = np.random.default_rng(5)
    study = make_study(rng, 2, "XR CHEST", modality="XR")
    report = projection_report(rng, study, views=2)
    _, got = _written(tmp_path, report, study)
    assert got.modality == "DX" and len(got.events) == 2
    for want, have in zip(report.events, got.events, strict=True):
        assert have.dap == pytest.approx(want.dap) and have.entrance_dose == pytest.approx(want.entrance_dose)
        assert have.exposure_index == pytest.approx(want.exposure_index)
        assert have.deviation_index == pytest.approx(want.deviation_index)
        assert have.target_region == "Chest" and have.event_uid == want.event_uid
    assert got.dap_total == pytest.approx(report.dap_total)
    assert got.entrance_dose_total == pytest.approx(report.entrance_dose_total)


def test_rdsr_is_clean_for_dsrdump(tmp_path):
    binary = dcmtk("dsrdump")
    if binary is None:
        pytest.skip("dcmtk dsrdump not available")
    rng = np.random.default_rng(9)
    study = make_study(rng, 3, "CT HEAD")
    path, _ = _written(tmp_path, ct_report(rng, study, ("head", "chest")), study)
    out = subprocess.run([binary, "-Ee", str(path)], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert "Mean CTDIvol" in out.stdout and "E:" not in out.stderr


def test_another_sr_is_not_a_dose_report(tmp_path):
    rng = np.random.default_rng(2)
    study = make_study(rng, 0, "CT HEAD")
    path = write_rdsr(tmp_path, rng, study, ct_report(rng, study))
    ds = pydicom.dcmread(path)
    ds.ConceptNameCodeSequence[0].CodeValue = "126000"  # an imaging measurement report
    with pytest.raises(NotADoseReport):
        read_rdsr(ds)


def test_header_only_ct_is_an_estimate(tmp_path):
    rng = np.random.default_rng(4)
    study = make_study(rng, 0, "CT HEAD", age_years=(30, 70))
    series = CtSeries(number=2, description="HEAD 5mm", protocol="ROUTINE HEAD", body_part="HEAD", kernel="H30s",
                      ctdi_vol=55.0, kvp=120.0, exposure_mas=300.0)
    paths = write_ct_series(tmp_path, rng, study, series, np.zeros((8, 16, 16)), (5.0, 0.5, 0.5))
    got = ct_estimate([pydicom.dcmread(p, stop_before_pixels=True) for p in paths])
    assert got is not None and got.estimated and got.source == "header"
    (event,) = got.events
    assert event.ctdivol == 55.0 and event.phantom_cm == 16 and event.kvp == 120.0 and event.exposure_mas == 300.0
    assert event.scan_length_mm == pytest.approx(8 * 5.0)  # 7 intervals of 5 mm plus one slice
    assert got.dlp_total == pytest.approx(55.0 * 4.0)


def test_header_only_ct_without_ctdivol_gives_nothing(tmp_path):
    rng = np.random.default_rng(4)
    study = make_study(rng, 0, "CT HEAD")
    series = CtSeries(number=2, description="HEAD", protocol="HEAD", body_part="HEAD", kernel="H30s")
    paths = write_ct_series(tmp_path, rng, study, series, np.zeros((2, 8, 8)), (5.0, 0.5, 0.5))
    headers = [pydicom.dcmread(p, stop_before_pixels=True) for p in paths]
    for h in headers:
        del h.CTDIvol
    assert ct_estimate(headers) is None


def test_radiograph_header_values(tmp_path):
    rng = np.random.default_rng(6)
    study = make_study(rng, 0, "XR HAND", modality="XR", age_years=(8, 9))
    path = write_radiograph(tmp_path, rng, study, np.zeros((16, 16)), 0.2, extra={
        "ImageAndFluoroscopyAreaDoseProduct": 1.5, "EntranceDoseInmGy": 0.05, "ExposureIndex": 350,
        "TargetExposureIndex": 400, "DeviationIndex": -0.6, "PatientWeight": 27.5})
    got = projection_values([pydicom.dcmread(path, stop_before_pixels=True)])
    assert got is not None and not got.estimated
    (event,) = got.events
    assert event.dap == pytest.approx(0.15)  # 1.5 dGy.cm2
    assert (event.entrance_dose, event.exposure_index, event.target_exposure_index, event.deviation_index) == (
        0.05, 350.0, 400.0, -0.6)
    assert got.patient.weight_kg == 27.5 and 8 <= got.patient.age_years < 10


def test_units():
    assert to_unit("DAP", 2.0, "Gy·m²") == pytest.approx(2e4)
    assert to_unit("DAP", 150, "mGy.cm2") == pytest.approx(0.15)
    assert to_unit("DLP", 1000, "mGy.mm") == pytest.approx(100)
    with pytest.raises(ValueError, match="unit"):
        to_unit("CTDIvol", 1, "rad")


def test_no_shipped_pipeline_selects_a_dose_sr(tmp_path):
    from radtriage.ingest.parse import parse_part10
    from radtriage.pipelines import load_pipelines
    from radtriage.routing import route

    rng = np.random.default_rng(8)
    study = make_study(rng, 0, "CT HEAD")
    path = write_rdsr(tmp_path, rng, study, ct_report(rng, study))
    _, hdr = parse_part10(path.read_bytes())
    header = {**hdr.series_header(), "LocalizerCount": 0}
    specs = load_pipelines(Path(__file__).parents[2] / "pipelines")
    assert specs and route(specs, header, 1) == []
