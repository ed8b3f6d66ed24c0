"""Hardening of the stroke alerts (issue 12), against real peers on loopback, on SQLite and PostgreSQL.

- item 6: with alerting off, ``/stroke`` (and a one-click link) answers a browser an HTML page that says
  alerting is off on this server and whom to call (``fallback_contact`` in the alerting file);
- item 12: a positive result recorded without its alert decision (a crash between the two) is paged
  however old, by the recovery sweep after a restart; its page says LATE with the study's age, and past
  the policy's ``late.after_s`` it goes to the ``late`` levels (the reading radiologist) instead;
- item 15: the one-click link records the client address and user agent that used it, the alert shows
  it was taken by link, and a link for a level the alert has left (escalated) no longer acknowledges;
- item 17: CR/LF in a DICOM header value (StationName) neither breaks the e-mail subject nor adds lines
  to the message; a key image outside the results folder is neither attached nor served.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import yaml
from fastapi.testclient import TestClient
from sqlalchemy import select

from radtriage.alerts import AlertMetrics, AlertService, parse_alerting
from radtriage.api import create_app
from radtriage.db import accounts, audit, ledger
from radtriage.db.tables import jobs, series, studies
from radtriage.service import build_services
from tests.integration.test_alerts import (  # noqa: F401 - fixtures
    ENV,
    LINK_KEY,
    add_study,
    case_for,
    db,
    hook,
    ich,
    key_image,
    level,
    make_config,
    pages,
    services,
    smtp,
    wait_until,
)
from tests.integration.test_alerts_api import PASSWORD, alert_app

HTML = {"Accept": "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8",
        "User-Agent": "Mozilla/5.0 (iPhone; CPU iPhone OS 18_0 like Mac OS X) Mobile/15E148"}


def config_data(hook, smtp, **kw: Any) -> dict:  # noqa: F811 - fixtures
    """The test alerting configuration as a document, with a radiology team (the reading radiologist)."""
    data = make_config(hook, smtp, **kw).model_dump(by_alias=True, exclude_none=True)
    data["teams"]["radiology"] = {"members": {"ng": {
        "name": "Dr Ng", "username": "ng", "contacts": {"webhook": hook.url, "email": "ng@example.org"}}}}
    return data


# --- item 6: the stroke page with alerting off ------------------------------------------------


def test_the_stroke_page_says_alerting_is_off_and_whom_to_call(make_settings, tmp_path):
    path = tmp_path / "alerting.yaml"
    path.write_text(yaml.safe_dump({"enabled": False,
                                    "fallback_contact": "Neuroradiology on call: ext. 4321 (switchboard 0)"}))
    services_ = build_services(make_settings(alerting_file=path))
    try:
        assert services_.alerts is None
        with TestClient(create_app(services_)) as client:
            r = client.get("/stroke", headers=HTML, follow_redirects=False)
            assert r.headers["content-type"].startswith("text/html"), (r.status_code, r.text[:200])
            assert r.status_code == 503
            assert "Alerting is off on this server" in r.text and "Neuroradiology on call: ext. 4321" in r.text
            assert 'name="viewport"' in r.text and "default-src 'self'" in r.headers["content-security-policy"]
            link = client.get("/alerts/ack/1.chan.0.9999999999." + "0" * 64, headers=HTML)
            assert link.headers["content-type"].startswith("text/html") and "ext. 4321" in link.text
            api = client.get("/api/v1/alerts")  # the API still answers a problem document
            assert api.status_code in (401, 503) and api.headers["content-type"].startswith("application/")
    finally:
        services_.close()

    services_ = build_services(make_settings(alerting_file=tmp_path / "absent.yaml"))  # no file at all
    try:
        with TestClient(create_app(services_)) as client:
            r = client.get("/stroke", headers=HTML)
            assert r.status_code == 503 and r.headers["content-type"].startswith("text/html")
            assert "Alerting is off on this server" in r.text and "call" in r.text
    finally:
        services_.close()


# --- item 12: a result recorded without its alert decision ---------------------------------------


def recorded_without_alert(db, study_uid: str, age: dt.timedelta, key_image: Path | None = None) -> int:  # noqa: F811
    """A STAT ICH result committed ``age`` ago by the dispatcher, which then died before ``on_result``."""
    add_study(db, study_uid)
    then = dt.datetime.now(dt.UTC) - age
    case = case_for(study_uid).model_copy(update={"received_at": then - dt.timedelta(seconds=60)})
    case = case.model_copy(update={"stage_times": case.stage_times.model_copy(
        update={"last_received": then - dt.timedelta(seconds=60)})})
    with db.write() as conn:
        study_id = conn.execute(select(studies.c.id).where(studies.c.study_uid == study_uid)).scalar_one()
        sid = conn.execute(series.insert().values(
            study_id=study_id, series_uid=case.series_uid, header=case.header, header_from_localizer=False,
            state="ready", version=1, first_received_at=then, last_received_at=then,
            storage_dir="/nowhere")).inserted_primary_key[0]
        job_id = conn.execute(jobs.insert().values(
            case_id=case.case_id, series_id=sid, series_version=1, state="running", attempts=1,
            case=case.model_dump(mode="json"), created_at=then, updated_at=then)).inserted_primary_key[0]
    result = ich(key_image)
    row = {"pipeline_id": "stroke_ich", "pipeline_version": "1.0.0", "study_uid": study_uid,
           "series_uid": case.series_uid, "task": "ich", "model_id": result.model_id,
           "model_version": result.model_version, "positive": True, "priority": "STAT",
           "result": result.model_dump(mode="json")}
    assert ledger.record_results(db, job_id, [row], now=then) == ["stroke_ich"]
    return job_id


def test_a_stat_result_recorded_without_its_alert_is_paged_late_after_a_restart(
        db, services, hook, smtp):  # noqa: F811 - fixtures
    # the process died after committing these results and before deciding their alerts; it comes back
    # 20 minutes and 3 hours later (past the old 15-minute look-back)
    recorded_without_alert(db, "1.2.840.70", dt.timedelta(minutes=20))
    recorded_without_alert(db, "1.2.840.71", dt.timedelta(hours=3))
    data = config_data(hook, smtp)
    data["policies"]["stroke"]["late"] = {
        "after_s": 3600, "levels": [level([{"member": "ng"}], ["webhook", "email"], timeout=600)]}
    svc = services(parse_alerting(data, environ=ENV))
    svc.for_pipelines([SimpleNamespace(id="stroke_ich", alert="stroke")])  # pipelines/stroke_ich.yaml's policy
    svc.start()  # the restarted service's first sweep

    got = hook.wait_for(2, 30, event="alert.page")
    mails = smtp.wait_for(2, 30)
    assert len(got) == 2 and len(mails) == 2
    by_study = {r.payload["study_url"].rsplit("/", 1)[1]: r.payload for r in got}
    assert by_study["1.2.840.70"]["recipient"] == "Dr Chan"  # 20 min: still the stroke team
    assert by_study["1.2.840.71"]["recipient"] == "Dr Ng"  # 3 h: the reading radiologist instead
    for p in by_study.values():
        assert p["late"] is True and p["study_age_min"] >= 20
    mail = {m["To"]: m for m in mails}
    chan = mail["chan@example.org"]
    assert chan["Subject"].startswith("[STAT] LATE")
    body = chan.get_body(("plain",)).get_content()
    minutes = int(re.search(r"^LATE: .*study received (\d+) min ago", body, re.M)[1])
    assert minutes >= 20
    ng = mail["ng@example.org"]
    assert "LATE" in ng["Subject"] and re.search(r"^LATE: .*study received 3 h \d+ min ago", ng.get_body(
        ("plain",)).get_content(), re.M)
    assert svc.recover_missed() == 0  # decided once: no second page
    views = [v for s in ("1.2.840.70", "1.2.840.71") for v in svc.for_study(s)]
    assert len(views) == 2 and all(v.late for v in views)


# --- item 15: the one-click link --------------------------------------------------------------


@pytest.fixture
def api_escalating(make_settings, db_url, hook, smtp, key_image) -> Iterator[TestClient]:  # noqa: F811
    services_ = build_services(make_settings(database_url=db_url))
    accounts.add_user(services_.db, "chan", "stroke", PASSWORD, display_name="Dr Chan")
    levels = [level([{"oncall": "primary"}], ["webhook"], timeout=1.0),
              level([{"member": "wong"}], ["webhook"], timeout=600)]
    svc = AlertService(services_.db, make_config(hook, smtp, levels), LINK_KEY,
                       AlertMetrics(services_.metrics.registry), environ=ENV)
    svc.start()
    with TestClient(alert_app(services_, svc)) as client:
        client.services, client.alerts, client.hook, client.key_image = services_, svc, hook, key_image
        yield client
    svc.stop()
    services_.close()


def test_the_ack_link_records_who_used_it_and_a_left_level_no_longer_acknowledges(api_escalating):
    api = api_escalating
    add_study(api.services.db, "1.2.840.80")
    [d] = api.alerts.on_result(case_for("1.2.840.80"), "stroke_ich", ich(), "STAT", "stroke")
    first = api.hook.wait_for(1, 20, event="alert.page")[0]
    second = api.hook.wait_for(2, 20, event="alert.page")[1]  # level 1 timed out: Dr Wong paged
    assert (first.payload["recipient"], second.payload["recipient"]) == ("Dr Chan", "Dr Wong")
    old = first.payload["ack_url"].removeprefix("https://radtriage.test")
    new = second.payload["ack_url"].removeprefix("https://radtriage.test")

    r = api.post(old, headers=HTML)  # a forwarded level-1 message: the alert has left level 1
    assert r.status_code == 409 and "escalated" in r.text
    assert api.alerts.get(d.alert_id).state == "open"
    [refused] = audit.entries(api.services.db, study_uid="1.2.840.80", action="alert_ack_refused")[1]
    assert refused["detail"]["link_level"] == 1 and refused["detail"]["level"] == 2

    r = api.post(new, headers=HTML)
    assert r.status_code == 200 and "you are taking it" in r.text
    view = api.alerts.get(d.alert_id)
    assert (view.state, view.taken_by, view.taken_via) == ("acknowledged", "Dr Wong", "link")
    assert view.taken_from == "testclient" and "iPhone" in (view.taken_user_agent or "")
    [ack] = audit.entries(api.services.db, study_uid="1.2.840.80", action="alert_acknowledged")[1]
    assert ack["client"] == "testclient" and "iPhone" in ack["detail"]["user_agent"]
    assert ack["detail"]["via"] == "link" and ack["detail"]["link_level"] == 2
    page = api.get(new, headers=HTML).text
    assert "Already taken by Dr Wong by link from testclient" in page and "iPhone" in page
    js = api.get("/alerts/assets/stroke.js").text
    assert "by link" in js


# --- item 17: hostile header values, key images outside the results folder ----------------------------


def test_cr_lf_in_a_dicom_header_value_breaks_no_subject_and_injects_no_line(db, services, hook, smtp):  # noqa: F811
    add_study(db, "1.2.840.90")
    case = case_for("1.2.840.90")
    case = case.model_copy(update={"header": {**case.header,
                                              "StationName": "CT-ED-1\r\nBcc: attacker@evil.example\r\nX: y",
                                              "InstitutionName": "Harbour\nPatient: SMITH JOHN"}})
    levels = [level([{"oncall": "primary"}], ["email"])]
    svc = services(make_config(hook, smtp, levels))
    svc.on_result(case, "stroke_ich", ich(), "STAT", "stroke")
    svc.start()
    [mail] = smtp.wait_for(1, 20)
    assert "\n" not in mail["Subject"] and "\r" not in mail["Subject"]
    assert mail["Subject"].endswith("CT-ED-1 Bcc: attacker@evil.example X: y")
    assert mail["Bcc"] is None and mail["X"] is None
    body = mail.get_body(("plain",)).get_content()
    lines = body.splitlines()
    assert not [x for x in lines if x.startswith(("Bcc:", "X:", "Patient: SMITH"))], body
    assert "Where: Harbour Patient: SMITH JOHN / CT-ED-1 Bcc: attacker@evil.example X: y / AE CT_ED_1" in lines


def test_a_key_image_outside_the_results_folder_is_neither_attached_nor_served(
        make_settings, tmp_path, hook, smtp, monkeypatch):  # noqa: F811 - fixtures
    from PIL import Image

    settings = make_settings()
    inside = settings.data_dir / "results" / "job-1" / "stroke_ich-0.png"
    outside = tmp_path / "elsewhere" / "secret.png"
    for p in (inside, outside):
        p.parent.mkdir(parents=True, exist_ok=True)
        Image.new("L", (32, 32), 200).save(p)
    path = tmp_path / "alerting.yaml"
    data = make_config(hook, smtp, [level([{"oncall": "primary"}], ["email"])]).model_dump(
        by_alias=True, exclude_none=True, mode="json")
    path.write_text(yaml.safe_dump(data))
    for k, v in ENV.items():
        monkeypatch.setenv(k, v)
    services_ = build_services(make_settings(alerting_file=path))  # as `radtriage serve` builds it
    accounts.add_user(services_.db, "chan", "stroke", PASSWORD, display_name="Dr Chan")
    svc = services_.alerts
    try:
        ids = {}
        for study, image in (("1.2.840.91", outside), ("1.2.840.92", inside)):
            add_study(services_.db, study)
            [d] = svc.on_result(case_for(study), "stroke_ich", ich(image), "STAT", "stroke")
            ids[study] = d.alert_id
        svc.start()
        mails = smtp.wait_for(2, 20)
        assert len(mails) == 2
        attached = sorted(len([p for p in m.iter_attachments() if p.get_content_type() == "image/png"])
                          for m in mails)
        assert attached == [0, 1]  # only the image inside the results folder went out
        with TestClient(create_app(services_)) as client:
            headers = {"Authorization": f"Bearer {accounts.issue_token(services_.db, 'chan')}"}
            assert client.get(f"/api/v1/alerts/{ids['1.2.840.91']}/key-image", headers=headers).status_code == 404
            r = client.get(f"/api/v1/alerts/{ids['1.2.840.92']}/key-image", headers=headers)
            assert r.status_code == 200 and r.content == inside.read_bytes()
    finally:
        svc.stop()
        services_.close()


def test_results_recorded_before_the_upgrade_are_marked_decided_not_paged_again(db_url, hook, smtp):  # noqa: F811
    """Migration 0005 marks the positive results already recorded as decided (the older version decided
    or swept them), so the first start after an upgrade pages nobody about old studies."""
    from alembic import command
    from alembic.config import Config

    from radtriage.db import open_database
    from radtriage.db.engine import MIGRATIONS_DIR

    database = open_database(db_url)
    try:
        cfg = Config()
        cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
        with database.engine.connect() as conn:
            cfg.attributes["connection"] = conn
            command.downgrade(cfg, "0004")
            conn.commit()
        recorded_without_alert(database, "1.2.840.95", dt.timedelta(days=3))
        database.migrate()
        svc = AlertService(database, make_config(hook, smtp), LINK_KEY, environ=ENV)
        svc.for_pipelines([SimpleNamespace(id="stroke_ich", alert="stroke")])
        assert svc.recover_missed() == 0 and svc.for_study("1.2.840.95") == []
    finally:
        database.dispose()
