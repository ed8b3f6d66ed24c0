"""The report panel in headless Chromium: a radiologist opens a study with a live ICH result, switches to
the Traditional Chinese draft, edits it (autosaved), signs it, and sees each delivery's state (an MLLP
receiver and a FHIR receiver in this process); the printable view shows the signed report.

The service runs with inference on and no pipelines (nothing to compute: the result is recorded by the
test), so its export worker runs and the test takes seconds. Screenshots go to ``test-artifacts/browser/``."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pydicom
import pytest
from sqlalchemy import func, select

from radtriage.synth import synthesize
from tests.helpers import free_port, need_binary, need_peer, serve_process, storescu, wait_port
from tests.integration.test_export_fhir_hl7 import TOKEN, fhir_server, listener  # noqa: F401 - fixtures

REPO = Path(__file__).resolve().parents[2]
ARTIFACTS = Path(os.environ.get("RADTRIAGE_TEST_ARTIFACTS", REPO / "test-artifacts")) / "browser"
CHROMIUM = "/usr/bin/chromium"
pytestmark = [pytest.mark.browser, pytest.mark.slow, pytest.mark.dcmtk]


def _record_ich(data: Path, study_uid: str) -> None:
    from radtriage.config import load_settings
    from radtriage.db import open_database, worklist
    from radtriage.db.clock import utcnow
    from radtriage.db.tables import instances, jobs, results, series
    from radtriage.reports.samples import SAMPLES

    db = open_database(load_settings(config_file=data / "absent.yaml", data_dir=data).db_url)
    try:
        deadline, job = time.monotonic() + 60, None
        while time.monotonic() < deadline and (job is None or worklist.entry(db, study_uid) is None):
            with db.read() as conn:
                job = conn.execute(select(jobs.c.id, series.c.series_uid).join(series, series.c.id == jobs.c.series_id)
                                   .join(instances, instances.c.series_id == series.c.id)
                                   .group_by(jobs.c.id, series.c.series_uid)
                                   .order_by(func.count(instances.c.id).desc())).first()
            time.sleep(0.2)
        assert job is not None
        r = SAMPLES["ich"][0]
        with db.write() as conn:  # the job may be closed already (no pipelines): the result row alone
            conn.execute(results.insert().values(
                job_id=job.id, pipeline_id="stroke_ich", pipeline_version="1.0.0", study_uid=study_uid,
                series_uid=job.series_uid, task="ich", model_id=r.model_id, model_version=r.model_version,
                positive=True, priority="STAT", result=r.model_dump(mode="json"), created_at=utcnow(), state="live"))
    finally:
        db.dispose()


def test_edit_the_chinese_draft_sign_and_see_each_delivery(tmp_path, listener, fhir_server):  # noqa: F811
    from playwright.sync_api import expect, sync_playwright

    need_peer(Path(CHROMIUM).exists(), "Chromium at /usr/bin/chromium (Debian package chromium)")
    need_binary("storescu")
    root = Path(tempfile.mkdtemp(prefix="rt-", dir="/tmp"))
    data, empty = root / "data", root / "no-pipelines"
    data.mkdir()
    empty.mkdir()
    dicom_port, http_port = free_port(), free_port()
    proc = serve_process(data, dicom_port, http_port, RADTRIAGE_INFERENCE__ENABLED="true",
                         RADTRIAGE_INFERENCE__USE_RAY="false", RADTRIAGE_INFERENCE__PIPELINES_DIR=str(empty),
                         RADTRIAGE_INFERENCE__MODELS_DIR=str(REPO / "models"), RADTRIAGE_QUIET_PERIOD_S="0.5",
                         RADTRIAGE_EXPORTS__HL7=f'[{{"name": "ris", "host": "127.0.0.1", "port": {listener.port}}}]',
                         RADTRIAGE_EXPORTS__FHIR=f'[{{"name": "emr", "base_url": "{fhir_server.url}", '
                                                 f'"token_env": "RT_TEST_TOKEN"}}]', RT_TEST_TOKEN=TOKEN)
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    try:
        wait_port(http_port, 120, proc)
        wait_port(dicom_port, 30, proc)
        env = {**os.environ, "RADTRIAGE_DATA_DIR": str(data), "RADTRIAGE_CONFIG_FILE": str(data / "absent.yaml")}
        users = subprocess.run([sys.executable, "-m", "radtriage.cli", "users", "add", "dr.lee", "--role", "radiologist",
                                "--generate"], env=env, capture_output=True, text=True, timeout=120, check=True)
        password = users.stdout.split("password for dr.lee: ")[1].split()[0]
        folder = synthesize("ct-head", 1, 21, root / "study", {"positive": True, "subtypes": ["intraparenchymal"]})[0]
        storescu(dicom_port, sorted(folder.glob("*.dcm")), "CT_ED_1")
        study_uid = str(pydicom.dcmread(next(folder.glob("*.dcm")), stop_before_pixels=True).StudyInstanceUID)
        _record_ich(data, study_uid)
        url = f"http://127.0.0.1:{http_port}"
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True)
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            errors: list[str] = []
            page.on("pageerror", lambda e: errors.append(str(e)))
            try:
                page.goto(url + "/login")
                page.get_by_label("User name").fill("dr.lee")
                page.get_by_label("Password").fill(password)
                page.get_by_role("button", name="Log in").click()
                expect(page.locator("#live")).to_have_text("live", timeout=20_000)
                page.goto(f"{url}/studies/{study_uid}")
                panel = page.locator("#report")
                expect(panel).to_contain_text("Draft from the AI results", timeout=20_000)
                page.keyboard.press("Alt+2")  # the Chinese draft
                expect(panel.locator("textarea#rp-zh-Hant-findings")).to_have_value(re.compile("腦實質內出血"))
                expect(panel).to_contain_text("not yet reviewed by a Hong Kong radiologist")
                findings = panel.locator("textarea#rp-zh-Hant-findings")
                findings.click()
                page.keyboard.press("End")
                findings.press_sequentially("\n中線無偏移。")
                expect(panel.locator(".save-state")).to_contain_text("Saved", timeout=10_000)  # autosaved
                page.screenshot(path=str(ARTIFACTS / "report-1-chinese-draft.png"), full_page=True)
                page.once("dialog", lambda d: d.accept())
                panel.get_by_role("button", name=re.compile("^Sign report")).click()
                expect(panel.locator(".report-state")).to_contain_text("Signed by dr.lee", timeout=10_000)
                deliveries = panel.locator("ul.deliveries")
                expect(deliveries).to_contain_text("ris (hl7) · final · sent", timeout=30_000)
                expect(deliveries).to_contain_text("emr (fhir) · final · sent", timeout=30_000)
                expect(panel.locator("#rp-zh-Hant-findings")).to_contain_text("中線無偏移")  # read-only now
                page.screenshot(path=str(ARTIFACTS / "report-2-signed-sent.png"), full_page=True)
                page.goto(f"{url}/studies/{study_uid}/report/print?lang=zh-Hant")
                expect(page.locator(".report-print")).to_contain_text("中線無偏移")
                expect(page.locator(".print-state")).to_contain_text("Signed by dr.lee")
            finally:
                page.screenshot(path=str(ARTIFACTS / "report-last.png"))
                browser.close()
        assert not errors, errors
        assert "中線無偏移" in listener.received[-1]
        (report,) = fhir_server.store["DiagnosticReport"].values()
        assert report["status"] == "final"
    finally:
        proc.terminate()
        proc.wait(60)
        log = root / f"serve-{dicom_port}.log"
        if log.exists():
            shutil.copy(log, ARTIFACTS / "serve-report.log")
        shutil.rmtree(root, ignore_errors=True)
