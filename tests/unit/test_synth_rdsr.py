"""`radtriage synth ct-rdsr` and the CT generators' ``rdsr`` switch: the RDSRs written read back to their
truth (and to the images' own CTDIvol), are clean for dcmtk's dsrdump, and a bad option is refused."""

from __future__ import annotations

import json
import subprocess

import pydicom
import pytest

from radtriage.cli import main
from radtriage.dose.rdsr import read_rdsr
from tests.helpers import dcmtk


def _dsrdump_clean(path) -> None:
    binary = dcmtk("dsrdump")
    if binary is None:
        pytest.skip("dcmtk dsrdump not available")
    out = subprocess.run([binary, "-Ee", str(path)], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0 and not out.stderr.strip(), out.stderr  # no error, no warning


def test_synth_ct_rdsr_command(tmp_path, capsys):
    assert main(["synth", "ct-rdsr", "--n", "2", "--seed", "4", "--out", str(tmp_path),
                 "--opt", "parts=chest+abdomen-pelvis"]) == 0
    folders = sorted(tmp_path.iterdir())
    assert [f.name for f in folders] == ["ct-rdsr-4-0000", "ct-rdsr-4-0001"]
    for folder in folders:
        truth = json.loads((folder / "truth.json").read_text())
        (path,) = [folder / name for name in truth["files"]]
        got = read_rdsr(pydicom.dcmread(path))
        assert got.study_uid == truth["study_uid"] and got.modality == "CT" and truth["synthetic"]
        assert [e.protocol for e in got.events] == ["TOPOGRAM", "ROUTINE CHEST", "ABDOMEN PELVIS"]
        for want, have in zip(truth["events"], got.events, strict=True):
            assert have.ctdivol == want.get("ctdivol") and have.dlp == want.get("dlp")
            assert have.phantom_cm == want.get("phantom_cm") and have.event_uid == want["event_uid"]
        assert got.dlp_total == pytest.approx(truth["dlp_total_mgy_cm"])
        assert got.patient.weight_kg == truth["weight_kg"] and got.patient.age_years >= 18
        _dsrdump_clean(path)
    assert len({json.loads((f / "truth.json").read_text())["study_uid"] for f in folders}) == 2


def test_synth_ct_rdsr_child_on_the_16_cm_phantom(tmp_path):
    assert main(["synth", "ct-rdsr", "--out", str(tmp_path), "--opt", "parts=chest", "--opt", "child=true",
                 "--opt", "phantom=16"]) == 0
    (path,) = tmp_path.glob("*/997_0001_rdsr.dcm")
    got = read_rdsr(pydicom.dcmread(path))
    assert got.events[1].phantom_cm == 16 and got.patient.age_years < 13


@pytest.mark.parametrize("opt", ["parts=knee", "phantom=20", "colour=blue"])
def test_synth_ct_rdsr_refuses_a_bad_option(tmp_path, capsys, opt):
    assert main(["synth", "ct-rdsr", "--out", str(tmp_path), "--opt", opt]) == 2
    assert "ct-rdsr:" in capsys.readouterr().err


@pytest.mark.parametrize("kind", ["ct-head", "ct-chest"])
def test_ct_generators_write_the_rdsr_of_their_images(tmp_path, kind):
    assert main(["synth", kind, "--out", str(tmp_path), "--opt", "matrix=64", "--opt", "rdsr=true"]) == 0
    (folder,) = tmp_path.iterdir()
    truth = json.loads((folder / "truth.json").read_text())
    assert {"number": 997, "role": "dose", "description": "Dose Report"}.items() <= truth["series"][-1].items()
    sr = read_rdsr(pydicom.dcmread(folder / "997_0001_rdsr.dcm"))
    image = pydicom.dcmread(folder / "002_0001.dcm", stop_before_pixels=True)
    (acq,) = [e for e in sr.events if not e.is_localizer]
    assert sr.study_uid == image.StudyInstanceUID and acq.ctdivol == pytest.approx(float(image.CTDIvol), abs=0.01)
    assert acq.phantom_cm == (16 if kind == "ct-head" else 32)
    assert acq.dlp == pytest.approx(acq.ctdivol * acq.scan_length_mm / 10.0, abs=0.01)
    _dsrdump_clean(folder / "997_0001_rdsr.dcm")
