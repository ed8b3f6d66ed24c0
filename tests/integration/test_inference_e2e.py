"""End to end on a real local Ray: studies C-STOREd by dcmtk get the right pipelines and results.

Synthetic studies (every series a scanner would send: localizers, twins, MIPs)
and a real CR chest radiograph from pydicom-data go in through the listener;
assembly makes jobs; the dispatcher routes each series and runs the matched
pipelines on Ray Serve with the reference models in models/. Each main series
gets its pipeline's result (positive where the truth is), every other series
is "no AI applicable", and each (job, pipeline) has exactly one result.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path

import pytest
from pydicom.data import get_testdata_file

from radtriage.db import ledger
from radtriage.synth import synthesize
from tests.helpers import storescu, wait_jobs_final

REPO = Path(__file__).resolve().parents[2]

pytestmark = [pytest.mark.ray, pytest.mark.slow, pytest.mark.dcmtk]

# kind, seed, generator options, the pipeline its main series goes to, whether that result is positive
STUDIES = [
    ("ct-head", 21, {"positive": True, "subtypes": ["intraparenchymal"]}, "stroke_ich", True),
    ("ct-head", 22, {"positive": False}, "stroke_ich", False),
    ("cta-head", 23, {"lvo": True, "segment": "m1"}, "stroke_lvo", True),
    ("ct-chest", 24, {"positive": True, "n_nodules": 2, "diameter_mm": [12.0, 20.0], "nodule_types": ["solid"]},
     "lung_nodule", True),
    ("xr-hand", 25, {}, "bone_age", None),
]


@pytest.fixture(scope="module")
def studies(tmp_path_factory) -> list[tuple[Path, dict, str, bool | None]]:
    root = tmp_path_factory.mktemp("studies")
    out = []
    for kind, seed, options, pipeline, positive in STUDIES:
        folder = synthesize(kind, 1, seed, root / f"{kind}-{seed}", options)[0]
        out.append((folder, json.loads((folder / "truth.json").read_text()), pipeline, positive))
    return out


@pytest.fixture
def short_data_dir():
    """A data directory with a short path: Ray's Unix sockets live under it (107-byte limit)."""
    path = Path(tempfile.mkdtemp(prefix="rt-", dir="/tmp"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


def test_studies_through_ray_get_the_right_pipelines_and_results(make_settings, studies, tmp_path, short_data_dir):
    from radtriage.service import Runtime, build_services

    data = short_data_dir
    settings = make_settings(
        data_dir=data,
        inference={"enabled": True, "use_ray": True, "pipelines_dir": str(REPO / "pipelines"),
                   "models_dir": str(REPO / "models"), "in_flight": 2, "poll_s": 0.1,
                   "default": {"num_cpus": 0.25, "threads": 1}},
    )
    services = build_services(settings)
    home_ray = Path.home() / ".ray"
    home_ray_before = home_ray.exists()
    runtime = Runtime(services)
    runtime.start()
    try:
        token = data / "ray" / "auth_token"  # Ray's control-plane token: in the data directory, private
        assert token.exists() and token.stat().st_mode & 0o777 == 0o600
        assert home_ray.exists() == home_ray_before  # nothing written outside the data directory
        cxr = tmp_path / "cxr"
        cxr.mkdir()
        shutil.copy(get_testdata_file("RG1_UNCR.dcm"), cxr / "cr-chest.dcm")  # a real CR chest: no AI applicable
        expected_series = 0
        for folder, truth, _, _ in studies:
            r = storescu(runtime.scp.port, sorted(folder.glob("*.dcm")), "SCANNER", settings.ae_title, timeout=300)
            assert r.returncode == 0, r.stderr[-2000:]
            expected_series += len(truth["series"])
        assert storescu(runtime.scp.port, cxr, "CR_ROOM", settings.ae_title).returncode == 0
        jobs = wait_jobs_final(services.db, expected_series + 1, timeout=900)
    finally:
        runtime.stop()

    by_series = {j["case"]["series_uid"]: j for j in jobs}
    assert not [j for j in jobs if j["state"] == "failed"], [j["last_error"] for j in jobs if j["state"] == "failed"]
    for folder, truth, pipeline, positive in studies:
        main = [j for j in jobs if j["case"]["study_uid"] == _study_uid(folder)
                and int(j["case"]["header"].get("SeriesNumber", -1)) == truth["main_series_number"]]
        assert len(main) == 1, folder.name
        rows = ledger.result_rows(services.db, job_id=main[0]["id"])
        assert [r["pipeline_id"] for r in rows] == [pipeline], folder.name
        result = rows[0]["result"]
        if positive is not None:
            assert result["positive"] is positive, (folder.name, result["scores"])
        if pipeline in ("stroke_ich", "stroke_lvo") and positive:
            assert rows[0]["priority"] == "STAT"
        if pipeline == "bone_age":
            assert result["scores"]["chronological_age_months"] == pytest.approx(truth["chronological_age_months"], abs=1.5)
        others = [j for j in jobs if j["case"]["study_uid"] == _study_uid(folder) and j["id"] != main[0]["id"]]
        assert all(j["state"] == "no_ai" for j in others), folder.name  # localizers, twins, MIPs, oblique views
    cr = [j for j in by_series.values() if j["case"]["calling_ae"] == "CR_ROOM"]
    assert len(cr) == 1 and cr[0]["state"] == "no_ai" and cr[0]["last_error"] == "no AI applicable"
    all_rows = ledger.result_rows(services.db)
    assert len({(r["job_id"], r["pipeline_id"]) for r in all_rows}) == len(all_rows) == len(studies)


def _study_uid(folder: Path) -> str:
    import pydicom

    first = next(folder.glob("*.dcm"))
    return str(pydicom.dcmread(first, stop_before_pixels=True).StudyInstanceUID)
