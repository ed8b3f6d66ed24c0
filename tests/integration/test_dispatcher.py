"""The dispatcher in-process: bad series and failing models end with a reason; other jobs go on;
a pipeline runs on the best series of a study.

Series arrive by C-STORE; the pipelines run in this process (the same
`TaskRunner` the Ray deployments wrap) with the committed ICH model.
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import numpy as np
import pydicom
import pytest

from radtriage.db import ledger
from radtriage.triage.priority import latest_per_pipeline
from radtriage.synth import synthesize
from tests.helpers import storescu, wait_jobs_final

REPO = Path(__file__).resolve().parents[2]

pytestmark = [pytest.mark.slow, pytest.mark.dcmtk]


def _main_series(folder: Path) -> list[Path]:
    return sorted(p for p in folder.glob("002_*.dcm"))  # series 2: the soft-tissue main series


def _fail_model_on(monkeypatch, series_uid: str) -> None:
    """The model call raises for one series (as a broken model would); other series are untouched."""
    from radtriage.inference.ops import OpChain

    real_infer = OpChain.infer

    def infer(model, ctx):
        if ctx.volume.meta.get("SeriesInstanceUID") == series_uid:
            raise RuntimeError("simulated model failure")
        real_infer(model, ctx)

    monkeypatch.setattr(OpChain, "infer", staticmethod(infer))


def _settings(make_settings, tmp_path: Path, **inference):
    pipelines = tmp_path / "pipelines"
    pipelines.mkdir()
    shutil.copy(REPO / "pipelines" / "stroke_ich.yaml", pipelines)
    return make_settings(inference={
        "enabled": True, "use_ray": False, "pipelines_dir": str(pipelines), "models_dir": str(REPO / "models"),
        "in_flight": 1, "poll_s": 0.05, "max_attempts": 2, "retry_backoff_s": 0.1, **inference})


def test_corrupt_series_missing_slice_and_failing_model(make_settings, tmp_path, monkeypatch):
    from radtriage.service import Runtime, build_services

    heads = [synthesize("ct-head", 1, 40 + i, tmp_path / f"in{i}", {"matrix": 128})[0] for i in range(4)]
    good, gap, corrupt, raising = (_main_series(h) for h in heads)
    del gap[len(gap) // 2]  # a slice lost in the middle
    for p in corrupt[3:6]:  # pixel data cut short: the header parses, the pixels do not
        ds = pydicom.dcmread(p)
        ds.PixelData = ds.PixelData[: len(ds.PixelData) // 3]
        ds.save_as(p)
    # this study's model call raises (as a broken model would); the others are untouched
    _fail_model_on(monkeypatch, _uid(raising))
    settings = _settings(make_settings, tmp_path)
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


def _head_study(root: Path, seed: int, thicknesses: dict[int, float]) -> dict[int, list[Path]]:
    """One synthetic non-contrast CT head study with a soft-tissue series per slice thickness (number: mm)."""
    from radtriage.synth import ct_head
    from radtriage.synth.dicom import CtSeries, make_study, write_ct_series

    rng = np.random.default_rng(seed)
    study = make_study(rng, seed, "CT HEAD WO CONTRAST")
    out = {}
    for number, mm in thicknesses.items():
        head = ct_head.sample(np.random.default_rng([seed, number]), positive=False, matrix=128, slice_thickness=mm,
                              max_slices=40)
        series = CtSeries(number, f"Head {mm} H31s", "HEAD", "HEAD", "H31s")
        out[number] = write_ct_series(root / f"s{number}", rng, study, series, head.hu, head.spacing, head.origin)
    return out


def _uid(files: list[Path]) -> str:
    return str(pydicom.dcmread(files[0], stop_before_pixels=True).SeriesInstanceUID)


def test_a_pipeline_runs_on_the_best_series_of_a_study(make_settings, tmp_path):
    """Thin (2.5 mm) and thick (5 mm) soft-tissue series of one head CT both match stroke_ich; thin is preferred.

    Together: the thick series is skipped with a note, the thin one gets the result. The thick one first
    (already processed when the thin one comes): both keep their results; the study's result is the thin one's.
    """
    from radtriage.service import Runtime, build_services

    together = _head_study(tmp_path / "a", 71, {2: 5.0, 3: 2.5})
    in_turn = _head_study(tmp_path / "b", 72, {2: 5.0, 3: 2.5})
    settings = _settings(make_settings, tmp_path)
    services = build_services(settings)
    runtime = Runtime(services)
    runtime.start()
    try:
        assert storescu(runtime.scp.port, together[2] + together[3], "SCANNER", settings.ae_title).returncode == 0
        wait_jobs_final(services.db, 2)
        assert storescu(runtime.scp.port, in_turn[2], "SCANNER", settings.ae_title).returncode == 0
        wait_jobs_final(services.db, 3)
        assert storescu(runtime.scp.port, in_turn[3], "SCANNER", settings.ae_title).returncode == 0
        jobs = {j["case"]["series_uid"]: j for j in wait_jobs_final(services.db, 4)}
    finally:
        runtime.stop()

    thick, thin = jobs[_uid(together[2])], jobs[_uid(together[3])]
    assert thick["state"] == "done" and ledger.result_rows(services.db, job_id=thick["id"]) == []
    assert thick["last_error"] == f"stroke_ich: skipped, series {_uid(together[3])} of this study is preferred"
    assert thin["state"] == "done" and thin["last_error"] is None
    (row,) = ledger.result_rows(services.db, job_id=thin["id"])
    study = thin["case"]["study_uid"]
    assert _counted(services.db, study)["stroke_ich"]["id"] == row["id"]

    first, later = jobs[_uid(in_turn[2])], jobs[_uid(in_turn[3])]
    assert first["state"] == later["state"] == "done" and first["last_error"] is None
    (first_row,) = ledger.result_rows(services.db, job_id=first["id"])
    (later_row,) = ledger.result_rows(services.db, job_id=later["id"])
    assert first_row["series_uid"] == _uid(in_turn[2]) and later_row["series_uid"] == _uid(in_turn[3])
    assert _counted(services.db, first["case"]["study_uid"])["stroke_ich"]["id"] == later_row["id"]


def test_when_the_preferred_series_fails_for_good_the_next_best_runs(make_settings, tmp_path, monkeypatch):
    """The thin series is preferred, but its model call fails on every attempt: the thick series, skipped
    for it, runs again and the study has its stroke_ich result."""
    from radtriage.service import Runtime, build_services

    study = _head_study(tmp_path / "a", 73, {2: 5.0, 3: 2.5})
    thin_uid, thick_uid = _uid(study[3]), _uid(study[2])
    _fail_model_on(monkeypatch, thin_uid)
    settings = _settings(make_settings, tmp_path)
    services = build_services(settings)
    runtime = Runtime(services)
    runtime.start()
    try:
        assert storescu(runtime.scp.port, study[2] + study[3], "SCANNER", settings.ae_title).returncode == 0
        end = time.monotonic() + 120
        while time.monotonic() < end and not ledger.result_rows(services.db, study_uid=_study_uid(study[2])):
            time.sleep(0.2)
        jobs = {j["case"]["series_uid"]: j for j in wait_jobs_final(services.db, 2)}
    finally:
        runtime.stop()

    thin, thick = jobs[thin_uid], jobs[thick_uid]
    assert thin["state"] == "failed" and "simulated model failure" in thin["last_error"]
    assert thick["state"] == "done"
    (row,) = ledger.result_rows(services.db, job_id=thick["id"])
    assert row["series_uid"] == thick_uid
    assert _counted(services.db, _study_uid(study[2]))["stroke_ich"]["id"] == row["id"]


def _counted(db, study_uid: str) -> dict[str, dict]:
    """The result of each pipeline that counts for the study, by triage's rule (what the worklist shows)."""
    return {r["pipeline_id"]: r for r in latest_per_pipeline(ledger.result_rows(db, study_uid=study_uid))}


def _study_uid(files: list[Path]) -> str:
    return str(pydicom.dcmread(files[0], stop_before_pixels=True).StudyInstanceUID)
