"""The alerts over HTTP on SQLite and PostgreSQL: roles, "I'm taking it", the signed link, the page, metrics.

The last test drives the stroke team's phone page in headless Chromium
(Playwright, Debian's /usr/bin/chromium): a stroke physician logs in on a
phone-sized screen and lands on /stroke; an alert decided afterwards appears
without a reload, with its key image, the finding in one line and the time
since the scan; "I'm taking it" turns it into "Taken by" them. Screenshots
are kept under ``test-artifacts/browser/``.
"""

from __future__ import annotations

import os
import re
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from radtriage.alerts import AlertMetrics, AlertService
from radtriage.alerts.signing import ack_token
from radtriage.api import alerts as alerts_api
from radtriage.api import create_app
from radtriage.db import accounts, audit
from radtriage.service import build_services
from tests.helpers import free_port, need_peer, wait_port
from tests.integration.test_alerts import (  # noqa: F401 - fixtures
    ENV,
    LINK_KEY,
    add_study,
    case_for,
    hook,
    ich,
    key_image,
    make_config,
    smtp,
)

PASSWORD = "correct horse battery"
REPO = Path(__file__).resolve().parents[2]
ARTIFACTS = Path(os.environ.get("RADTRIAGE_TEST_ARTIFACTS", REPO / "test-artifacts")) / "browser"
CHROMIUM = "/usr/bin/chromium"


def alert_app(services, alerts: AlertService):
    """The service's app with the alert service and (until the app includes it) the alerts router."""
    app = create_app(services)
    app.state.alerts = alerts
    if not any(getattr(r, "path", "") == "/stroke" for r in app.routes):
        app.include_router(alerts_api.router)
    return app


@pytest.fixture
def api(make_settings, db_url, hook, smtp, key_image):  # noqa: F811 - fixtures
    services = build_services(make_settings(database_url=db_url))
    for username, role, name in (("chan", "stroke", "Dr Chan"), ("lee", "stroke", "Dr Lee"),
                                 ("admin1", "admin", None), ("rad1", "radiologist", None), ("svc1", "service", None)):
        accounts.add_user(services.db, username, role, PASSWORD if role != "service" else None, display_name=name)
    svc = AlertService(services.db, make_config(hook, smtp), LINK_KEY, AlertMetrics(services.metrics.registry),
                       environ=ENV)
    svc.start()
    with TestClient(alert_app(services, svc)) as client:
        client.services, client.alerts, client.hook, client.key_image = services, svc, hook, key_image
        client.as_ = {u: {"Authorization": f"Bearer {accounts.issue_token(services.db, u)}"}
                      for u in ("chan", "lee", "admin1", "rad1", "svc1")}
        yield client
    svc.stop()
    services.close()


def page(api, study: str = "1.2.840.100") -> int:
    add_study(api.services.db, study)
    [d] = api.alerts.on_result(case_for(study), "stroke_ich", ich(api.key_image), "STAT", "stroke")
    return d.alert_id


def test_roles_and_the_active_list(api):
    alert_id = page(api)
    assert api.get("/api/v1/alerts").status_code == 401
    assert api.get("/api/v1/alerts", headers=api.as_["svc1"]).status_code == 403
    assert api.post(f"/api/v1/alerts/{alert_id}/ack", headers=api.as_["rad1"]).status_code == 403
    for who in ("chan", "admin1", "rad1"):
        r = api.get("/api/v1/alerts", headers=api.as_[who])
        assert r.status_code == 200 and [a["id"] for a in r.json()] == [alert_id]
    a = r.json()[0]
    assert a["finding"] == "ICH - intraparenchymal, ~12 mL" and a["patient"] == "T.C., ID *****567, M 067Y"
    assert a["disclaimer"] == "AI results are an aid, not a diagnosis." and a["has_key_image"]
    img = api.get(f"/api/v1/alerts/{alert_id}/key-image", headers=api.as_["chan"])
    assert img.status_code == 200 and img.headers["content-type"] == "image/png"
    assert img.content == api.key_image.read_bytes()
    assert api.get("/api/v1/alerts/999", headers=api.as_["chan"]).status_code == 404


def test_taking_it_by_api_once(api):
    alert_id = page(api)
    r = api.post(f"/api/v1/alerts/{alert_id}/ack", headers=api.as_["lee"], json={"via": "api"})
    assert r.status_code == 200 and r.json()["taken_now"] is True
    assert r.json()["alert"]["taken_by"] == "Dr Lee" and r.json()["alert"]["state"] == "acknowledged"
    again = api.post(f"/api/v1/alerts/{alert_id}/ack", headers=api.as_["chan"])
    assert again.status_code == 200 and again.json()["taken_now"] is False
    assert again.json()["alert"]["taken_by"] == "Dr Lee"
    assert api.post("/api/v1/alerts/999/ack", headers=api.as_["chan"]).status_code == 404
    [entry] = audit.entries(api.services.db, study_uid="1.2.840.100", action="alert_acknowledged")[1]
    assert entry["actor"] == "lee" and entry["role"] == "stroke" and entry["detail"]["via"] == "api"

    r = api.post(f"/api/v1/alerts/{alert_id}/resolve", headers=api.as_["admin1"], json={"reason": "treated"})
    assert r.status_code == 200 and r.json()["state"] == "resolved"
    assert api.get("/api/v1/alerts", headers=api.as_["chan"]).json() == []
    history = api.get("/api/v1/alerts", params={"study_uid": "1.2.840.100"}, headers=api.as_["rad1"]).json()
    assert [h["state"] for h in history] == ["resolved"]


def test_the_signed_link_confirms_on_get_and_acknowledges_on_post(api):
    alert_id = page(api)
    [msg] = api.hook.wait_for(1, 20, event="alert.page")
    link = msg.payload["ack_url"].removeprefix("https://radtriage.test")

    r = api.get(link)  # what a mail scanner's pre-fetch does: nothing
    assert r.status_code == 200 and "I'm taking it (Dr Chan)" in r.text and 'method="post"' in r.text
    assert r.headers["content-security-policy"].startswith("default-src 'self'")
    assert api.alerts.get(alert_id).state == "open"

    r = api.post(link)
    assert r.status_code == 200 and "you are taking it" in r.text
    view = api.alerts.get(alert_id)
    assert (view.state, view.taken_by, view.taken_via) == ("acknowledged", "Dr Chan", "link")
    assert "Already taken by Dr Chan" in api.post(link).text

    forged = link[:-1] + ("0" if link[-1] != "0" else "1")
    assert api.post(forged).status_code == 403 and api.alerts.get(alert_id).taken_via == "link"
    expired = "/alerts/ack/" + ack_token(LINK_KEY, alert_id, "chan", int(time.time()) - 1)
    r = api.get(expired)
    assert r.status_code == 403 and "expired" in r.text


def test_the_stroke_page_for_phones(api):
    alert_id = page(api)
    r = api.get("/stroke", follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == "/login"
    assert api.post("/login", data={"username": "chan", "password": PASSWORD}, follow_redirects=False
                    ).headers["location"] == "/stroke"
    r = api.get("/stroke")
    assert r.status_code == 200 and "I'm taking it" in r.text and "AI results are an aid, not a diagnosis." in r.text
    assert 'name="viewport"' in r.text and "script-src 'self'" in r.headers["content-security-policy"]
    csrf = re.search(r'data-csrf="([^"]+)"', r.text)[1]
    assert api.get("/alerts/assets/stroke.js").status_code == 200
    assert api.get("/alerts/assets/../service.py").status_code == 404

    assert api.post(f"/api/v1/alerts/{alert_id}/ack", json={"via": "page"}).status_code == 403  # no CSRF token
    r = api.post(f"/api/v1/alerts/{alert_id}/ack", json={"via": "page"}, headers={"X-CSRF-Token": csrf})
    assert r.status_code == 200 and r.json()["alert"]["taken_via"] == "page"


def test_metrics_join_the_service_registry(api):
    alert_id = page(api)
    api.hook.wait_for(1, 20, event="alert.page")
    api.post(f"/api/v1/alerts/{alert_id}/ack", headers=api.as_["chan"])
    text = api.get("/metrics").text
    assert 'radtriage_alerts_total{finding="ich",outcome="created"} 1.0' in text
    assert 'radtriage_alerts_total{finding="ich",outcome="acknowledged"} 1.0' in text
    assert 'radtriage_alert_ack_seconds_count{finding="ich"} 1.0' in text
    assert "radtriage_alert_delivery_seconds_bucket" in text


# --- the phone page in a browser ------------------------------------------------------------


@pytest.fixture
def server(make_settings, hook, smtp) -> Iterator[dict]:  # noqa: F811 - fixtures
    import uvicorn

    need_peer(Path(CHROMIUM).exists(), "Chromium at /usr/bin/chromium (Debian package chromium)")
    services = build_services(make_settings())
    accounts.add_user(services.db, "chan", "stroke", PASSWORD, display_name="Dr Chan")
    alerts = AlertService(services.db, make_config(hook, smtp), LINK_KEY, environ=ENV)
    port = free_port()
    uv = uvicorn.Server(uvicorn.Config(alert_app(services, alerts), host="127.0.0.1", port=port,
                                       log_level="warning"))
    thread = threading.Thread(target=uv.run, daemon=True)
    thread.start()
    alerts.start()
    try:
        wait_port(port, 30)
        yield {"url": f"http://127.0.0.1:{port}", "alerts": alerts, "db": services.db}
    finally:
        alerts.stop()
        uv.should_exit = True
        thread.join(10)
        services.close()


@pytest.mark.browser
@pytest.mark.slow
def test_a_new_alert_appears_live_and_is_taken_from_the_phone(server, key_image):  # noqa: F811
    from playwright.sync_api import expect, sync_playwright

    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True)
        page = browser.new_page(viewport={"width": 390, "height": 844}, is_mobile=True, has_touch=True)
        errors: list[str] = []
        page.on("pageerror", lambda e: errors.append(str(e)))
        try:
            page.goto(server["url"] + "/stroke")
            page.get_by_label("User name").fill("chan")
            page.get_by_label("Password").fill(PASSWORD)
            page.get_by_role("button", name="Log in").click()
            expect(page.locator("#live")).to_have_text("live", timeout=20_000)
            expect(page.locator("#empty")).to_be_visible()

            add_study(server["db"], "1.2.840.200")
            server["alerts"].on_result(case_for("1.2.840.200"), "stroke_ich", ich(key_image), "STAT", "stroke")
            card = page.locator("article.alert")
            expect(card).to_have_count(1, timeout=15_000)  # no reload
            expect(card.locator(".finding")).to_have_text("ICH - intraparenchymal, ~12 mL (97%)")
            expect(card.locator(".since")).to_contain_text("min since")
            expect(card.locator(".patient")).to_have_text("T.C., ID *****567, M 067Y")
            assert card.locator("img.key").evaluate("img => img.complete && img.naturalWidth") == 64
            page.screenshot(path=str(ARTIFACTS / "stroke-alert.png"), full_page=True)

            card.get_by_role("button", name="I'm taking it").tap()
            expect(card.locator(".status")).to_contain_text("Taken by Dr Chan", timeout=10_000)
            expect(card.get_by_role("button")).to_have_count(0)
            page.screenshot(path=str(ARTIFACTS / "stroke-taken.png"), full_page=True)
            assert errors == []
        finally:
            browser.close()
    [view] = server["alerts"].active()
    assert (view.state, view.taken_by, view.taken_via) == ("acknowledged", "Dr Chan", "page")
