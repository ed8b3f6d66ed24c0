"""The dispatcher in-process: bad series and failing models end with a reason; other jobs go on.

Series arrive by C-STORE; the pipelines run in this process (the same
`TaskRunner` the Ray deployments wrap) with the committed ICH model.
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
    return sorted(p for p in folder.glob("002_*.dcm"))  # series 2: the soft-tissue main series


def test_corrupt_series_missing_slice_and_failing_model(make_settings, tmp_path, monkeypatch):
    from radtriage.inference import ich
    from radtriage.service import Runtime, build_services

    heads = [synthesize("ct-head", 1, 40 + i, tmp_path / f"in{i}", {"matrix": 128})[0] for i in range(4)]
    good, gap, corrupt, raising = (_main_series(h) for h in heads)
    del gap[len(gap) // 2]  # a slice lost in the middle
    for p in corrupt[3:6]:  # pixel data cut short: the header parses, the pixels do not
        ds = pydicom.dcmread(p)
        ds.PixelData = ds.PixelData[: len(ds.PixelData) // 3]
        ds.save_as(p)
    # this study's model call raises (as a broken model would); the others are untouched
    raising_uid = str(pydicom.dcmread(raising[0], stop_before_pixels=True).SeriesInstanceUID)
    real_predict = ich.predict

    def predict(model, volume, batch=16):
        if volume.meta.get("SeriesInstanceUID") == raising_uid:
            raise RuntimeError("simulated model failure")
        return real_predict(model, volume, batch)

    monkeypatch.setattr(ich, "predict", predict)
    pipelines = tmp_path / "pipelines"
    pipelines.mkdir()
    shutil.copy(REPO / "pipelines" / "stroke_ich.yaml", pipelines)
    settings = make_settings(inference={
        "enabled": True, "use_ray": False, "pipelines_dir": str(pipelines), "models_dir": str(REPO / "models"),
        "in_flight": 1, "poll_s": 0.05, "max_attempts": 2, "retry_backoff_s": 0.1})
    services = build_services(settings)
    runtime = Runtime(services)
    runtime.start()
    try:
        for files in (corrupt, raising, gap, good):
            assert storescu(runtime.scp.port, files, "SCANNER", settings.ae_title).returncode == 0
        jobs = wait_jobs_final(services.db, 4)
    finally:
        runtime.stop()

    state = {j["case"]["series_uid"]: j for j in jobs}

    def job_of(files: list[Path]) -> dict:
        return state[str(pydicom.dcmread(files[0], stop_before_pixels=True).SeriesInstanceUID)]

    bad = job_of(corrupt)
    assert bad["state"] == "failed" and bad["attempts"] == 2 and "series could not be read" in bad["last_error"]
    broken = job_of(raising)
    assert broken["state"] == "failed" and "simulated model failure" in broken["last_error"]
    flagged = job_of(gap)
    assert flagged["state"] == "done"
    (row,) = ledger.result_rows(services.db, job_id=flagged["id"])
    assert "series:missing-slices" in [f["code"] for f in row["result"]["findings"]]
    ok = job_of(good)
    assert ok["state"] == "done" and len(ledger.result_rows(services.db, job_id=ok["id"])) == 1
