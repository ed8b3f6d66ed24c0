"""A share opened in headless Chromium on a phone: the QR link (key after '#') opens the passcode form, the
passcode opens the report and the viewer, the viewer scrolls the series and changes window, and the Chinese
page says the same; a wrong passcode is refused on the page with the tries left. The share is issued by a
clinician on the study's share page (the slip shows the QR code and the passcode) and revoked there: the
phone's next page is refused."""

from __future__ import annotations

import re

import pytest

from tests.helpers import CHROMIUM, browser_site
from tests.integration.test_browser_models import login
from tests.integration.test_shares import FINDINGS, PASSWORD, USERS, seed_study

pytestmark = [pytest.mark.browser]
FRAME_SHOWN = "() => document.getElementById('frame').complete && document.getElementById('frame').naturalWidth > 0"
PHONE = {"viewport": {"width": 390, "height": 844}, "device_scale_factor": 3, "is_mobile": True, "has_touch": True,
         "user_agent": "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) "
                       "Chrome/130.0 Mobile Safari/537.36"}


@pytest.fixture
def shared(make_settings):
    with browser_site(make_settings(), USERS, PASSWORD, seed_study) as site:
        yield site


def issue_on_the_page(browser, url: str, study: str) -> dict:
    """A clinician logs in, issues a share on the study's share page and reads the slip: link and passcode."""
    from playwright.sync_api import expect

    page = browser.new_page()
    login(page, url, "cli1")
    page.goto(f"{url}/studies/{study}/share")
    page.get_by_label("Legal basis").fill("PDPO DPP3: consent to cross-boundary care")
    page.get_by_label("Opens allowed").fill("3")
    page.get_by_role("button", name="Issue the share").click()
    expect(page.locator("#slip")).to_be_visible()
    page.wait_for_function("() => document.getElementById('slip-qr').naturalWidth > 0")  # the QR code drawn
    issued = {"link": page.locator("#slip-link").inner_text(), "passcode": page.locator("#slip-passcode").inner_text(),
              "page": page}
    expect(page.locator("#share-rows tr")).to_have_count(1)
    expect(page.locator("#share-rows tr").first).to_contain_text("open")
    return issued


def test_a_phone_opens_the_share_reads_the_report_and_scrolls_the_viewer(shared) -> None:
    from playwright.sync_api import expect, sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True)
        try:
            issued = issue_on_the_page(browser, shared["url"], shared["study"])
            link = issued["link"]
            assert link.startswith(shared["url"] + "/s/") and "#" in link
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
            page.wait_for_function(FRAME_SHOWN)
            first = page.locator("#frame").get_attribute("src")
            position = page.locator("#position").inner_text()
            page.get_by_role("button", name="Next").tap()
            expect(page.locator("#position")).not_to_have_text(position)
            assert page.locator("#frame").get_attribute("src") != first
            page.get_by_role("button", name="Bone").tap()
            expect(page.locator("#frame")).to_have_attribute("src", re.compile(r"w=bone$"))
            page.wait_for_function(FRAME_SHOWN)
            page.get_by_role("button", name="Zoom in").tap()
            assert page.eval_on_selector("#frame", "img => img.style.width") == "125%"
            page.locator("#slider").fill("0")
            expect(page.locator("#position")).to_have_text(re.compile(r"^1 / \d+$"))
            page.wait_for_function(FRAME_SHOWN)
            page.get_by_role("link", name="中文").tap()
            expect(page.locator("#report")).to_contain_text("沒有急性顱內出血。")
            expect(page.get_by_role("button", name="骨")).to_be_visible()
            assert page.viewport_size["width"] == 390
            width = page.evaluate("document.documentElement.scrollWidth")
            assert width <= 390  # one column, nothing wider than the phone

            clinician = issued["page"]  # revoked on the clinician's page: the phone's next page is refused
            clinician.on("dialog", lambda d: d.accept())
            clinician.reload()
            row = clinician.locator("#share-rows tr").first
            expect(row).to_contain_text("1 / 3")
            row.get_by_role("button", name="Revoke").click()
            expect(row).to_contain_text("revoked")
            response = page.reload()
            assert response.status == 410
            expect(page.locator("#reason")).to_contain_text("撤銷")
        finally:
            browser.close()
