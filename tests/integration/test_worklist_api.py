"""The worklist API on SQLite and PostgreSQL: roles, filters, paging, claims, feedback, audit, problems."""

from __future__ import annotations

import datetime as dt
import time

import pytest
from fastapi.testclient import TestClient

from radtriage.api import create_app
from radtriage.db import accounts, audit, open_database, worklist
from radtriage.triage import seed
from radtriage.db.tables import jobs, results, series, studies
from radtriage.service import build_services

PASSWORD = "correct horse battery"
ROLES = ("radiologist", "stroke", "admin", "service")


@pytest.fixture
def api(make_settings, db_url):
    services = build_services(make_settings(database_url=db_url))
    tokens = {}
    for role in ROLES:
        accounts.add_user(services.db, f"{role}1", role, PASSWORD if role != "service" else None)
        tokens[role] = accounts.issue_token(services.db, f"{role}1")
    accounts.add_user(services.db, "radiologist2", "radiologist", PASSWORD)
    tokens["radiologist2"] = accounts.issue_token(services.db, "radiologist2")
    app = create_app(services)
    with TestClient(app) as client:
        client.services = services
        client.as_ = {k: {"Authorization": f"Bearer {v}"} for k, v in tokens.items()}
        yield client
    services.close()


def _seed(api, n=40, **kw):
    return seed.seed(api.services.db, n, **kw)


# --- roles ------------------------------------------------------------------------------

ROUTES = [  # (method, path, roles allowed)
    ("GET", "/api/v1/worklist", {"radiologist", "stroke", "admin", "service"}),
    ("GET", "/api/v1/studies/{uid}", {"radiologist", "stroke", "admin"}),
    ("POST", "/api/v1/studies/{uid}/claim", {"radiologist"}),
    ("POST", "/api/v1/studies/{uid}/report", {"radiologist"}),
    ("POST", "/api/v1/studies/{uid}/release", {"radiologist", "admin"}),
    ("POST", "/api/v1/studies/{uid}/feedback", {"radiologist"}),
    ("GET", "/api/v1/audit", {"admin"}),
    ("GET", "/api/v1/users", {"admin"}),
    ("POST", "/api/v1/users", {"admin"}),
    ("GET", "/api/v1/me", {"radiologist", "stroke", "admin", "service"}),
]


@pytest.mark.parametrize("method,path,allowed", ROUTES, ids=[f"{m} {p}" for m, p, _ in ROUTES])
def test_each_role_against_each_route(api, method, path, allowed):
    uid = _seed(api, 4)[0]
    url = path.format(uid=uid)
    r = api.request(method, url)
    assert r.status_code == 401 and r.headers["content-type"].startswith("application/problem+json")
    for role in ROLES:
        r = api.request(method, url, headers=api.as_[role], json={})
        if role in allowed:
            assert r.status_code not in (401, 403), (role, r.status_code, r.text)
        else:
            assert r.status_code == 403, (role, r.status_code)
            assert r.json()["title"] == "Forbidden"


def test_bad_and_revoked_tokens_are_refused(api):
    assert api.get("/api/v1/worklist", headers={"Authorization": "Bearer nope"}).status_code == 401
    accounts.set_disabled(api.services.db, "radiologist2")
    assert api.get("/api/v1/worklist", headers=api.as_["radiologist2"]).status_code == 401


# --- listing ------------------------------------------------------------------------------


def test_order_filters_and_paging(api):
    _seed(api, 60, positive_fraction=0.3, pending_fraction=0.1)
    h = api.as_["radiologist"]
    page = api.get("/api/v1/worklist", params={"limit": 500}, headers=h).json()
    assert page["total"] == 60
    order = {"STAT": 0, "URGENT": 1, "PENDING_AI": 2, "ROUTINE": 3}
    keys = [(order[i["priority"]], i["received_at"]) for i in page["items"]]
    assert keys == sorted(keys)  # most urgent first, oldest first within a priority
    assert page["items"][0]["priority"] == "STAT" and page["items"][0]["flags"][0]["positive"]
    assert {i["priority"] for i in page["items"]} == set(order)

    stat = api.get("/api/v1/worklist", params={"priority": "STAT"}, headers=h).json()
    assert stat["total"] == sum(1 for i in page["items"] if i["priority"] == "STAT") > 0
    assert all(i["priority"] == "STAT" for i in stat["items"])
    cr = api.get("/api/v1/worklist", params={"modality": "CR"}, headers=h).json()
    assert cr["total"] == 15 and all(i["modalities"] == ["CR"] for i in cr["items"])
    ich = api.get("/api/v1/worklist", params={"task": "ich"}, headers=h).json()
    assert ich["total"] > 0 and all(i["tasks"] == ["ich"] for i in ich["items"])
    cutoff = dt.datetime.now(dt.UTC) - dt.timedelta(days=1)
    recent = api.get("/api/v1/worklist", params={"received_from": cutoff.isoformat()}, headers=h).json()
    assert 0 < recent["total"] < 60
    assert all(dt.datetime.fromisoformat(i["received_at"]) >= cutoff for i in recent["items"])
    assert api.get("/api/v1/worklist", params={"ae": "NOPE"}, headers=h).json()["total"] == 0

    first = api.get("/api/v1/worklist", params={"limit": 25}, headers=h).json()["items"]
    second = api.get("/api/v1/worklist", params={"limit": 25, "offset": 25}, headers=h).json()["items"]
    assert [i["study_uid"] for i in first + second] == [i["study_uid"] for i in page["items"][:50]]
    # overdue: a STAT study days old is past its 15 minute target
    assert all(i["overdue"] for i in stat["items"])


def test_bad_input_gets_problem_details(api):
    h = api.as_["radiologist"]
    uid = _seed(api, 2)[0]
    for params in ({"priority": "SOON"}, {"limit": 0}, {"limit": 10_000}, {"sort": "name"}, {"modality": "C;T"}):
        r = api.get("/api/v1/worklist", params=params, headers=h)
        assert r.status_code == 422 and r.json()["title"] == "Request validation failed", params
    r = api.get("/api/v1/studies/1.2.3.999", headers=h)
    assert r.status_code == 404 and r.headers["content-type"].startswith("application/problem+json")
    assert api.get("/api/v1/studies/not-a-uid", headers=h).status_code == 422
    assert api.get("/api/v1/studies/" + "1." * 40 + "1", headers=h).status_code == 422
    r = api.post(f"/api/v1/studies/{uid}/feedback", headers=h, json={"result_id": 1, "finding_code": "x", "verdict": "maybe"})
    assert r.status_code == 422
    r = api.post(f"/api/v1/studies/{uid}/feedback", headers=h, json={"result_id": 99999, "finding_code": "ich", "verdict": "agree"})
    assert r.status_code == 404
    assert api.post("/api/v1/studies/1.2.3.999/claim", headers=h).status_code == 404


# --- reading ------------------------------------------------------------------------------


def test_claim_conflict_release_report_feedback_and_audit(api):
    uids = _seed(api, 8, positive_fraction=1.0, pending_fraction=0.0)
    uid = uids[0]
    a, b, admin = api.as_["radiologist"], api.as_["radiologist2"], api.as_["admin"]
    assert api.post(f"/api/v1/studies/{uid}/report", headers=a).status_code == 409  # claim first
    r = api.post(f"/api/v1/studies/{uid}/claim", headers=a)
    assert r.status_code == 200 and r.json()["claimed_by"] == "radiologist1"
    assert api.post(f"/api/v1/studies/{uid}/claim", headers=a).status_code == 200  # again by the holder: no change
    r = api.post(f"/api/v1/studies/{uid}/claim", headers=b)
    assert r.status_code == 409 and r.json()["claimed_by"] == "radiologist1"
    assert api.post(f"/api/v1/studies/{uid}/release", headers=b).status_code == 403
    assert api.post(f"/api/v1/studies/{uid}/release", headers=admin).status_code == 200
    assert api.post(f"/api/v1/studies/{uid}/claim", headers=b).status_code == 200

    detail = api.get(f"/api/v1/studies/{uid}", headers=b).json()
    assert detail["disclaimer"].startswith("AI results are an aid")
    res = detail["results"][0]
    assert res["model_id"] and res["model_version"] and res["timings_ms"]
    code = res["findings"][0]["code"]
    r = api.post(f"/api/v1/studies/{uid}/feedback", headers=b,
                 json={"result_id": res["id"], "finding_code": code, "verdict": "disagree", "comment": "old infarct"})
    assert r.status_code == 201
    assert api.post(f"/api/v1/studies/{uid}/report", headers=a).status_code == 409  # not the holder
    r = api.post(f"/api/v1/studies/{uid}/report", headers=b)
    assert r.status_code == 200 and r.json()["status"] == "reported" and not r.json()["overdue"]
    assert api.post(f"/api/v1/studies/{uid}/claim", headers=a).status_code == 409

    detail = api.get(f"/api/v1/studies/{uid}", headers=b).json()
    assert [(f["username"], f["verdict"], f["comment"]) for f in detail["feedback"]] == [
        ("radiologist2", "disagree", "old infarct")]
    log = api.get("/api/v1/audit", params={"study_uid": uid, "limit": 100}, headers=admin).json()
    actions = [(e["actor"], e["action"]) for e in reversed(log["items"])]
    assert actions == [("radiologist1", "claimed"), ("admin1", "released"), ("radiologist2", "claimed"),
                       ("radiologist2", "viewed"), ("radiologist2", "feedback"), ("radiologist2", "reported"),
                       ("radiologist2", "viewed")]
    assert all(e["client"] for e in log["items"])
    reported = api.get("/api/v1/worklist", params={"status": "reported"}, headers=a).json()
    assert [i["study_uid"] for i in reported["items"]] == [uid]


def test_key_images_are_served_only_from_the_data_directory(api, tmp_path):
    from radtriage.db.tables import results as results_table
    from sqlalchemy import update

    uid = _seed(api, 1, positive_fraction=1.0, pending_fraction=0.0)[0]
    db, data = api.services.db, api.services.settings.data_dir
    png = data / "results" / "job-1" / "stroke_ich-0.png"
    png.parent.mkdir(parents=True)
    png.write_bytes(b"\x89PNG\r\n\x1a\n" + b"0" * 64)
    outside = tmp_path / "secret.png"
    outside.write_bytes(b"not yours")
    rid = worklist.study_results(db, uid)[0]["id"]
    for path, status in ((png, 200), (outside, 404), (data / "results" / ".." / "radtriage.db", 404)):
        doc = seed.result_doc("ich", True, "ICH", key_image=str(path))
        with db.write() as conn:
            conn.execute(update(results_table).where(results_table.c.id == rid).values(result=doc))
        detail = api.get(f"/api/v1/studies/{uid}", headers=api.as_["radiologist"]).json()
        url = detail["results"][0]["findings"][0]["key_image_url"]
        r = api.get(url, headers=api.as_["radiologist"])
        assert r.status_code == status, path
        if status == 200:
            assert r.headers["content-type"] == "image/png" and r.content == png.read_bytes()
    assert api.get(f"/api/v1/studies/{uid}/results/{rid}/key-images/5", headers=api.as_["radiologist"]).status_code == 404


# --- triage -------------------------------------------------------------------------------


def _land_ich_result(db, uid):
    """A positive ICH result for the study's job, as the dispatcher writes it (job done)."""
    from sqlalchemy import select, update

    with db.write() as conn:
        sid = conn.execute(select(studies.c.id).where(studies.c.study_uid == uid)).scalar_one()
        ser = conn.execute(select(series.c.id, series.c.series_uid).where(series.c.study_id == sid)).one()
        job = conn.execute(select(jobs.c.id).where(jobs.c.series_id == ser.id)).scalar_one()
        now = dt.datetime.now(dt.UTC)
        conn.execute(results.insert().values(
            job_id=job, pipeline_id="stroke_ich", pipeline_version="1.0.0", study_uid=uid, series_uid=ser.series_uid,
            task="ich", model_id="m", model_version="1", positive=True, priority="STAT",
            result=seed.result_doc("ich", True, "ICH - subdural, ~30 mL"), created_at=now))
        conn.execute(update(jobs).where(jobs.c.id == job).values(state="done", updated_at=now))


def test_a_new_result_raises_the_priority_and_the_change_is_recorded(api):
    from radtriage.triage.live import Triage

    db = api.services.db
    uid = _seed(api, 1, pending_fraction=1.0)[0]
    triage = Triage(db, inference_enabled=True, poll_s=0.05)
    triage.run_once()
    assert worklist.entry(db, uid)["priority"] == "PENDING_AI"
    _land_ich_result(db, uid)
    assert triage.run_once() == 1
    assert triage.run_once() == 0  # nothing new: nothing re-triaged
    e = worklist.entry(db, uid)
    assert (e["priority"], e["priority_reason"], e["ai_state"]) == ("STAT", "ICH - subdural, ~30 mL", "done")
    hist = worklist.priority_history(db, uid)
    assert [(h["old_priority"], h["new_priority"]) for h in hist] == [("PENDING_AI", "STAT")]
    _, entries = audit.entries(db, study_uid=uid, action="priority_changed")
    assert entries[0]["actor"] == "system" and entries[0]["detail"]["to"] == "STAT"
    detail = api.get(f"/api/v1/studies/{uid}", headers=api.as_["admin"]).json()
    assert [h["new_priority"] for h in detail["priority_history"]] == ["STAT"]


# --- the cached worklist page -------------------------------------------------------------


def test_a_claim_a_new_result_and_a_new_study_show_in_the_very_next_response(api):
    from radtriage.triage.live import Triage

    db, h = api.services.db, api.as_["radiologist"]
    _seed(api, 30, pending_fraction=0.0, positive_fraction=0.0)

    def first_page():
        r = api.get("/api/v1/worklist", params={"limit": 50}, headers=h)
        assert r.status_code == 200
        return r.json()

    page = first_page()
    assert [i["study_uid"] for i in first_page()["items"]] == [i["study_uid"] for i in page["items"]]
    top, newest = page["items"][0]["study_uid"], page["items"][-1]["study_uid"]
    assert page["items"][0]["status"] == "unread" and page["items"][-1]["priority"] == "ROUTINE"

    assert api.post(f"/api/v1/studies/{top}/claim", headers=h).status_code == 200
    claimed = first_page()["items"][0]
    assert (claimed["study_uid"], claimed["status"], claimed["claimed_by"]) == (top, "claimed", "radiologist1")

    _land_ich_result(db, newest)
    assert Triage(db, inference_enabled=True, poll_s=0.05).run_once() >= 1
    item = first_page()["items"][0]
    assert (item["study_uid"], item["priority"], item["priority_reason"]) == (newest, "STAT", "ICH - subdural, ~30 mL")

    seed.seed(db, 1, start=30)
    assert first_page()["total"] == 31


def _eventually(check, within_s=6.0):
    deadline = time.monotonic() + within_s
    while not check():
        assert time.monotonic() < deadline, "not seen in time"
        time.sleep(0.1)


def test_changes_by_another_process_show_within_seconds(api, db_url):
    """Another engine on the same database writes, as another process (the CLI, a second API worker) would."""
    h = api.as_["radiologist2"]
    _seed(api, 5, pending_fraction=0.0)
    page = api.get("/api/v1/worklist", headers=h).json()
    top = page["items"][0]["study_uid"]
    assert page["total"] == 5 and page["items"][0]["status"] == "unread"
    other = open_database(db_url, migrate=False)
    try:
        worklist.claim(other, top, "radiologist1", "radiologist")
        _eventually(lambda: api.get("/api/v1/worklist", headers=h).json()["items"][0]["status"] == "claimed")
        accounts.set_disabled(other, "radiologist2")
        _eventually(lambda: api.get("/api/v1/worklist", headers=h).status_code == 401)
    finally:
        other.dispose()
