"""The worklist page in headless Chromium (Playwright, Debian's /usr/bin/chromium).

A radiologist logs in; a synthetic ICH-positive CT head is C-STOREd by dcmtk
to the running service; the study appears at the top of the open worklist as
STAT without a reload; the radiologist claims it, opens it, agrees with the
finding and logs out. Screenshots are kept under ``test-artifacts/browser/``.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from radtriage.synth import synthesize
from tests.helpers import free_port, need_binary, need_peer, serve_process, storescu, wait_port

REPO = Path(__file__).resolve().parents[2]
ARTIFACTS = Path(os.environ.get("RADTRIAGE_TEST_ARTIFACTS", REPO / "test-artifacts")) / "browser"
CHROMIUM = "/usr/bin/chromium"

pytestmark = [pytest.mark.browser, pytest.mark.slow, pytest.mark.dcmtk]


@pytest.fixture
def service():
    need_peer(Path(CHROMIUM).exists(), "Chromium at /usr/bin/chromium (Debian package chromium)")
    need_binary("storescu")
    root = Path(tempfile.mkdtemp(prefix="rt-", dir="/tmp"))
    data = root / "data"
    data.mkdir()
    dicom_port, http_port = free_port(), free_port()
    env = {"RADTRIAGE_INFERENCE__ENABLED": "true", "RADTRIAGE_INFERENCE__USE_RAY": "false",
           "RADTRIAGE_INFERENCE__PIPELINES_DIR": str(REPO / "pipelines"),
           "RADTRIAGE_INFERENCE__MODELS_DIR": str(REPO / "models"),
           "RADTRIAGE_QUIET_PERIOD_S": "0.5"}
    proc = serve_process(data, dicom_port, http_port, **env)
    try:
        wait_port(http_port, 180, proc)
        wait_port(dicom_port, 30, proc)
        users = subprocess.run(
            [sys.executable, "-m", "radtriage.cli", "users", "add", "dr.lee", "--role", "radiologist", "--generate"],
            env={**os.environ, "RADTRIAGE_DATA_DIR": str(data), "RADTRIAGE_CONFIG_FILE": str(data / "absent.yaml")},
            capture_output=True, text=True, timeout=120, check=True)
        password = users.stdout.split("password for dr.lee: ")[1].split()[0]
        yield {"url": f"http://127.0.0.1:{http_port}", "dicom_port": dicom_port, "password": password, "root": root}
    finally:
        proc.terminate()
        proc.wait(60)
        log = root / f"serve-{dicom_port}.log"
        if log.exists():
            ARTIFACTS.mkdir(parents=True, exist_ok=True)
            shutil.copy(log, ARTIFACTS / "serve.log")
        shutil.rmtree(root, ignore_errors=True)


def test_stat_study_appears_live_then_claim_feedback_logout(service):
    from playwright.sync_api import expect, sync_playwright

    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    study = synthesize("ct-head", 1, 21, service["root"] / "study",
                       {"positive": True, "subtypes": ["intraparenchymal"]})[0]
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True)
        page = browser.new_page(viewport={"width": 1400, "height": 900})
        errors: list[str] = []
        page.on("pageerror", lambda e: errors.append(str(e)))
        try:
            page.goto(service["url"] + "/")
            expect(page).to_have_url(re.compile(r"/login$"))
            page.get_by_label("User name").fill("dr.lee")
            page.get_by_label("Password").fill(service["password"])
            page.get_by_role("button", name="Log in").click()
            expect(page.locator("#live")).to_have_text("live", timeout=20_000)
            expect(page.locator("#rows")).to_contain_text("Nothing to read")
            page.screenshot(path=str(ARTIFACTS / "1-empty-worklist.png"))

            storescu(service["dicom_port"], sorted(study.rglob("*.dcm")), "CT_ED_1")  # the scanner sends it
            top = page.locator("#rows tr").first
            expect(top.locator(".badge")).to_have_text("STAT", timeout=240_000)  # no reload: server-sent events
            expect(top.locator("td.flag")).to_contain_text("ICH")
            page.screenshot(path=str(ARTIFACTS / "2-stat-on-top.png"))

            top.get_by_role("button", name="Claim").click()
            expect(top).to_contain_text("claimed by dr.lee")
            top.locator("td.flag").click()
            expect(page.locator("#study")).to_contain_text("ICH - positive", timeout=20_000)
            expect(page.locator("img.key").first).to_be_visible()
            page.once("dialog", lambda d: d.accept("agree: right frontal haematoma"))
            page.get_by_role("button", name="Agree").first.click()
            expect(page.locator(".feedback-list")).to_contain_text("dr.lee: agree")
            page.screenshot(path=str(ARTIFACTS / "3-study-feedback.png"), full_page=True)

            page.set_viewport_size({"width": 390, "height": 844})  # a phone
            page.goto(service["url"] + "/")
            expect(page.locator("#rows tr").first.locator(".badge")).to_have_text("STAT")
            page.screenshot(path=str(ARTIFACTS / "4-phone-width.png"))

            page.get_by_role("button", name="Log out").click()
            expect(page).to_have_url(re.compile(r"/login$"))
            page.goto(service["url"] + "/")
            expect(page).to_have_url(re.compile(r"/login$"))  # the session is gone
        finally:
            page.screenshot(path=str(ARTIFACTS / "last.png"))
            browser.close()
    assert not errors, errors
