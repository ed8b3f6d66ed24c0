"""Demoting or suspending a pipeline withdraws its alerts (issue 14, "States of a pipeline at a site").

A live ICH alert is paged to level 1 through a real webhook receiver; an admin demotes the pipeline
through the API: the alert escalates no more after its deadline, the member already paged gets one
"withdrawn" message (accession masked), and the withdrawal is in the audit trail. A suspension
before anything was sent cancels the pages and tells nobody.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from radtriage.alerts import AlertService
from radtriage.db import accounts, audit
from radtriage.db import alerts as store
from tests.integration.test_alerts import (ENV, LINK_KEY, actions, add_study, case_for, hook, ich,  # noqa: F401
                                           level, make_config, pages, smtp, wait_until)

PASSWORD = "correct horse battery"
REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def api(make_settings):
    from radtriage.api import create_app
    from radtriage.service import build_services

    services = build_services(make_settings(inference={"enabled": True, "use_ray": False,
                                                       "pipelines_dir": str(REPO / "pipelines"),
                                                       "models_dir": str(REPO / "models")}))
    accounts.add_user(services.db, "admin1", "admin", PASSWORD)
    with TestClient(create_app(services)) as client:
        client.services = services
        client.headers_admin = {"Authorization": f"Bearer {accounts.issue_token(services.db, 'admin1')}"}
        yield client
    services.close()


@pytest.fixture
def alerting(api, hook, smtp):
    made = []

    def _make() -> AlertService:
        levels = [level([{"oncall": "primary"}], ["webhook", "email"], timeout=1.0),
                  level([{"member": "wong"}], ["webhook"])]
        made.append(AlertService(api.services.db, make_config(hook, smtp, levels), LINK_KEY, environ=ENV))
        return made[-1]

    yield _make
    for svc in made:
        svc.stop()


def test_demoting_the_pipeline_stops_escalation_and_tells_the_member_already_paged(api, alerting, hook, smtp):
    db = api.services.db
    add_study(db, "1.2.840.91")
    svc = alerting()
    [made] = svc.on_result(case_for("1.2.840.91"), "stroke_ich", ich(), "STAT", "stroke")
    svc.start()
    [page] = hook.wait_for(1, 20, event="alert.page")
    assert page.payload["recipient"] == "Dr Chan"
    assert wait_until(lambda: actions(db, "1.2.840.91").count("alert_delivered") == 2, 10)  # webhook and e-mail

    r = api.post("/api/v1/models/stroke_ich/demote", headers=api.headers_admin, json={"reason": "false pages"})
    assert r.status_code == 200, r.text

    [told] = hook.wait_for(1, 20, event="alert.withdrawn")
    time.sleep(1.5)  # past level 1's deadline: Dr Wong would be paged now
    assert told.payload["recipient"] == "Dr Chan" and told.payload["accession"] == "********234"
    said = "withdrawn: the AI finding for study ********234 is under review; read the study as usual."
    assert told.payload["message"] == said
    mail = smtp.wait_for(2)[1]
    body = mail.get_body(("plain",)).get_content()
    assert mail["To"] == "chan@example.org" and body.startswith(said)
    assert "ACC20261234" not in str(told.payload) + body and "A1234567" not in body
    assert [p.payload["recipient"] for p in pages(hook)] == ["Dr Chan"]  # nobody else paged
    assert len([r for r in hook.taken.values() if r.event == "alert.withdrawn"]) == 1
    assert "alert_escalated" not in actions(db, "1.2.840.91")
    row = store.alert_row(db, made.alert_id)
    assert (row["state"], row["resolved_reason"], row["next_escalation_at"]) == (
        "resolved", "AI under review: stroke_ich demoted", None)
    [entry] = audit.entries(db, study_uid="1.2.840.91", action="alert_withdrawn")[1]
    assert entry["actor"] == "admin1" and entry["detail"]["told"] == ["chan"]
    assert entry["detail"]["reason"] == "AI under review: stroke_ich demoted"


def test_suspending_before_anything_was_sent_cancels_the_pages_and_tells_nobody(api, alerting, hook):
    db = api.services.db
    add_study(db, "1.2.840.92")
    svc = alerting()
    [made] = svc.on_result(case_for("1.2.840.92"), "stroke_ich", ich(), "STAT", "stroke")
    r = api.post("/api/v1/models/stroke_ich/suspend", headers=api.headers_admin, json={"reason": "scanner upgrade"})
    assert r.status_code == 200, r.text
    svc.start()
    time.sleep(1.5)  # the worker runs past level 1's deadline
    assert hook.posts == 0
    assert {d["state"] for d in store.deliveries_for(db, [made.alert_id])} == {"cancelled"}
    [entry] = audit.entries(db, study_uid="1.2.840.92", action="alert_withdrawn")[1]
    assert entry["detail"]["told"] == [] and entry["detail"]["reason"] == "AI under review: stroke_ich suspended"
