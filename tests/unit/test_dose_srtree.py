"""The fast reading of an SR's content tree straight from the bytes (`radtriage.dose.srtree`) gives what pydicom
gives, item for item and report for report: the files radtriage writes, and dcmtk's re-encodings of them
(implicit VR, explicit and undefined lengths of sequences and items); what it does not read (big endian, no
preamble) goes to pydicom; non-ASCII text is decoded with the document's character set."""

from __future__ import annotations

import subprocess

import numpy as np
import pydicom
import pytest

from radtriage.dose.rdsr import read_rdsr, read_rdsr_file
from radtriage.dose.srtree import NotFast, _fast, from_dataset, read_file
from radtriage.synth.dicom import make_study
from radtriage.synth.rdsr import ct_report, projection_report, write_rdsr
from tests.helpers import dcmtk


@pytest.fixture
def written(tmp_path):
    rng = np.random.default_rng(17)
    ct = make_study(rng, 0, "CT HEAD AND CHEST", age_years=(30, 50))
    xr = make_study(rng, 1, "XR CHEST", modality="XR")
    return [write_rdsr(tmp_path / "ct", rng, ct, ct_report(rng, ct, ("head", "chest", "abdomen-pelvis"))),
            write_rdsr(tmp_path / "xr", rng, xr, projection_report(rng, xr, views=3))]


def _same(path) -> None:
    ds = pydicom.dcmread(path)
    header, tree = _fast(path)
    assert tree == from_dataset(ds) and len(tree.children) >= 3
    assert read_rdsr(header, tree) == read_rdsr(ds) == read_rdsr_file(path)


def test_the_files_radtriage_writes(written):
    for path in written:
        _same(path)


@pytest.mark.parametrize("options", [["+ti"], ["+te", "+e"], ["+te", "-e"], ["+ti", "-e"]],
                         ids=["implicit", "explicit-lengths", "undefined-lengths", "implicit-undefined"])
def test_dcmtk_re_encodings(written, tmp_path, options):
    dcmconv = dcmtk("dcmconv")
    if dcmconv is None:
        pytest.skip("dcmtk dcmconv not available")
    for i, path in enumerate(written):
        out = tmp_path / f"{i}.dcm"
        done = subprocess.run([dcmconv, *options, str(path), str(out)], capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, done.stderr
        _same(out)


def test_what_the_fast_path_does_not_read_goes_to_pydicom(written, tmp_path):
    dcmconv = dcmtk("dcmconv")
    if dcmconv is None:
        pytest.skip("dcmtk dcmconv not available")
    big = tmp_path / "big.dcm"  # explicit VR big endian (retired, still met)
    done = subprocess.run([dcmconv, "+tb", str(written[0]), str(big)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    with pytest.raises(NotFast):
        _fast(big)
    ds = pydicom.dcmread(big)
    header, tree = read_file(big)
    assert tree == from_dataset(ds) and read_rdsr(header, tree) == read_rdsr(pydicom.dcmread(written[0]))


def test_non_ascii_text_in_the_documents_character_set(written, tmp_path):
    for charset, name in (("ISO_IR 100", "KOPF ÄÖÜ"), ("ISO_IR 192", "頭部 ROUTINE")):
        ds = pydicom.dcmread(written[0])
        ds.SpecificCharacterSet = charset
        acq = ds.ContentSequence[2]
        acq.ContentSequence[0].TextValue = name  # Acquisition Protocol of the first acquisition
        path = tmp_path / f"{charset.replace(' ', '_')}.dcm"
        ds.save_as(path, enforce_file_format=True)
        _same(path)
        assert read_rdsr_file(path).events[0].protocol == name
