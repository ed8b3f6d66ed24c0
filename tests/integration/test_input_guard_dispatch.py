"""The dispatcher and the input guard: a head CT outside the ICH model's validated range arrives by C-STORE and
its job ends ``no_ai`` with "AI not applicable: outside the model's validated range (...)" as its note, on the
first attempt and with no result; a normal head of the same kind gets its result.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pydicom
import pytest

from radtriage.db import ledger
from radtriage.synth import synthesize
from tests.helpers import storescu, wait_jobs_final

REPO = Path(__file__).resolve().parents[2]

pytestmark = [pytest.mark.slow, pytest.mark.dcmtk]


def _main_series(folder: Path) -> list[Path]:
    return sorted(folder.glob("002_*.dcm"))  # series 2: the soft-tissue main series


def _uid(files: list[Path]) -> str:
    return str(pydicom.dcmread(files[0], stop_before_pixels=True).SeriesInstanceUID)


def test_a_series_outside_the_validated_range_ends_no_ai_with_the_reason_and_is_not_retried(make_settings, tmp_path):
    from radtriage.service import Runtime, build_services

    normal, shifted = (_main_series(synthesize("ct-head", 1, 80 + i, tmp_path / f"in{i}", {"matrix": 128})[0])
                       for i in range(2))
    for p in shifted:  # a miscalibrated scanner: +200 HU
        ds = pydicom.dcmread(p)
        ds.RescaleIntercept = float(ds.RescaleIntercept) + 200
        ds.save_as(p)
    pipelines = tmp_path / "pipelines"
    pipelines.mkdir()
    shutil.copy(REPO / "pipelines" / "stroke_ich.yaml", pipelines)
    settings = make_settings(inference={
        "enabled": True, "use_ray": False, "pipelines_dir": str(pipelines), "models_dir": str(REPO / "models"),
        "in_flight": 1, "poll_s": 0.05, "max_attempts": 3, "retry_backoff_s": 0.1})
    services = build_services(settings)
    runtime = Runtime(services)
    runtime.start()
    try:
        for files in (shifted, normal):
            assert storescu(runtime.scp.port, files, "SCANNER", settings.ae_title).returncode == 0
        jobs = {j["case"]["series_uid"]: j for j in wait_jobs_final(services.db, 2)}
    finally:
        runtime.stop()

    refused = jobs[_uid(shifted)]
    assert refused["state"] == "no_ai" and refused["attempts"] == 1
    note = refused["last_error"]
    assert note.startswith("stroke_ich: AI not applicable: outside the model's validated range (air_hu -8"), note
    assert "validated [-1100, -900]" in note and "brain_hu" in note
    assert ledger.result_rows(services.db, job_id=refused["id"]) == []
    ok = jobs[_uid(normal)]
    assert ok["state"] == "done" and ok["last_error"] is None
    assert len(ledger.result_rows(services.db, job_id=ok["id"])) == 1
