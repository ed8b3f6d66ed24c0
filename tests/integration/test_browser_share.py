"""A share opened in headless Chromium on a phone: the QR link (key after '#') opens the passcode form, the
passcode opens the report and the viewer, the viewer scrolls the series and changes window, and the Chinese
page says the same; a wrong passcode is refused on the page with the tries left."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.integration.test_browser_models import CHROMIUM
from tests.integration.test_shares import FINDINGS, make_site

pytestmark = [pytest.mark.browser]
PHONE = {"viewport": {"width": 390, "height": 844}, "device_scale_factor": 3, "is_mobile": True, "has_touch": True,
         "user_agent": "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) "
                       "Chrome/130.0 Mobile Safari/537.36"}


@pytest.fixture
def shared(make_settings):
    from fastapi.testclient import TestClient

    from radtriage.api import create_app
    from radtriage.db import accounts
    from tests.helpers import need_peer, serving

    need_peer(Path(CHROMIUM).exists(), "Chromium at /usr/bin/chromium (Debian package chromium)")
    services, study_uid, count = make_site(make_settings())
    try:
        with serving(create_app(services)) as url:
            with TestClient(create_app(services), base_url=url) as api:
                auth = {"Authorization": f"Bearer {accounts.issue_token(services.db, 'cli1')}"}
                r = api.post(f"/api/v1/studies/{study_uid}/shares", headers=auth, json={
                    "consent": "patient", "legal_basis": "consent to cross-boundary care", "audience": "anyone",
                    "expires_in_hours": 24, "max_opens": 3})
                assert r.status_code == 201, r.text
            yield {"url": url, "issued": r.json(), "count": count}
    finally:
        services.close()


def _frame_loaded(page) -> bool:
    return page.eval_on_selector("#frame", "img => img.complete && img.naturalWidth > 0")


def test_a_phone_opens_the_share_reads_the_report_and_scrolls_the_viewer(shared) -> None:
    from playwright.sync_api import expect, sync_playwright

    issued = shared["issued"]
    link = issued["link"]
    assert link.startswith(shared["url"] + "/s/")
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True)
        try:
            page = browser.new_context(**PHONE).new_page()
            page.goto(link)
            expect(page.get_by_text("cannot be recalled")).to_be_visible()
            page.get_by_label("Passcode").fill("99999999" if issued["passcode"] != "99999999" else "11111111")
            page.get_by_role("button", name="Open").click()
            expect(page.locator("#reason")).to_contain_text("Wrong passcode.")
            expect(page.locator("#reason")).to_contain_text("locks: 4")
            page.get_by_label("Passcode").fill(issued["passcode"])  # the key kept for this tab
            page.get_by_role("button", name="Open").click()
            page.wait_for_url(re.compile(r"/view\?lang=en$"))
            expect(page.locator("#report")).to_contain_text(FINDINGS)
            expect(page.locator("#not-recalled")).to_be_visible()
            expect(page.locator("#series")).to_have_value("1")  # the longest series first, not the localizer
            page.locator("#series").select_option(index=2)
            page.wait_for_function("document.getElementById('frame').complete && "
                                   "document.getElementById('frame').naturalWidth > 0")
            first = page.locator("#frame").get_attribute("src")
            position = page.locator("#position").inner_text()
            page.get_by_role("button", name="Next").tap()
            expect(page.locator("#position")).not_to_have_text(position)
            assert page.locator("#frame").get_attribute("src") != first
            page.get_by_role("button", name="Bone").tap()
            expect(page.locator("#frame")).to_have_attribute("src", re.compile(r"w=bone$"))
            page.wait_for_function("document.getElementById('frame').complete && "
                                   "document.getElementById('frame').naturalWidth > 0")
            page.get_by_role("button", name="Zoom in").tap()
            assert page.eval_on_selector("#frame", "img => img.style.width") == "125%"
            page.locator("#slider").fill("0")
            expect(page.locator("#position")).to_have_text(re.compile(r"^1 / \d+$"))
            assert _frame_loaded(page) or page.wait_for_function(
                "document.getElementById('frame').naturalWidth > 0")
            page.get_by_role("link", name="中文").tap()
            expect(page.locator("#report")).to_contain_text("沒有急性顱內出血。")
            expect(page.get_by_role("button", name="骨")).to_be_visible()
            assert page.viewport_size["width"] == 390
            width = page.evaluate("document.documentElement.scrollWidth")
            assert width <= 390  # one column, nothing wider than the phone
        finally:
            browser.close()
