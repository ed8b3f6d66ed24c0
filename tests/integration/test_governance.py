"""Pipeline states at a site (issue 14): only a live pipeline's results count.

A synthetic ICH-positive CT head is C-STOREd by dcmtk to the listener; the
dispatcher runs the real ICH pipeline in-process with the alert service as
its hook and the pipelines' states from `radtriage.governance.StateBook`
(production rules: no commissioning decision, so shadow). The result is
recorded, changes no priority, pages nobody (not even the recovery sweep),
is left out of the study's results and is listed only at GET /api/v1/shadow
for admins and commissioning readers.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import pydicom
import pytest
from fastapi.testclient import TestClient

from radtriage.alerts import AlertService
from radtriage.db import accounts, ledger, worklist
from radtriage.synth import synthesize
from tests.helpers import storescu, wait_jobs_final
from tests.integration.test_alerts import ENV, LINK_KEY, hook, make_config, smtp  # noqa: F401 - fixtures

REPO = Path(__file__).resolve().parents[2]
PASSWORD = "correct horse battery"
pytestmark = [pytest.mark.slow, pytest.mark.dcmtk]


@pytest.fixture(scope="module")
def positive(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("studies")
    return synthesize("ct-head", 1, 21, root / "pos", {"positive": True, "subtypes": ["intraparenchymal"]})[0]


def _start(make_settings, hook, smtp, environment: str) -> dict:  # noqa: F811 - fixtures
    """Listener + assembly + triage, an in-process dispatcher with states and alerts, and the API."""
    from radtriage.api import create_app
    from radtriage.governance import StateBook
    from radtriage.pipelines import load_pipelines
    from radtriage.service import Runtime, build_services
    from radtriage.serving.dispatcher import Dispatcher
    from radtriage.serving.runners import InProcessRunner
    from radtriage.triage import result_priority
    from radtriage.triage.live import Triage

    services = build_services(make_settings())
    runtime = Runtime(services)  # inference off in these settings: no dispatcher of its own ...
    runtime.triage = Triage(services.db, True, 0.05)  # ... but triage as with inference on
    inference = make_settings(inference={"enabled": True, "use_ray": False, "pipelines_dir": str(REPO / "pipelines"),
                                         "models_dir": str(REPO / "models"), "in_flight": 1, "poll_s": 0.05,
                                         "default": {"threads": 2}})
    specs = [s for s in load_pipelines(REPO / "pipelines") if s.id == "stroke_ich"]
    alerts = AlertService(services.db, make_config(hook, smtp), LINK_KEY, environ=ENV)
    states = StateBook(services.db, specs, REPO / "models", environment)
    runner = InProcessRunner(specs, inference)
    dispatcher = Dispatcher(inference, services.db, specs, runner, result_priority,
                            on_result=alerts.for_pipelines(specs), states=states.state)
    tokens = {}
    for role in ("radiologist", "admin", "commissioning", "stroke"):
        accounts.add_user(services.db, f"{role}1", role, PASSWORD)
        tokens[role] = {"Authorization": f"Bearer {accounts.issue_token(services.db, f'{role}1')}"}
    runtime.start()
    dispatcher.start()
    alerts.start()
    client = TestClient(create_app(services, runtime))
    client.__enter__()

    def stop() -> None:
        client.__exit__(None, None, None)
        alerts.stop()
        dispatcher.stop()
        runtime.stop()
        runner.close()
        services.close()

    return {"services": services, "runtime": runtime, "alerts": alerts, "states": states, "api": client,
            "as": tokens, "stop": stop}


@pytest.fixture
def production_rules(make_settings, hook, smtp) -> Iterator[dict]:  # noqa: F811 - fixtures
    stack = _start(make_settings, hook, smtp, "production")
    try:
        yield stack
    finally:
        stack["stop"]()


def send(stack: dict, folder: Path) -> str:
    r = storescu(stack["runtime"].scp.port, sorted(folder.glob("*.dcm")), "CT_ED_1", "RADTRIAGE", timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    return str(pydicom.dcmread(next(folder.glob("*.dcm")), stop_before_pixels=True).StudyInstanceUID)


def wait_entry(db, study_uid: str, ai_state: str = "none", timeout: float = 60) -> dict:
    end = time.monotonic() + timeout
    row = None
    while time.monotonic() < end:
        row = worklist.entry(db, study_uid)
        if row is not None and row["ai_state"] == ai_state:
            return row
        time.sleep(0.1)
    raise AssertionError(f"worklist entry of {study_uid} not {ai_state}: {row}")


def test_a_shadow_pipelines_positive_result_changes_no_priority_pages_nobody_and_shows_only_on_the_shadow_view(
        production_rules, positive, hook, smtp):  # noqa: F811 - fixtures
    stack = production_rules
    db, api, as_ = stack["services"].db, stack["api"], stack["as"]
    assert stack["states"].state("stroke_ich").state == "shadow"  # production, no commissioning decision
    study = send(stack, positive)
    wait_jobs_final(db, len(json.loads((positive / "truth.json").read_text())["series"]), timeout=240)
    [row] = [r for r in ledger.result_rows(db, study_uid=study) if r["pipeline_id"] == "stroke_ich"]
    assert row["positive"] is True and row["priority"] == "STAT" and row["state"] == "shadow"

    entry = wait_entry(db, study)
    assert entry["priority"] == "ROUTINE" and entry["flags"] == [] and entry["priority_reason"] == "AI in silent trial"
    assert [h["new_priority"] for h in worklist.priority_history(db, study)] == ["PENDING_AI", "ROUTINE"]

    time.sleep(1.0)  # the alert worker polls; nothing may come
    assert hook.posts == 0 and smtp.messages == [] and stack["alerts"].for_study(study) == []
    assert stack["alerts"].recover_missed(grace_s=0) == 0  # the recovery sweep does not page it either

    detail = api.get(f"/api/v1/studies/{study}", headers=as_["radiologist"])
    assert detail.status_code == 200 and detail.json()["results"] == []
    assert api.get("/api/v1/shadow", headers=as_["radiologist"]).status_code == 403
    assert api.get("/api/v1/shadow", headers=as_["stroke"]).status_code == 403
    assert api.get("/api/v1/shadow").status_code == 401
    for role in ("commissioning", "admin"):
        shown = api.get("/api/v1/shadow", headers=as_[role])
        assert shown.status_code == 200, shown.text
        [item] = shown.json()["items"]
        assert item["study_uid"] == study and item["positive"] is True and item["pipeline_id"] == "stroke_ich"
        assert item["findings"][0]["code"] == "ich"


def test_a_suspended_pipeline_is_not_run_and_its_study_says_why(make_settings, tmp_path):
    """`radtriage serve`'s own runtime (development): an admin suspends stroke_ich; a head CT then gets no ICH
    result, its job's note and its worklist entry say "AI suspended: <reason>"."""
    from radtriage.governance.decide import decide
    from radtriage.service import Runtime, build_services
    from tests.integration.test_dispatcher import _settings as ich_only  # stroke_ich alone, in-process

    settings = ich_only(make_settings, tmp_path)
    services = build_services(settings)
    accounts.add_user(services.db, "chief", "admin", PASSWORD)
    decide(services.db, settings, "stroke_ich", "suspend", "scanner upgrade", "chief")
    head = synthesize("ct-head", 1, 23, tmp_path / "neg", {"positive": False, "matrix": 128})[0]
    runtime = Runtime(services)
    runtime.start()
    try:
        assert runtime.states.state("stroke_ich").state == "suspended"
        study = send({"runtime": runtime}, head)
        jobs = wait_jobs_final(services.db, len(json.loads((head / "truth.json").read_text())["series"]), timeout=120)
        entry = wait_entry(services.db, study)
    finally:
        runtime.stop()
        services.close()
    assert ledger.result_rows(services.db, study_uid=study) == []
    assert any((j["last_error"] or "").startswith("stroke_ich: AI suspended: scanner upgrade") for j in jobs)
    assert entry["priority"] == "ROUTINE" and entry["priority_reason"] == "AI suspended: scanner upgrade"
