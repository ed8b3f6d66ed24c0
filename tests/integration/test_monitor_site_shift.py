"""Watching live models: a site shift makes the model monitor warn, then demote the ICH pipeline.

The real service path: `Runtime` with inference on (the shipped pipelines and their SHIPPED monitor
ranges, the reference ICH model in-process, development: live as a demonstration), the alert service
built from an alerting file (a real webhook receiver and aiosmtpd), studies C-STOREd by dcmtk.

The studies: a few synthetic CT heads (radtriage.synth, matrix 128) - four without haemorrhage that the
model calls negative and one with a bleed - sent again and again, each copy with fresh UIDs (the real
model reads every copy; the pixels repeat). Then the site shifts: the same normal heads arrive with every
value 14 HU higher (a scanner's calibration drift: RescaleIntercept + 14), which the model flags.
35 studies at 3/35 positive warn of nothing; 18 shifted heads (21/53 positive, 40%) make the monitor warn
the admins (webhook and e-mail) and show a banner on the worklist; 6 more (27/59, 46%: past the hard limit
of 45% over at least 40 results) make it demote the pipeline by itself: a decision by "monitor" audited
as the system's, the pipeline's open alerts withdrawn, the admin on call paged; later results are shadow.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pydicom
import pytest
import yaml
from fastapi.testclient import TestClient
from pydicom.uid import generate_uid

from radtriage.db import accounts, audit, ledger
from radtriage.db import governance as decisions_db
from radtriage.synth.run import generator, study_identity
from tests.helpers import storescu, wait_jobs_final
from tests.integration.test_alerts import SECRET, hook, smtp, wait_until  # noqa: F401 - fixtures

REPO = Path(__file__).resolve().parents[2]
PASSWORD = "correct horse battery"
NORMAL = (3, 5, 6, 7)  # seed 31 heads without haemorrhage that the reference model calls negative at matrix 128
SHIFT_HU = 14.0
pytestmark = [pytest.mark.slow, pytest.mark.dcmtk]


@pytest.fixture(scope="module")
def heads(tmp_path_factory) -> dict[str, list[Path]]:
    """The main (soft-tissue) series of the normal heads and of one head with a bleed."""
    root = tmp_path_factory.mktemp("heads")
    make = generator("ct-head")

    def head(seed: int, i: int, **options) -> list[Path]:
        folder = root / f"{seed}-{i}"
        make(np.random.default_rng([seed, i]), i, folder, identity=study_identity("ct-head", seed, i), matrix=128,
             **options)
        return sorted(folder.glob("002_*.dcm"))

    return {"normal": [head(31, i, positive=False) for i in NORMAL],
            "bleed": [head(21, 0, positive=True, subtypes=["intraparenchymal"])]}


def copies(series: list[Path], out: Path, hu: float = 0.0) -> list[Path]:
    """The series as a new study (fresh UIDs), every value ``hu`` higher."""
    out.mkdir(parents=True)
    study, ser = generate_uid(), generate_uid()
    paths = []
    for p in series:
        ds = pydicom.dcmread(p)
        ds.StudyInstanceUID, ds.SeriesInstanceUID = study, ser
        ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
        ds.RescaleIntercept = float(ds.RescaleIntercept) + hu
        ds.save_as(out / p.name)
        paths.append(out / p.name)
    return paths


def alerting_file(path: Path, hook, smtp) -> Path:  # noqa: F811 - fixtures
    def member(name: str, email: bool = True) -> dict:
        return {"name": name, "username": name.split()[-1].lower(),
                "contacts": {"webhook": hook.url, **({"email": f"{name.split()[-1].lower()}@example.org"} if email else {})}}

    path.write_text(yaml.safe_dump({
        "links": {"base_url": "https://radtriage.test"},
        "delivery": {"poll_s": 0.05, "backoff_s": 0.05, "max_backoff_s": 0.2, "max_attempts": 3, "lease_s": 30},
        "channels": {"webhook": {"secret_env": "RT_TEST_HOOK_SECRET", "timeout_s": 2},
                     "email": {"host": "127.0.0.1", "port": smtp.port, "security": "none",
                               "from": "radtriage@example.org"}},
        "teams": {"stroke": {"members": {"chan": member("Dr Chan", email=False)}},
                  "admins": {"members": {"ada": member("Ada Admin"), "bo": member("Bo Admin", email=False)}}},
        "rotas": {"primary": {"shifts": [{"member": "chan", "start": "00:00", "end": "00:00"}]},
                  "admin_oncall": {"shifts": [{"member": "ada", "start": "00:00", "end": "00:00"}]}},
        "policies": {"stroke": {"findings": ["ich", "lvo"], "repeat_last": 0, "levels": [
            {"notify": [{"oncall": "primary"}], "channels": ["webhook"], "ack_timeout_s": 3600}]}},
        "monitor": {"warn": [{"team": "admins"}], "page": [{"oncall": "admin_oncall"}],
                    "channels": ["webhook", "email"]},
    }))
    return path


@pytest.fixture
def site(make_settings, tmp_path, hook, smtp, monkeypatch) -> Iterator[dict]:  # noqa: F811 - fixtures
    from radtriage.api import create_app
    from radtriage.service import Runtime, build_services

    monkeypatch.setenv("RT_TEST_HOOK_SECRET", SECRET)
    settings = make_settings(alerting_file=alerting_file(tmp_path / "alerting.yaml", hook, smtp),
                             inference={"enabled": True, "use_ray": False, "pipelines_dir": str(REPO / "pipelines"),
                                        "models_dir": str(REPO / "models"), "in_flight": 1, "poll_s": 0.05,
                                        "default": {"threads": 2}})
    services = build_services(settings)
    accounts.add_user(services.db, "reader1", "radiologist", PASSWORD)
    runtime = Runtime(services)
    runtime.start()
    client = TestClient(create_app(services, runtime))
    client.__enter__()
    token = {"Authorization": f"Bearer {accounts.issue_token(services.db, 'reader1')}"}
    sent: list[int] = [0]

    def send(studies: list[list[Path]]) -> None:
        files = [p for s in studies for p in s]
        r = storescu(runtime.scp.port, files, "CT_ED_1", "RADTRIAGE", timeout=300)
        assert r.returncode == 0, r.stderr[-2000:]
        sent[0] += len(studies)
        wait_jobs_final(services.db, sent[0], timeout=600)

    def judged(n: int) -> None:
        """Wait until the monitor has evaluated a window of ``n`` results (or the pipeline left live use)."""
        gauge = services.metrics.registry.get_sample_value
        assert wait_until(lambda: gauge("radtriage_monitor_window_results", {"pipeline": "stroke_ich"}) == n
                          or gauge("radtriage_monitor_level", {"pipeline": "stroke_ich"}) == 2, 60)

    try:
        yield {"db": services.db, "send": send, "judged": judged, "registry": services.metrics.registry,
               "banner": lambda: client.get("/api/v1/worklist", headers=token).json()["monitor"]}
    finally:
        client.__exit__(None, None, None)
        runtime.stop()
        services.close()


def monitor_messages(hook, event: str) -> list:  # noqa: F811 - fixtures
    return [r for r in hook.taken.values() if r.event == event]


def test_a_site_shift_warns_the_admins_then_demotes_the_pipeline_and_pages_the_admin_on_call(
        site, heads, hook, smtp, tmp_path):  # noqa: F811 - fixtures
    db = site["db"]
    before = [copies(heads["normal"][i % 4], tmp_path / f"a{i}") for i in range(32)]
    before += [copies(heads["bleed"][0], tmp_path / f"b{i}") for i in range(3)]
    site["send"](before)
    site["judged"](35)
    ich = [r for r in ledger.result_rows(db) if r["pipeline_id"] == "stroke_ich"]
    assert len(ich) == 35 and sum(r["positive"] for r in ich) == 3, "the reference model's calls changed"
    assert audit.entries(db, action="monitor_warning")[0] == 0 and site["banner"]() == []
    assert not monitor_messages(hook, "monitor.warning")

    # the shift: the normal heads come 14 HU higher; the model flags them
    site["send"]([copies(heads["normal"][i % 4], tmp_path / f"s{i}", SHIFT_HU) for i in range(18)])
    site["judged"](53)
    [warning] = audit.entries(db, action="monitor_warning")[1]
    assert warning["actor"] == "monitor" and warning["role"] == "system"
    assert "positive_rate" in warning["detail"]["signals"] and warning["detail"]["told"] == ["ada", "bo"]
    # the worker evaluates as results come: it warned once the rate was out of range beyond chance (at 51 of
    # 53 results when it evaluated after each), whichever result it had reached
    [said] = [s for s in warning["detail"]["said"] if s.startswith("positive rate")]
    assert re.fullmatch(r"positive rate (3[7-9]|40)% of the last 5[1-3] results \(expected 3%-25%\)", said), said
    got = hook.wait_for(2 + 21, 30)  # 21 stroke pages, one warning to each admin
    warned = sorted(monitor_messages(hook, "monitor.warning"), key=lambda r: r.payload["recipient"])
    assert [w.payload["recipient"] for w in warned] == ["Ada Admin", "Bo Admin"] and len(got) >= 23
    assert said in warned[0].payload["signals"] and warned[0].payload["pipeline"] == "stroke_ich"
    mail = smtp.wait_for(1)[0]
    assert mail["To"] == "admin@example.org" and mail["Subject"] == "radtriage monitor: stroke_ich warning"
    [banner] = site["banner"]()
    assert banner["level"] == "warning" and said in banner["text"]
    assert decisions_db.decisions(db, "stroke_ich") == []  # warned, still live

    site["send"]([copies(heads["normal"][i % 4], tmp_path / f"t{i}", SHIFT_HU) for i in range(6)])
    site["judged"](59)
    # the monitor's own entry comes after the decision, its re-triage and the withdrawal of the alerts
    assert wait_until(lambda: audit.entries(db, action="monitor_demoted")[0], 30)
    [decision] = decisions_db.decisions(db, "stroke_ich")
    hard = "positive rate 46% of the last 59 results, at or above the hard limit 45% (expected 3%-25%)"
    assert (decision["action"], decision["state"], decision["decided_by"]) == ("demote", "shadow", "monitor")
    assert decision["reason"] == f"model monitor: {hard}"
    [demoted] = audit.entries(db, action="model_demoted")[1]
    assert (demoted["actor"], demoted["role"]) == ("monitor", "system")
    withdrawn = audit.entries(db, action="alert_withdrawn", limit=500)[1]
    assert withdrawn and {w["actor"] for w in withdrawn} == {"monitor"}
    [paged] = hook.wait_for(1, 30, event="monitor.demoted")
    assert paged.payload["recipient"] == "Ada Admin" and paged.payload["signals"][0] == hard
    assert wait_until(lambda: any(m["Subject"] == "radtriage monitor: stroke_ich DEMOTED to shadow"
                                  for m in smtp.messages), 20)
    time.sleep(0.5)
    assert [r.payload["recipient"] for r in monitor_messages(hook, "monitor.demoted")] == ["Ada Admin"]
    assert hook.wait_for(1, 30, event="alert.withdrawn")  # the stroke physician already paged is told
    [banner] = site["banner"]()
    assert banner["level"] == "demoted" and hard in banner["text"]
    assert site["registry"].get_sample_value("radtriage_monitor_level", {"pipeline": "stroke_ich"}) == 2

    pages = len(monitor_messages(hook, "alert.page"))
    site["send"]([copies(heads["normal"][0], tmp_path / "u0", SHIFT_HU)])
    last = max(ledger.result_rows(db), key=lambda r: r["id"])
    assert last["positive"] and last["state"] == "shadow"  # still flagged, but in shadow: nobody paged
    time.sleep(0.5)
    assert len(monitor_messages(hook, "alert.page")) == pages
