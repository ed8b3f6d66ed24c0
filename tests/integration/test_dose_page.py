"""The Dose page (``/admin/dose``): a registry loaded with synthetic examinations (judged by the shipped
configs/dose.yaml against the EXAMPLE DRL set) shown to a physicist with the DRL line, the flagged examination
with its reason in words and its accession masked, never the patient's name or ID; filters narrow it; an empty
period says so; other roles get 403, no session the login page; every viewing is audited."""

from __future__ import annotations

import datetime as dt
import html as html_lib
import re
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from radtriage.db import audit
from radtriage.db.clock import utcnow
from radtriage.db.tables import studies
from radtriage.dose.model import DoseEvent, DoseReport, PatientDose
from radtriage.dose.registry import load_registry
from tests.integration.test_dose_api import dose_api  # noqa: F401 - fixture
from tests.integration.test_worklist_api import api  # noqa: F401 - fixture

ROOT = Path(__file__).parents[2]
NAME, PATIENT_ID = "DOSEPAGE^JANE", "PID-7788991"
# (facility, scanner station, CT head CTDIvol mGy): A CT1 all below the example's 60 mGy; B CT1 one at 130 mGy
HEADS = [("A", "A CT1", v) for v in (40.0, 45.0, 50.0, 55.0, 58.0)] + [("B", "B CT1", v) for v in (30.0, 35.0, 130.0)]
FLAGGED_ACCESSION = "ACC0000107"  # the 130 mGy one: shown as *******107


def seed_registry(db, start: dt.datetime) -> list[str]:
    """Studies (with a patient name, ID and accession) and their RDSR-read reports on consecutive days from
    ``start``, judged by the shipped dose file; the study UIDs."""
    registry = load_registry(db, ROOT / "configs" / "dose.yaml")
    reports, uids = [], []
    with db.write() as conn:
        for i, (facility, station, ctdi) in enumerate(HEADS):
            uid = f"1.2.826.0.1.3680043.10.999.{i}"
            uids.append(uid)
            conn.execute(studies.insert().values(study_uid=uid, accession_number=f"ACC{i + 100:07d}",
                                                 patient_id=f"{PATIENT_ID}{i}", patient_name=NAME, created_at=utcnow()))
            ev = DoseEvent(kind="ct", protocol="ROUTINE HEAD", target_region="Head", phantom_cm=16, ctdivol=ctdi,
                           dlp=ctdi * 15)
            reports.append(DoseReport(
                study_uid=uid, series_uid=uid + ".1", sop_instance_uid=uid + ".1.1", modality="CT", source="rdsr",
                estimated=False, events=(ev,), dlp_total=ctdi * 15, patient=PatientDose(age_years=40 + i),
                facility=facility, station=station, performed_at=start + dt.timedelta(days=i, hours=10),
                protocol="ROUTINE HEAD"))
    registry.add_reports(reports)
    return uids


def _svgs(html: str) -> list[ET.Element]:
    out, rest = [], html
    while "<svg" in rest:
        rest = rest[rest.index("<svg"):]
        end = rest.index("</svg>") + len("</svg>")
        out.append(ET.fromstring(rest[:end]))
        rest = rest[end:]
    return out


@pytest.mark.parametrize("role,status", [("physicist", 200), ("admin", 200), ("radiologist", 403), ("stroke", 403),
                                         ("service", 403)])
def test_who_may_see_the_dose_page(dose_api, role, status):  # noqa: F811
    assert dose_api.get("/admin/dose", headers=dose_api.as_[role]).status_code == status


def test_no_session_goes_to_the_login(dose_api):  # noqa: F811
    r = dose_api.get("/admin/dose", follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == "/login"


def test_page_shows_the_drl_the_flag_and_no_patient(dose_api):  # noqa: F811
    api, who = dose_api, dose_api.as_["physicist"]
    uids = seed_registry(api.services.db, dt.datetime(2026, 11, 1, tzinfo=dt.UTC))
    r = api.get("/admin/dose", params={"since": "2026-11-01", "until": "2026-11-30"}, headers=who)
    assert r.status_code == 200
    html = r.text
    assert "EXAMPLE - not a published DRL v1" in html
    assert "DRL 60 mGy" in html and "DRL 1000 mGy·cm" in html  # CTDIvol and DLP panels, each with its level
    assert "130 mGy (16 cm phantom) is 2.17 x the DRL 60 mGy" in html  # the reason, in words
    assert "*******107" in html and FLAGGED_ACCESSION not in html
    assert NAME.split("^")[0] not in html and PATIENT_ID not in html and "JANE" not in html
    links = [html_lib.unescape(h) for h in re.findall(r'href="(/api/v1/dose/[^"]+)"', html)]
    assert len(links) == 4  # the examinations and the local DRL table, each as CSV and XLSX
    for link in links:  # each export follows the page's period and filters
        got = api.get(link, headers=who)
        assert got.status_code == 200 and "attachment" in got.headers["content-disposition"], link
    exported = api.get(links[0], headers=who).text.splitlines()
    assert len(exported) == 2 + 8 and all(",CT head," in line for line in exported[2:])
    charts = _svgs(html)
    boxes = [c for c in charts if "box-chart" in c.get("class", "")]
    assert len(boxes) == 2  # CT head adult 16 cm: CTDIvol and DLP
    ns = "{http://www.w3.org/2000/svg}"
    drl_lines = [e for e in boxes[0].iter(f"{ns}line") if e.get("class") == "drl"]
    assert len(drl_lines) == 1
    assert [e.text for e in boxes[0].iter(f"{ns}text") if e.get("class") == "axis-label"] == [
        "scanner (n examinations)", "CTDIvol (mGy), 16 cm phantom"]
    ticks = [e.text for e in boxes[0].iter(f"{ns}text") if e.get("class") == "tick"]
    assert "A CT1 (n=5)" in ticks and "B CT1 (n=3)" in ticks
    # the site's median (8 values: 30 35 40 45 50 55 58 130 -> 47.5) against the DRL: 0.79
    assert "47.5 mGy" in html and "0.79" in html
    _, logged = audit.entries(api.services.db, action="dose_page_viewed")
    assert logged[0]["actor"] == "physicist1" and logged[0]["detail"]["exams"] == 8
    assert logged[0]["detail"]["studies"] == [uids[7]]

    only_a = api.get("/admin/dose", params={"since": "2026-11-01", "until": "2026-11-30", "scanner": "A CT1"},
                     headers=who).text
    assert "8 examination(s)" not in only_a and "5 examination(s)" in only_a
    assert "No examination flagged under these filters." in only_a
    csv_a = html_lib.unescape(re.search(r'href="(/api/v1/dose/exams[^"]+format=csv)"', only_a).group(1))
    assert len(api.get(csv_a, headers=who).text.splitlines()) == 2 + 5


def test_empty_period_and_bad_dates(dose_api):  # noqa: F811
    api, who = dose_api, dose_api.as_["physicist"]
    seed_registry(api.services.db, dt.datetime(2026, 11, 1, tzinfo=dt.UTC))
    html = api.get("/admin/dose", params={"since": "2025-01-01", "until": "2025-01-31"}, headers=who).text
    assert "No examinations in the dose registry match these filters" in html and "<svg" not in html
    assert api.get("/admin/dose", params={"since": "last week"}, headers=who).status_code == 400
    assert api.get("/admin/dose", params={"since": "2026-02-01", "until": "2026-01-01"}, headers=who).status_code == 400


def test_another_drl_set_is_drawn_when_chosen(dose_api):  # noqa: F811
    import yaml

    from radtriage.db import dose as rows

    api, who = dose_api, dose_api.as_["physicist"]
    seed_registry(api.services.db, dt.datetime(2026, 11, 1, tzinfo=dt.UTC))
    doc = yaml.safe_load((ROOT / "drl" / "example.yaml").read_text())
    doc.update(name="EXAMPLE - other set", version="2")
    for level in doc["levels"]:
        if (level["examination"], level["band"], level["quantity"]) == ("CT head", "adult", "CTDIvol"):
            level["value"] = 50
    with api.services.db.write() as conn:
        rows.import_set(conn, doc["name"], doc["version"], "0" * 64, doc, "test", utcnow())
    params = {"since": "2026-11-01", "until": "2026-11-30"}
    html = api.get("/admin/dose", params={**params, "drl": "EXAMPLE - other set v2"}, headers=who).text
    assert ">DRL 50 mGy</text>" in html and ">DRL 60 mGy</text>" not in html and "0.95" in html  # median 47.5 / 50
    assert "is 2.17 x the DRL 60 mGy (EXAMPLE - not a published DRL v1)" in html  # flags: as the registry judged
    # an unknown set falls back to the one that judged the examinations
    assert ">DRL 60 mGy</text>" in api.get("/admin/dose", params={**params, "drl": "no such set"}, headers=who).text


def test_a_radiograph_dap_panel_in_gy_cm2(dose_api):  # noqa: F811
    api, who = dose_api, dose_api.as_["physicist"]
    registry = load_registry(api.services.db, ROOT / "configs" / "dose.yaml")
    registry.add_reports([DoseReport(
        study_uid=f"1.2.826.0.1.3680043.10.997.{i}", series_uid=f"1.2.826.0.1.3680043.10.997.{i}.1",
        sop_instance_uid=f"1.2.826.0.1.3680043.10.997.{i}.1.1", modality="DX", source="header", estimated=False,
        events=(DoseEvent(kind="projection", dap=dap),), dap_total=dap, patient=PatientDose(age_years=60),
        facility="A", station="A DX1", performed_at=dt.datetime(2026, 11, 2 + i, 9, tzinfo=dt.UTC),
        protocol="CHEST PA") for i, dap in enumerate((0.05, 0.08, 0.2))])
    html = api.get("/admin/dose", params={"since": "2026-11-01", "until": "2026-11-30"}, headers=who).text
    (box,) = [c for c in _svgs(html) if "box-chart" in c.get("class", "")]
    ns = "{http://www.w3.org/2000/svg}"
    assert "DAP (Gy·cm²)" in [e.text for e in box.iter(f"{ns}text") if e.get("class") == "axis-label"]
    assert [e.text for e in box.iter(f"{ns}text") if e.get("class") == "drl-label"] == ["DRL 0.1 Gy·cm²"]
    assert "XR chest PA, adult: DAP" in html and "is 2.00 x the DRL 0.1 Gy.cm2" in html
