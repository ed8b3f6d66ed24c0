"""A hub's pages in headless Chromium (Playwright, Debian's /usr/bin/chromium) with an edge's AI results kept:
the radiologist's worklist and study page say the edge's live result with its origin, apart from the hub's
own, and never its shadow one; the admin's study page shows both. Screenshots under
``test-artifacts/browser/``."""

from __future__ import annotations

import os
from pathlib import Path

import pydicom
import pytest

from radtriage.db import edge_results
from radtriage.forward.payload import EdgeResult, body_of
from radtriage.triage.live import Triage
from tests.helpers import CHROMIUM, browser_site, make_ct_series
from tests.integration.test_browser_models import PASSWORD, login
from tests.integration.test_forward_results import _store_closed
from tests.unit.test_forward_results import NOW, recorded_row

REPO = Path(__file__).resolve().parents[2]
ARTIFACTS = Path(os.environ.get("RADTRIAGE_TEST_ARTIFACTS", REPO / "test-artifacts")) / "browser"
LIVE = "AI at kwc (edge), stroke_ich 1.2.0, live: Intracranial haemorrhage (p 0.91)"
SHADOW = "AI at kwc (edge), stroke_lvo 0.3.0, shadow"

pytestmark = [pytest.mark.browser]


@pytest.fixture
def hub(make_settings, tmp_path):
    paths = make_ct_series(tmp_path / "ct", 2, PatientID="P1")
    head = pydicom.dcmread(paths[0], stop_before_pixels=True)

    def seed(services) -> dict:
        _store_closed(services, paths)
        Triage(services.db, inference_enabled=False, poll_s=0.05).run_once()
        uids = {"study_uid": head.StudyInstanceUID, "series_uid": head.SeriesInstanceUID}
        lvo = {**recorded_row()["result"], "task": "lvo", "model_id": "lvo_net", "pipeline_version": "0.3.0",
               "findings": [{"code": "lvo", "text": "Large vessel occlusion, left M1"}]}
        for row in (recorded_row(**uids), recorded_row(**uids, id=8, pipeline_id="stroke_lvo", pipeline_version="0.3.0",
                                                       state="shadow", result=lvo)):
            body = EdgeResult.model_validate(body_of("kwc", row, NOW))
            with services.db.write() as conn:
                edge_results.keep(conn, edge_results.received_values(
                    {**body.model_dump(mode="json"), "recorded_at": body.recorded_at}, "edge-kwc", NOW))
        return {"study_uid": head.StudyInstanceUID}

    with browser_site(make_settings(), {"ada": "admin", "dr.lee": "radiologist"}, PASSWORD, seed) as site:
        yield site


def test_the_edge_result_shows_with_its_origin_and_its_shadow_one_to_admins_only(hub):
    from playwright.sync_api import expect, sync_playwright

    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True)
        errors: list[str] = []
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 900})
            page.on("pageerror", lambda e: errors.append(str(e)))
            login(page, hub["url"], "dr.lee")
            row = page.locator("#rows tr").first
            expect(row.locator(".edge-ai")).to_have_text(LIVE, timeout=20_000)
            page.goto(hub["url"] + "/studies/" + hub["study_uid"])
            edge = page.locator("section.edge-results")
            expect(edge).to_contain_text(LIVE, timeout=20_000)
            expect(edge).to_contain_text("not counted for this priority")
            expect(edge).not_to_contain_text("stroke_lvo")  # the edge's shadow result: not for a radiologist
            expect(page.locator("section.results")).not_to_contain_text("kwc")  # the hub's own results, apart
            page.screenshot(path=str(ARTIFACTS / "edge-results-radiologist.png"), full_page=True)

            admin = browser.new_page(viewport={"width": 1400, "height": 900})
            admin.on("pageerror", lambda e: errors.append(str(e)))
            login(admin, hub["url"], "ada")
            admin.goto(hub["url"] + "/studies/" + hub["study_uid"])
            items = admin.locator("section.edge-results li")
            expect(items).to_have_count(2, timeout=20_000)
            expect(items.nth(1)).to_contain_text(SHADOW)
            admin.screenshot(path=str(ARTIFACTS / "edge-results-admin.png"), full_page=True)
        finally:
            browser.close()
    assert errors == []
