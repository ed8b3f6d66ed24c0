"""`radtriage synth KIND --send` acts as a scanner: studies with truth arrive over DICOM."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pydicom
import pytest

from radtriage.db import instances, ledger


@pytest.mark.slow
def test_synth_hand_studies_are_sent_and_assembled(runtime, services, tmp_path):
    out = tmp_path / "synth"
    r = subprocess.run(
        [sys.executable, "-m", "radtriage.cli", "synth", "xr-hand", "--n", "2", "--seed", "7",
         "--out", str(out), "--send", f"127.0.0.1:{runtime.scp.port}", "--aet", "CR_PAEDS"],
        capture_output=True, text=True, timeout=300,
    )
    assert r.returncode == 0, r.stderr[-2000:]
    folders = sorted(p for p in out.iterdir() if p.is_dir())
    assert len(folders) == 2
    sent = [f for d in folders for f in d.rglob("*.dcm")]
    for d in folders:
        truth = json.loads((d / "truth.json").read_text())
        assert truth["synthetic"] is True and truth["kind"] == "xr-hand" and truth["seed"] == 7
        assert "bone_age_months" in truth
    rows = instances.instance_rows(services.db)
    assert {row["sop_instance_uid"] for row in rows} == {str(pydicom.dcmread(f).SOPInstanceUID) for f in sent}
    assert {row["calling_ae"] for row in rows} == {"CR_PAEDS"}
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and len(ledger.job_rows(services.db)) < len(sent):
        time.sleep(0.1)
    cases = [j["case"] for j in ledger.job_rows(services.db)]
    assert {c["header"]["Modality"] for c in cases} <= {"CR", "DX"}
    assert all(c["header"]["BodyPartExamined"] == "HAND" for c in cases)


def test_synth_is_deterministic_for_a_seed(tmp_path):
    from radtriage.synth import synthesize

    a = synthesize("xr-hand", 1, 11, tmp_path / "a")[0]
    b = synthesize("xr-hand", 1, 11, tmp_path / "b")[0]
    fa, fb = sorted(a.rglob("*.dcm")), sorted(b.rglob("*.dcm"))
    assert [f.name for f in fa] == [f.name for f in fb]
    for x, y in zip(fa, fb):
        dx, dy = pydicom.dcmread(x), pydicom.dcmread(y)
        assert dx.SOPInstanceUID == dy.SOPInstanceUID and dx.PixelData == dy.PixelData
    assert (a / "truth.json").read_text() == (b / "truth.json").read_text()


def test_synth_options_reach_the_generator(tmp_path):
    out = tmp_path / "o"
    r = subprocess.run(
        [sys.executable, "-m", "radtriage.cli", "synth", "ct-head", "--n", "1", "--seed", "3", "--out", str(out),
         "--opt", "matrix=64", "--opt", "positive=true", "--opt", "subtypes=[subdural]"],
        capture_output=True, text=True, timeout=300,
    )
    assert r.returncode == 0, r.stderr[-2000:]
    (folder,) = [p for p in out.iterdir() if p.is_dir()]
    truth = json.loads((folder / "truth.json").read_text())
    assert truth["options"] == {"matrix": 64, "positive": True, "subtypes": ["subdural"]}
    assert [h["subtype"] for h in truth["haemorrhages"]] == ["subdural"]
    main = [f for f in folder.rglob("*.dcm") if pydicom.dcmread(f, stop_before_pixels=True).SeriesNumber == truth["main_series_number"]]
    assert main and pydicom.dcmread(main[0], stop_before_pixels=True).Rows == 64
    bad = subprocess.run(
        [sys.executable, "-m", "radtriage.cli", "synth", "xr-hand", "--out", str(tmp_path / "x"), "--opt", "nonsense=1"],
        capture_output=True, text=True, timeout=120,
    )
    assert bad.returncode == 2 and "nonsense" in bad.stderr
