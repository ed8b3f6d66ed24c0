"""The Dose page in headless Chromium: a physicist opens it from the header, sees the box plots and the per-day
medians as inline SVG with the DRL line drawn and labelled, and the flagged examination with its reason; a
scanner chosen in the filter form narrows the page (the URL carries the filter); a radiologist has no link and
is refused. A screenshot goes to ``test-artifacts/browser/``."""

from __future__ import annotations

import datetime as dt
import re

import pytest

from tests.helpers import CHROMIUM, browser_site
from tests.integration.test_browser_models import ARTIFACTS, PASSWORD, assert_refused, login
from tests.integration.test_dose_page import NAME, seed_registry

pytestmark = [pytest.mark.browser]


@pytest.fixture
def site(make_settings):
    today = dt.datetime.now(dt.UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    seed = lambda services: {"uids": seed_registry(services.db, today - dt.timedelta(days=9))}  # noqa: E731
    with browser_site(make_settings(), {"phoebe": "physicist", "radiologist1": "radiologist"}, PASSWORD, seed) as s:
        yield s  # the examinations inside the page's default 90 days


def _drawn_across(line) -> None:
    """A horizontal line has no height, so Playwright never calls it visible: it is drawn when it is shown,
    stroked, and spans most of its chart's width inside the chart."""
    got = line.evaluate("""(e) => { const r = e.getBoundingClientRect(), s = e.ownerSVGElement.getBoundingClientRect(),
        c = getComputedStyle(e); return {w: r.width, sw: s.width, y: r.top, top: s.top, bottom: s.bottom,
        stroke: c.stroke, shown: c.visibility === "visible" && c.display !== "none" && c.opacity !== "0"}; }""")
    assert got["shown"] and got["stroke"] not in ("none", "") and got["w"] > 0.7 * got["sw"], got
    assert got["top"] < got["y"] < got["bottom"], got


def test_dose_page_charts_drl_line_and_a_filter(site):
    from playwright.sync_api import expect, sync_playwright

    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            errors: list[str] = []
            page.on("pageerror", lambda e: errors.append(str(e)))
            login(page, site["url"], "phoebe")
            page.get_by_role("link", name="Dose").click()
            expect(page).to_have_url(re.compile(r"/admin/dose$"))
            expect(page.locator(".summary")).to_contain_text("8 examination(s)")
            ctdi = page.locator("article.dose-panel[data-quantity='CTDIvol']")
            box = ctdi.locator("svg.box-chart")
            expect(box).to_be_visible()
            _drawn_across(box.locator("line.drl"))
            expect(box.locator("text.drl-label")).to_have_text("DRL 60 mGy")
            expect(box.locator("line.drl title")).to_have_text("DRL 60 mGy (EXAMPLE - not a published DRL v1)")
            expect(box.locator("rect.box")).to_have_count(2)
            _drawn_across(ctdi.locator("svg.series-chart line.drl"))
            expect(ctdi.locator("svg.series-chart circle.point")).to_have_count(8)
            flagged = page.locator("table.flagged tbody tr")
            expect(flagged).to_have_count(1)
            expect(flagged).to_contain_text("2.17 x the DRL 60 mGy")
            expect(page.locator("body")).not_to_contain_text(NAME.split("^")[0])
            page.screenshot(path=str(ARTIFACTS / "dose-page.png"), full_page=True)

            form = page.get_by_role("form", name="Filters")
            form.get_by_label("Scanner", exact=True).select_option("A CT1")
            form.get_by_role("button", name="Show").click()
            expect(page).to_have_url(re.compile(r"scanner=A\+CT1"))
            expect(page.locator(".summary")).to_contain_text("5 examination(s)")
            expect(form.get_by_label("Scanner", exact=True)).to_have_value("A CT1")
            expect(box.locator("rect.box")).to_have_count(1)
            _drawn_across(box.locator("line.drl"))
            expect(page.locator(".dose-flagged")).to_contain_text("No examination flagged under these filters.")
            assert errors == []

            assert_refused(browser, site["url"], "radiologist1", "Dose", "/admin/dose")
        finally:
            browser.close()
