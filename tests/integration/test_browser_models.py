"""The Models page in headless Chromium (Playwright, Debian's /usr/bin/chromium).

The API runs in this process (uvicorn on an ephemeral port) with the shipped pipelines and a seeded set of
live stroke_ich results. An admin opens the page from the worklist header: the four pipelines with their
states, the monitor's charts as inline SVG with the expected band and the baseline; demoting stroke_ich
with a reason changes the state shown and records the decision (with its signed report linked); a
promotion without evidence, and one on a metrics.json below the floors, show the refusal with each
shortfall. A commissioning reader sees the page without the forms. Screenshots go to
``test-artifacts/browser/``.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import pytest

from radtriage.db import audit
from radtriage.db import governance as decisions_db
from tests.helpers import CHROMIUM, browser_site
from tests.integration.test_model_decisions import ich_evidence
from tests.integration.test_models_monitor_api import seed_ich

REPO = Path(__file__).resolve().parents[2]
ARTIFACTS = Path(os.environ.get("RADTRIAGE_TEST_ARTIFACTS", REPO / "test-artifacts")) / "browser"
PASSWORD = "correct horse battery"
PIPELINES = ("bone_age", "lung_nodule", "stroke_ich", "stroke_lvo")

pytestmark = [pytest.mark.browser]


@pytest.fixture
def site(make_settings):
    settings = make_settings(inference={"enabled": True, "use_ray": False, "pipelines_dir": str(REPO / "pipelines"),
                                        "models_dir": str(REPO / "models")})
    with browser_site(settings, {"ada": "admin", "radiologist1": "radiologist", "cora": "commissioning"}, PASSWORD,
                      lambda services: seed_ich(services.db)) as s:
        yield s


def login(page, url: str, user: str) -> None:
    page.goto(url + "/login")
    page.get_by_label("User name").fill(user)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Log in").click()
    page.wait_for_url(re.compile(r"/$"))


def assert_refused(browser, url: str, user: str, link: str, path: str) -> None:
    """``user`` (another role) has no ``link`` in the header and gets 403 at ``path``."""
    from playwright.sync_api import expect

    page = browser.new_page()
    login(page, url, user)
    expect(page.get_by_role("link", name=link)).to_have_count(0)
    assert page.goto(url + path).status == 403


def test_models_page_states_charts_demotion_and_refusals(site, tmp_path):
    from playwright.sync_api import expect, sync_playwright

    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    thin = tmp_path / "metrics.json"
    thin.write_text(json.dumps(ich_evidence(150, 20)))
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True)
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        errors: list[str] = []
        page.on("pageerror", lambda e: errors.append(str(e)))
        try:
            login(page, site["url"], "ada")
            page.get_by_role("link", name="Models").click()  # from the worklist header
            expect(page).to_have_url(re.compile(r"/admin/models$"))
            cards = page.locator("article.model-card")
            expect(cards).to_have_count(4, timeout=20_000)
            for pid in PIPELINES:  # development: the synthetic-trained models run live as a demonstration
                expect(page.locator(f"#model-{pid} .model-head .state")).to_have_text("live")
            ich = page.locator("#model-stroke_ich")
            rate = ich.locator("figure.chart-positive-rate svg.rate-chart")
            expect(rate.locator("rect.band")).to_have_count(1, timeout=20_000)
            expect(rate.locator("line.hard-limit")).to_have_count(1)
            expect(rate.locator("circle.point")).to_have_count(7)
            expect(ich.locator("svg.histogram-chart path.baseline")).to_have_count(1)
            expect(ich.locator("svg.rates-chart rect.band")).to_have_count(3)
            expect(ich.locator(".monitor-text")).to_contain_text("positive rate 12% of the last 100 results")
            page.screenshot(path=str(ARTIFACTS / "models-1-live.png"), full_page=True)

            # demote stroke_ich with a reason
            form = ich.locator("form.decide")
            expect(form.get_by_label("Action")).to_have_value("demote")
            form.get_by_label("Reason").fill("score drift against the baseline: investigating the new scanner")
            form.get_by_role("button", name="Decide").click()
            expect(form.locator(".outcome")).to_contain_text("stroke_ich is now shadow")
            expect(ich.locator(".model-head .state")).to_have_text("shadow")
            row = ich.locator("table.decisions-table tbody tr").first
            expect(row).to_contain_text("demote")
            expect(row).to_contain_text("ada")
            expect(row.get_by_role("link", name="report")).to_have_attribute(
                "href", re.compile(r"^/api/v1/models/stroke_ich/decisions/\d+/report$"))
            [decision] = decisions_db.decisions(site["db"], "stroke_ich")
            assert (decision["action"], decision["state"], decision["decided_by"]) == ("demote", "shadow", "ada")
            assert decision["reason"].startswith("score drift")

            # promotion without evidence: refused, naming what is needed
            form.get_by_label("Action").select_option("promote")
            form.get_by_label("Reason").fill("back to live")
            form.get_by_role("button", name="Decide").click()
            refusal = form.locator(".refusal")
            expect(refusal).to_contain_text("Decision refused")
            expect(refusal.locator("li")).to_contain_text(["evidence is needed"])
            # promotion on a metrics.json below the floors: each shortfall listed
            form.locator("input[type=file]").set_input_files(str(thin))
            form.get_by_role("button", name="Decide").click()
            expect(refusal.locator("li").first).to_contain_text("150 cases, at least 200 needed")
            expect(refusal).to_contain_text("20 positive cases, at least 30 needed")
            expect(ich.locator(".model-head .state")).to_have_text("shadow")
            page.screenshot(path=str(ARTIFACTS / "models-2-refused.png"), full_page=True)
            assert [d["action"] for d in decisions_db.decisions(site["db"], "stroke_ich")] == ["demote"]
            assert audit.entries(site["db"], action="model_promote_refused")[0] == 2

            # a commissioning reader reads, without the forms
            other = browser.new_page(viewport={"width": 1000, "height": 900})
            login(other, site["url"], "cora")
            other.goto(site["url"] + "/admin/models")
            expect(other.locator("#model-stroke_ich .model-head .state")).to_have_text("shadow", timeout=20_000)
            expect(other.locator("#model-stroke_ich svg.rate-chart rect.band")).to_have_count(1, timeout=20_000)
            expect(other.locator("form.decide")).to_have_count(0)
            other.close()
        finally:
            page.screenshot(path=str(ARTIFACTS / "models-last.png"), full_page=True)
            browser.close()
    assert not errors, errors
