"""Every read of patient data over HTTP is an audit row, and admins can export the trail (issue 12, item 14).

Reads by a person or a service (IHE ATNA's rule): a worklist listing (one row
per request, naming the studies it returned), a key image, the alert list and
an alert, an alert's key image, the one-click acknowledgement page, and each
STOW-RS upload. Each row says who (user, role), what (study UIDs) and from
where (client address). The export is CSV or RFC 5424 syslog lines, over HTTP
(admins only) and from the command line.
"""

from __future__ import annotations

import csv
import datetime as dt
import functools
import io
import re
import time

import pydicom
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import update

from radtriage import cli
from radtriage.alerts import AlertMetrics, AlertService
from radtriage.alerts.signing import ack_token
from radtriage.db import accounts, audit, worklist
from radtriage.triage import seed
from radtriage.db.tables import results as results_table
from radtriage.db.tables import users
from radtriage.security import hash_password
from radtriage.service import build_services
from tests.helpers import make_ct_series
from tests.integration.test_alerts import ENV, LINK_KEY, add_study, case_for, hook, ich, make_config, smtp  # noqa: F401
from tests.integration.test_alerts_api import alert_app
from tests.integration.test_stow_and_import import multipart

PASSWORD = "correct horse battery"
USERS = {"rad1": "radiologist", "chan": "stroke", "admin1": "admin", "svc1": "service"}
CLIENT = "testclient"  # the client address Starlette's TestClient reports


@functools.cache
def password_hash() -> str:
    return hash_password(PASSWORD)


@pytest.fixture
def api(make_settings, db_url, hook, smtp):  # noqa: F811 - fixtures
    services = build_services(make_settings(database_url=db_url))
    with services.db.write() as conn:  # one slow password hash per run, not three per test
        conn.execute(users.insert(), [
            {"username": name, "role": role, "password_hash": None if role == "service" else password_hash(),
             "display_name": "Dr Chan" if name == "chan" else None, "disabled": False,
             "created_at": dt.datetime.now(dt.UTC)} for name, role in USERS.items()])
    png = services.settings.data_dir / "results" / "job-1" / "stroke_ich-0.png"
    png.parent.mkdir(parents=True, exist_ok=True)
    png.write_bytes(b"\x89PNG\r\n\x1a\n" + b"0" * 64)
    alerts = AlertService(services.db, make_config(hook, smtp), LINK_KEY, AlertMetrics(services.metrics.registry),
                          environ=ENV)
    with TestClient(alert_app(services, alerts)) as client:
        client.services, client.alerts, client.png = services, alerts, png
        client.as_ = {u: {"Authorization": f"Bearer {accounts.issue_token(services.db, u)}"} for u in USERS}
        yield client
    services.close()


def rows(api, action: str, **filters) -> list[dict]:
    """The audit entries of ``action``, oldest first."""
    return list(reversed(audit.entries(api.services.db, action=action, limit=1000, **filters)[1]))


def who(entry: dict) -> tuple:
    return entry["actor"], entry["role"], entry["client"]


def page_alert(api, study_uid: str) -> int:
    add_study(api.services.db, study_uid)
    [decided] = api.alerts.on_result(case_for(study_uid), "stroke_ich", ich(api.png), "STAT", "stroke")
    return decided.alert_id


# --- reads ---------------------------------------------------------------------------------------


def test_each_worklist_listing_is_one_row_naming_the_studies_it_returned(api):
    seed.seed(api.services.db, 6)
    listed = []
    for user in ("rad1", "svc1", "rad1"):  # the third is served from the page cache: still a read
        r = api.get("/api/v1/worklist", params={"limit": 4}, headers=api.as_[user])
        assert r.status_code == 200
        listed.append((user, USERS[user], CLIENT, [i["study_uid"] for i in r.json()["items"]]))
    entries = rows(api, "worklist_listed")
    assert [(*who(e), e["detail"]["studies"]) for e in entries] == listed
    assert entries[0]["detail"]["query"] == "limit=4" and entries[0]["study_uid"] is None

    # a listing that returned no study disclosed nothing: no row
    assert api.get("/api/v1/worklist", params={"ae": "NOPE"}, headers=api.as_["rad1"]).json()["total"] == 0
    assert len(rows(api, "worklist_listed")) == 3
    # the study's own trail includes the listings that showed it
    first = listed[0][3][0]
    assert [e["action"] for e in audit.entries(api.services.db, study_uid=first)[1]].count("worklist_listed") == 3
    page = api.get("/api/v1/audit", params={"study_uid": first}, headers=api.as_["admin1"]).json()
    assert sum(e["action"] == "worklist_listed" for e in page["items"]) == 3


def test_a_key_image_read_is_a_row(api):
    db = api.services.db
    uid = seed.seed(db, 1, positive_fraction=1.0, pending_fraction=0.0)[0]
    rid = worklist.study_results(db, uid)[0]["id"]
    with db.write() as conn:
        conn.execute(update(results_table).where(results_table.c.id == rid)
                     .values(result=seed.result_doc("ich", True, "ICH", key_image=str(api.png))))
    r = api.get(f"/api/v1/studies/{uid}/results/{rid}/key-images/0", headers=api.as_["rad1"])
    assert r.status_code == 200 and r.content == api.png.read_bytes()
    [e] = rows(api, "key_image_viewed")
    assert who(e) == ("rad1", "radiologist", CLIENT) and e["study_uid"] == uid
    assert e["detail"] == {"result_id": rid, "index": 0}
    # a refused read shows nothing and records no read
    assert api.get(f"/api/v1/studies/{uid}/results/{rid}/key-images/3", headers=api.as_["rad1"]).status_code == 404
    assert len(rows(api, "key_image_viewed")) == 1


def test_alert_list_alert_and_its_key_image_reads_are_rows(api):
    study = "1.2.840.100"
    alert_id = page_alert(api, study)
    assert api.get("/api/v1/alerts", headers=api.as_["chan"]).json()[0]["id"] == alert_id
    assert len(api.get("/api/v1/alerts", params={"study_uid": study}, headers=api.as_["rad1"]).json()) == 1
    listed = rows(api, "alerts_listed")
    assert [(*who(e), e["detail"]["studies"], e["detail"]["alerts"]) for e in listed] == [
        ("chan", "stroke", CLIENT, [study], [alert_id]), ("rad1", "radiologist", CLIENT, [study], [alert_id])]

    assert api.get(f"/api/v1/alerts/{alert_id}", headers=api.as_["admin1"]).json()["study_uid"] == study
    [e] = rows(api, "alert_viewed")
    assert who(e) == ("admin1", "admin", CLIENT) and e["study_uid"] == study and e["detail"]["alert_id"] == alert_id

    r = api.get(f"/api/v1/alerts/{alert_id}/key-image", headers=api.as_["chan"])
    assert r.status_code == 200 and r.content == api.png.read_bytes()
    [e] = rows(api, "alert_image_viewed")
    assert who(e) == ("chan", "stroke", CLIENT) and e["study_uid"] == study and e["detail"]["alert_id"] == alert_id

    # nothing shown, nothing recorded: an unknown alert, and an empty list (the phone page polls it)
    assert api.get("/api/v1/alerts/999", headers=api.as_["chan"]).status_code == 404
    api.post(f"/api/v1/alerts/{alert_id}/resolve", headers=api.as_["admin1"], json={"reason": "treated"})
    assert api.get("/api/v1/alerts", headers=api.as_["chan"]).json() == []
    assert (len(rows(api, "alerts_listed")), len(rows(api, "alert_viewed"))) == (2, 1)


def test_the_acknowledgement_page_views_are_rows_with_address_and_agent(api):
    study = "1.2.840.101"
    alert_id = page_alert(api, study)
    link = "/alerts/ack/" + ack_token(LINK_KEY, alert_id, "chan", int(time.time()) + 600)
    agent = {"user-agent": "MailScanner/4.2"}
    assert api.get(link, headers=agent).status_code == 200  # the confirmation page: shows the alert
    assert api.post(link, headers=agent).status_code == 200  # taking it: the page shows it again
    views = rows(api, "ack_page_viewed")
    assert [(e["actor"], e["client"], e["study_uid"], e["detail"]["method"]) for e in views] == [
        ("chan", CLIENT, study, "GET"), ("chan", CLIENT, study, "POST")]
    assert all(e["detail"]["alert_id"] == alert_id and e["detail"]["via"] == "link"
               and e["detail"]["user_agent"] == "MailScanner/4.2" for e in views)
    assert api.get(link[:-2] + "00").status_code == 403  # a forged link shows nothing
    assert len(rows(api, "ack_page_viewed")) == 2


def test_a_stow_upload_is_a_row_per_study_and_a_refused_one_is_recorded(api, tmp_path):
    files = make_ct_series(tmp_path / "s", 2)
    study = pydicom.dcmread(files[0]).StudyInstanceUID
    garbage = b"\x00" * 128 + b"DICM" + b"garbage" * 10
    body, ctype = multipart([f.read_bytes() for f in files] + [garbage])
    r = api.post("/dicomweb/studies", content=body, headers={"content-type": ctype, **api.as_["svc1"]})
    assert r.status_code == 202, r.text
    [e] = rows(api, "stow_stored")
    assert who(e) == ("svc1", "service", CLIENT) and e["study_uid"] == study
    assert (e["detail"]["instances"], e["detail"]["failed"]) == (2, 1)

    body, ctype = multipart([garbage])
    assert api.post("/dicomweb/studies", content=body, headers={"content-type": ctype, **api.as_["svc1"]}
                    ).status_code == 409
    [e] = rows(api, "stow_refused")
    assert who(e) == ("svc1", "service", CLIENT) and e["study_uid"] is None and e["detail"]["failed"] == 1


# --- export --------------------------------------------------------------------------------------

SYSLOG = re.compile(r"^<(?P<pri>\d{1,3})>1 (?P<time>\S+) (?P<host>\S+) (?P<app>\S+) (?P<proc>\S+) (?P<msgid>\S+) "
                    r"(?P<sd>\[(?:[^\]\\]|\\.)*\])(?: (?P<msg>.*))?$")
PARAM = re.compile(r'([^\s="\]]{1,32})="((?:[^"\\\]]|\\.)*)"')


def syslog_entries(text: str) -> list[dict]:
    out = []
    for line in text.splitlines():
        m = SYSLOG.match(line)
        assert m, line
        params: dict[str, list[str]] = {}
        for name, value in PARAM.findall(m["sd"]):
            params.setdefault(name, []).append(re.sub(r"\\(.)", r"\1", value))
        out.append({**m.groupdict(), "params": params})
    return out


def login(api, username: str, password: str):
    return api.post("/login", data={"username": username, "password": password}, follow_redirects=False)


def test_admins_export_the_trail_as_csv_and_rfc5424_syslog(api):
    uids = seed.seed(api.services.db, 3)
    shown = [i["study_uid"] for i in api.get("/api/v1/worklist", headers=api.as_["rad1"]).json()["items"]]
    assert sorted(shown) == sorted(uids)
    for user in ("rad1", "chan", "svc1"):
        assert api.get("/api/v1/audit/export", headers=api.as_[user]).status_code == 403
    assert api.get("/api/v1/audit/export").status_code == 401

    r = api.get("/api/v1/audit/export", params={"format": "csv"}, headers=api.as_["admin1"])
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/csv")
    table = list(csv.DictReader(io.StringIO(r.text)))
    [listing] = [x for x in table if x["action"] == "worklist_listed"]
    assert (listing["actor"], listing["role"], listing["client"], listing["outcome"]) == (
        "rad1", "radiologist", CLIENT, "0")
    assert listing["study_uids"].split() == shown and listing["event_id"] == "110112"
    assert dt.datetime.fromisoformat(listing["event_time"]).tzinfo is not None

    r = api.get("/api/v1/audit/export", params={"format": "syslog"}, headers=api.as_["admin1"])
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain")
    lines = syslog_entries(r.text)
    [listing] = [x for x in lines if x["msgid"] == "worklist_listed"]
    p = listing["params"]
    assert listing["app"] == "radtriage" and listing["pri"] == "85"  # facility 10 (security), notice
    assert (p["actor"], p["role"], p["client"], p["outcome"], p["eventID"], p["eventAction"]) == (
        ["rad1"], ["radiologist"], [CLIENT], ["0"], ["110112"], ["E"])
    assert p["studyUID"] == shown
    assert dt.datetime.fromisoformat(listing["time"].replace("Z", "+00:00")).tzinfo is not None
    # a failed login is exported as a failure
    assert login(api, "rad1", "wrong password!").status_code == 303
    r = api.get("/api/v1/audit/export", params={"format": "syslog"}, headers=api.as_["admin1"])
    [failed] = [x for x in syslog_entries(r.text) if x["msgid"] == "login_failed"]
    assert failed["params"]["outcome"] == ["4"] and failed["pri"] == "84"

    # a typed user name is text in a spreadsheet, never a formula
    assert login(api, '=HYPERLINK("x")', "nope nope nope").status_code == 303
    r = api.get("/api/v1/audit/export", params={"format": "csv"}, headers=api.as_["admin1"])
    [typed] = [x for x in csv.DictReader(io.StringIO(r.text)) if x["action"] == "login_failed" and x["actor"] != "rad1"]
    assert typed["actor"] == "'=HYPERLINK(\"x\")" and typed["outcome"] == "4"

    # since: only what happened after it; and each export is itself in the trail
    later = (dt.datetime.now(dt.UTC) + dt.timedelta(hours=1)).isoformat()
    r = api.get("/api/v1/audit/export", params={"format": "csv", "since": later}, headers=api.as_["admin1"])
    assert list(csv.DictReader(io.StringIO(r.text))) == []
    exported = rows(api, "audit_exported")
    assert [(*who(e), e["detail"]["format"]) for e in exported] == [("admin1", "admin", CLIENT, f) for f in
                                                                     ("csv", "syslog", "syslog", "csv", "csv")]


def test_cli_exports_csv_and_syslog(make_settings, monkeypatch, capsys):
    settings = make_settings()
    services = build_services(settings)
    try:
        audit.log(services.db, "viewed", actor="rad1", role="radiologist", study_uid="1.2.3.4", client="10.0.0.7")
    finally:
        services.close()
    monkeypatch.setenv("RADTRIAGE_DATA_DIR", str(settings.data_dir))
    monkeypatch.setenv("RADTRIAGE_DATABASE_URL", settings.db_url)
    assert cli.main(["audit", "export", "--format", "csv", "--since", "1h"]) == 0
    table = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    [viewed] = [x for x in table if x["action"] == "viewed"]
    assert (viewed["actor"], viewed["client"], viewed["study_uids"], viewed["event_id"]) == (
        "rad1", "10.0.0.7", "1.2.3.4", "110103")
    assert cli.main(["audit", "export", "--format", "syslog"]) == 0
    [viewed] = [x for x in syslog_entries(capsys.readouterr().out) if x["msgid"] == "viewed"]
    assert viewed["params"]["studyUID"] == ["1.2.3.4"] and viewed["params"]["eventAction"] == "R".split()
    assert cli.main(["audit", "export", "--format", "csv", "--since", "2999-01-01T00:00:00+00:00"]) == 0
    assert list(csv.DictReader(io.StringIO(capsys.readouterr().out))) == []
