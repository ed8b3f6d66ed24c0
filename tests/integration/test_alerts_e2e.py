"""End to end: a synthetic CT head C-STOREd by dcmtk to the listener pages the stroke team.

The listener and assembly run as `radtriage serve` runs them; the dispatcher
runs the real pipelines in-process (no Ray) with the alert service as its
``on_result`` hook. An ICH-positive study gives one signed webhook call and
one e-mail with the key image; a negative one pages nobody; a positive
result recorded just before a crash (no hook ran) is found and paged by the
recovery sweep, once.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import pydicom
import pytest

from radtriage.alerts import AlertService
from radtriage.db import ledger
from radtriage.synth import synthesize
from tests.helpers import storescu, wait_jobs_final
from tests.integration.test_alerts import ENV, LINK_KEY, hook, make_config, smtp  # noqa: F401 - fixtures

REPO = Path(__file__).resolve().parents[2]
pytestmark = [pytest.mark.slow, pytest.mark.dcmtk]


@pytest.fixture(scope="module")
def studies(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("studies")
    return {"positive": synthesize("ct-head", 1, 21, root / "pos", {"positive": True, "subtypes": ["intraparenchymal"]})[0],
            "negative": synthesize("ct-head", 1, 22, root / "neg", {"positive": False})[0]}


@pytest.fixture
def stack(make_settings, hook, smtp) -> Iterator[dict]:  # noqa: F811 - fixtures
    """Listener + assembly + an in-process dispatcher; ``hooked`` says whether results reach the alert service."""
    from radtriage.pipelines import load_pipelines
    from radtriage.service import Runtime, build_services
    from radtriage.serving.dispatcher import Dispatcher
    from radtriage.serving.runners import InProcessRunner
    from radtriage.triage import result_priority

    services = build_services(make_settings())
    runtime = Runtime(services)  # inference off in these settings: no dispatcher of its own
    inference = make_settings(inference={"enabled": True, "use_ray": False, "pipelines_dir": str(REPO / "pipelines"),
                                         "models_dir": str(REPO / "models"), "in_flight": 1, "poll_s": 0.05,
                                         "default": {"threads": 2}})
    specs = [s for s in load_pipelines(REPO / "pipelines") if s.id == "stroke_ich"]
    alerts = AlertService(services.db, make_config(hook, smtp), LINK_KEY, environ=ENV)
    hook_fn = alerts.for_pipelines(specs)
    state = {"hooked": True}
    runner = InProcessRunner(specs, inference)
    dispatcher = Dispatcher(inference, services.db, specs, runner, result_priority,
                            on_result=lambda *a: hook_fn(*a) if state["hooked"] else None)
    runtime.start()
    dispatcher.start()
    alerts.start()
    try:
        yield {"services": services, "runtime": runtime, "alerts": alerts, "state": state}
    finally:
        alerts.stop()
        dispatcher.stop()
        runtime.stop()
        runner.close()
        services.close()


def send(stack: dict, folder: Path) -> str:
    r = storescu(stack["runtime"].scp.port, sorted(folder.glob("*.dcm")), "CT_ED_1", "RADTRIAGE", timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    return str(pydicom.dcmread(next(folder.glob("*.dcm")), stop_before_pixels=True).StudyInstanceUID)


def series_count(*folders: Path) -> int:
    return sum(len(json.loads((f / "truth.json").read_text())["series"]) for f in folders)


def test_an_ich_positive_study_pages_once_by_webhook_and_email(stack, studies, hook, smtp):  # noqa: F811
    study = send(stack, studies["positive"])
    [msg] = hook.wait_for(1, 240, event="alert.page")
    [mail] = smtp.wait_for(1, 30)
    assert msg.payload["finding"]["code"] == "ich" and msg.payload["where"]["calling_ae"] == "CT_ED_1"
    assert msg.payload["study_url"].endswith(study) and not hook.refused
    pngs = [p for p in mail.iter_attachments() if p.get_content_type() == "image/png"]
    assert len(pngs) == 1 and pngs[0].get_content()[:8] == b"\x89PNG\r\n\x1a\n"

    negative = send(stack, studies["negative"])
    wait_jobs_final(stack["services"].db, series_count(*studies.values()), timeout=240)
    time.sleep(1.0)
    assert len(hook.taken) == 1 and len(smtp.messages) == 1 and hook.posts == 1
    assert stack["alerts"].for_study(negative) == []
    assert [r["positive"] for r in ledger.result_rows(stack["services"].db, study_uid=negative)] == [False]


def test_a_result_recorded_just_before_a_crash_is_paged_by_recovery(stack, studies, hook, smtp):  # noqa: F811
    stack["state"]["hooked"] = False  # the process "dies" between recording the result and deciding the alert
    study = send(stack, studies["positive"])
    wait_jobs_final(stack["services"].db, series_count(studies["positive"]), timeout=240)
    time.sleep(0.5)
    assert hook.posts == 0 and stack["alerts"].for_study(study) == []

    alerts = stack["alerts"]
    assert alerts.recover_missed() == 0  # still within the dispatcher's grace period
    assert alerts.recover_missed(grace_s=0) == 1
    assert alerts.recover_missed(grace_s=0) == 0  # already decided: no second alert
    [msg] = hook.wait_for(1, 30, event="alert.page")
    [view] = alerts.for_study(study)
    assert msg.payload["alert_id"] == view.id and len(smtp.wait_for(1)) == 1
