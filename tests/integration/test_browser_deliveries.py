"""The admin's Deliveries page in headless Chromium: an export the PACS refused and one retrying after an error are
listed with the study; "Send again" puts the refused one back in the queue and "Give up" cancels the other,
each audited; a radiologist is refused the page."""

from __future__ import annotations

import datetime as dt

import pytest
from sqlalchemy import select, update

from radtriage.config.exports import ExportSettings
from radtriage.db import audit, ledger
from radtriage.db.tables import outbox
from radtriage.exports import plan
from tests.helpers import CHROMIUM, browser_site
from tests.integration.test_browser_models import PASSWORD, assert_refused, login
from tests.integration.test_export_plan import _job, _result

pytestmark = [pytest.mark.browser]
NOW = dt.datetime(2026, 12, 7, 9, 0, tzinfo=dt.UTC)


def _failed_deliveries(services) -> dict:
    """One export the PACS refused (given up on) and one retrying after an error; their outbox ids."""
    db = services.db
    dests = ExportSettings(dicom=[{"name": "pacs", "ae_title": "PACS", "host": "127.0.0.1", "port": 104}],
                           hl7=[{"name": "ris", "host": "127.0.0.1", "port": 2575}])
    ledger.record_results(db, _job(db, "1.2.11", "1.2.11.1"), [_result("stroke_ich", "1.2.11", "1.2.11.1")],
                          now=NOW, then=lambda conn, rec, now: plan.queue_new(conn, dests, rec, now))
    with db.write() as conn:
        ids = list(conn.execute(select(outbox.c.id).where(outbox.c.kind == "export").order_by(outbox.c.id)).scalars())
        conn.execute(update(outbox).where(outbox.c.id == ids[0]).values(
            state="failed", attempts=8, last_error="pacs: C-STORE status 0xA700", finished_at=NOW))
        conn.execute(update(outbox).where(outbox.c.id == ids[1]).values(attempts=3, last_error="ris: no ACK"))
    return {"ids": ids}


@pytest.fixture
def site(make_settings):
    with browser_site(make_settings(), {"ada": "admin", "radiologist1": "radiologist"}, PASSWORD,
                      _failed_deliveries) as s:
        yield s


def test_deliveries_page_send_again_and_give_up(site):
    from playwright.sync_api import expect, sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True)
        try:
            page = browser.new_page()
            page.on("dialog", lambda d: d.accept())
            login(page, site["url"], "ada")
            page.get_by_role("link", name="Deliveries").click()
            refused, retrying = (page.locator(f"tr[data-id='{i}']") for i in site["ids"])
            expect(refused).to_contain_text("given up")
            expect(refused).to_contain_text("pacs (dicom)")
            expect(refused).to_contain_text("0xA700")
            expect(refused.get_by_role("link", name="1.2.11")).to_be_visible()
            expect(retrying).to_contain_text("retrying")
            refused.get_by_role("button", name="Send again").click()
            expect(refused).to_contain_text("retrying")  # queued again, its last error kept until it leaves
            retrying.get_by_role("button", name="Give up").click()
            expect(retrying).to_have_count(0)

            assert_refused(browser, site["url"], "radiologist1", "Deliveries", "/admin/deliveries")
        finally:
            browser.close()
    with site["db"].read() as conn:
        states = dict(conn.execute(select(outbox.c.id, outbox.c.state).where(outbox.c.id.in_(site["ids"]))).all())
    assert states == {site["ids"][0]: "pending", site["ids"][1]: "cancelled"}
    actions = [e["action"] for e in audit.entries(site["db"], actor="ada", limit=50)[1]]
    assert "export_retry" in actions and "export_give_up" in actions
