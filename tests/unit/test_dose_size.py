"""Patient size and SSDE (AAPM 204 / 220): water cylinders of known diameter written as real CT series give
their water-equivalent diameter, lungs count by their attenuation, a table beneath is left out, truncated
slices are not measured, and SSDE is f(Dw) x CTDIvol with the report's fits, for a body CT only."""

from __future__ import annotations

import math

import numpy as np
import pydicom
import pytest

from radtriage.dose.judge import examination_of
from radtriage.dose.registry import ct_series
from radtriage.dose.size import diameter_cm, sample, ssde, ssde_factor, water_equivalent_area
from radtriage.synth.dicom import CtSeries, make_study, write_ct_series

PIXEL_MM = 0.8
MATRIX = 512


def _disc(radius_mm: float, centre=(0.0, 0.0)) -> np.ndarray:
    y, x = (np.mgrid[:MATRIX, :MATRIX] - (MATRIX - 1) / 2.0) * PIXEL_MM
    return (x - centre[0]) ** 2 + (y - centre[1]) ** 2 <= radius_mm ** 2


def _cylinder(diameter_cm_: float, slices: int = 6, hu: float = 0.0, table: bool = True) -> np.ndarray:
    vol = np.full((slices, MATRIX, MATRIX), -1000.0)
    vol[:, _disc(diameter_cm_ * 5.0)] = hu
    if table:  # a 12 mm carbon-fibre table 3 mm under the patient, wider than them
        top = int((MATRIX - 1) / 2 + (diameter_cm_ * 5.0 + 3.0) / PIXEL_MM)
        vol[:, top:top + int(12 / PIXEL_MM), 20:-20] = 250.0
    return vol


def _series(tmp_path, vol, body_part="ABDOMEN", ctdi=12.0):
    rng = np.random.default_rng(2)
    study = make_study(rng, 0, "CT ABDOMEN", age_years=(40, 60))
    series = CtSeries(number=2, description="ABD 5mm", protocol="ABDOMEN", body_part=body_part, kernel="B30f",
                      ctdi_vol=ctdi)
    paths = write_ct_series(tmp_path, rng, study, series, vol, (5.0, PIXEL_MM, PIXEL_MM))
    return [pydicom.dcmread(p) for p in sample(paths)]


@pytest.mark.parametrize("diameter", [12.0, 25.0, 32.0])
def test_water_cylinder_gives_its_diameter(tmp_path, diameter):
    outcome, (report,) = ct_series(_series(tmp_path, _cylinder(diameter)))
    assert outcome == "ct_header" and report.size_slices == 6
    assert report.water_diameter_cm == pytest.approx(diameter, rel=0.02)


def test_lungs_count_by_their_attenuation():
    hu = np.full((MATRIX, MATRIX), -1000.0)
    hu[_disc(150.0)] = 0.0
    lungs = _disc(45.0, (-60.0, 0.0)) | _disc(45.0, (60.0, 0.0))
    hu[lungs] = -800.0
    aw, truncated = water_equivalent_area(hu, PIXEL_MM ** 2, PIXEL_MM)
    water = _disc(150.0).sum() * PIXEL_MM ** 2
    assert not truncated
    assert aw == pytest.approx(water - 0.8 * lungs.sum() * PIXEL_MM ** 2, rel=1e-6)  # holes filled, weighted 0.2
    assert diameter_cm(aw) < 30.0


def test_truncated_slices_are_not_measured(tmp_path):
    vol = _cylinder(25.0, slices=4, table=False)
    vol[:2] = 0.0  # the patient fills the field of view on two slices
    _, (report,) = ct_series(_series(tmp_path, vol))
    assert report.size_slices == 2 and report.water_diameter_cm == pytest.approx(25.0, rel=0.02)
    _, (none,) = ct_series(_series(tmp_path / "all", np.zeros((2, 64, 64))))
    assert none.water_diameter_cm is None and none.size_slices == 0


def test_ssde_is_the_aapm_fit_times_ctdivol(tmp_path):
    assert ssde_factor(30.0, 32) == pytest.approx(3.704369 * math.exp(-0.03671937 * 30.0))
    assert ssde_factor(20.0, 16) == pytest.approx(1.874799 * math.exp(-0.03871313 * 20.0))
    assert ssde_factor(30.0, None) is None and ssde_factor(50.0, 32) is None and ssde_factor(5.0, 16) is None
    assert ssde(10.0, 30.0, 32, head=True) is None and ssde(None, 30.0, 32) is None
    _, reports = ct_series(_series(tmp_path, _cylinder(30.0), ctdi=12.0))
    exam = examination_of(reports)
    dw = reports[0].water_diameter_cm
    assert exam.phantom_cm == 32 and exam.values["CTDIvol"] == 12.0
    assert exam.water_diameter_cm == pytest.approx(dw, abs=0.01)
    assert exam.ssde == pytest.approx(12.0 * 3.704369 * math.exp(-0.03671937 * dw), rel=1e-3)
    assert exam.ssde == pytest.approx(12.0 * 1.2312, rel=0.03)  # f(30 cm) = 1.23 on the 32 cm phantom
    assert exam.row()["ssde"] == exam.ssde and exam.row()["dw_cm"] == exam.water_diameter_cm


def test_a_head_keeps_its_size_but_no_ssde(tmp_path):
    _, reports = ct_series(_series(tmp_path, _cylinder(16.0, table=False), body_part="HEAD", ctdi=50.0))
    exam = examination_of(reports)
    assert exam.phantom_cm == 16 and exam.water_diameter_cm == pytest.approx(16.0, rel=0.02)
    assert exam.ssde is None


def test_size_alone_makes_no_examination(tmp_path):
    images = _series(tmp_path, _cylinder(25.0))
    for ds in images:
        del ds.CTDIvol
    outcome, (report,) = ct_series(images)
    assert outcome == "ct_header" and not report.events and report.water_diameter_cm == pytest.approx(25, rel=0.02)
    assert examination_of([report]) is None


def test_pixels_it_cannot_measure_leave_the_header_estimate(tmp_path, caplog):
    images = _series(tmp_path, _cylinder(25.0, slices=3))
    for ds in images:
        ds.PixelData = ds.PixelData[:100]  # truncated pixel data: pydicom cannot make the array
    outcome, (report,) = ct_series(images)
    assert outcome == "ct_header" and report.events[0].ctdivol == 12.0
    assert report.water_diameter_cm is None and "patient size not measured" in caplog.text
    images = _series(tmp_path / "b", _cylinder(25.0, slices=3))
    for ds in images:
        del ds.PixelSpacing
    _, (report,) = ct_series(images)
    assert report.events and report.water_diameter_cm is None
