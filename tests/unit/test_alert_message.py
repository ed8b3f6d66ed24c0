"""What an alert says, and how much of the patient it shows."""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

import pytest

from radtriage.alerts.config import Privacy, parse_alerting
from radtriage.alerts.message import build_content, compose, initials, mask, patient_line, scan_time
from radtriage.domain.case import Finding, TaskResult, TriageCase

HK = ZoneInfo("Asia/Hong_Kong")
STUDY = {"patient_id": "A1234567", "patient_name": "CHAN^TAI MAN", "patient_sex": "M", "accession_number": "ACC991"}
HEADER = {"PatientAge": "067Y", "PatientSex": "M", "StationName": "CT-ED-1", "InstitutionName": "Harbour General",
          "SeriesDate": "20261102", "SeriesTime": "093015.123", "Manufacturer": "GE", "ManufacturerModelName": "Revolution"}


def test_initials_and_masks():
    assert initials("CHAN^TAI MAN") == "T.C." and initials("MADONNA") == "M." and initials("") is None
    assert mask("A1234567", 3) == "*****567" and mask("12", 3) == "**" and mask(None, 3) is None


@pytest.mark.parametrize("mode, expected", [
    ("none", None),
    ("masked", "T.C., ID *****567, M 067Y"),
    ("full", "CHAN TAI MAN, ID A1234567, M 067Y"),
])
def test_patient_shown_as_configured(mode, expected):
    assert patient_line(STUDY, HEADER, Privacy(patient=mode)) == expected


def test_scan_time_is_the_scanner_local_time():
    assert scan_time(HEADER, HK) == dt.datetime(2026, 11, 2, 1, 30, 15, tzinfo=dt.UTC)
    assert scan_time({"StudyDate": "20261102", "StudyTime": "0930"}, HK) == dt.datetime(2026, 11, 2, 1, 30, tzinfo=dt.UTC)
    assert scan_time({"StudyDate": "2026", "StudyTime": "x"}, HK) is None


def lvo_content(privacy: str = "masked"):
    config = parse_alerting({"privacy": {"patient": privacy}, "links": {"base_url": "https://rt.example/"}})
    case = TriageCase(case_id="c", study_uid="1.2.3", series_uid="1.2.3.4", accession="ACC991", calling_ae="CTA_1",
                      received_at=dt.datetime(2026, 11, 2, 1, 40, tzinfo=dt.UTC), header=HEADER,
                      instances_uri="x", instance_count=200)
    result = TaskResult(task="lvo", model_id="lvo-densenet2d", model_version="1.2.0", pipeline_version="1.0.0",
                        positive=True, labels={"side": "left", "segment": "m1"},
                        findings=(Finding(code="lvo", text="LVO - left M1", probability=0.91),))
    return build_content(config, "stroke", case, "stroke_lvo", result, result.findings[0], "STAT", STUDY)


def test_content_says_what_where_when_and_for_whom():
    c = lvo_content()
    assert (c.finding_text, c.detail, c.probability) == ("LVO - left M1", "left, m1", 0.91)
    assert (c.station, c.institution, c.calling_ae, c.scanner) == ("CT-ED-1", "Harbour General", "CTA_1", "GE Revolution")
    assert c.patient == "T.C., ID *****567, M 067Y" and c.accession == "***991"
    assert c.study_url == "https://rt.example/studies/1.2.3"
    assert lvo_content("none").accession is None and lvo_content("full").accession == "ACC991"


def test_compose_a_page_and_a_taken_notice():
    c = lvo_content()
    now = dt.datetime(2026, 11, 2, 1, 42, tzinfo=dt.UTC)
    out = compose(c, alert_id=7, key="rt-alert-7-page-l1-chan-email", event="alert.page", level=0,
                  recipient="Dr Chan", now=now, zone=HK, ack_url="https://rt.example/alerts/ack/t",
                  ack_expires=now + dt.timedelta(hours=2))
    assert out.subject == "[STAT] LVO - left M1 - CT-ED-1"
    assert "LVO - left M1 (AI probability 91%)" in out.text and "Scan: 2026-11-02 09:30 (11 min ago)" in out.text
    assert "Where: Harbour General / CT-ED-1 / AE CTA_1" in out.text and "Patient: T.C., ID *****567" in out.text
    assert "I'm taking it: https://rt.example/alerts/ack/t (link valid until 11:42)" in out.text
    assert "AI results are an aid, not a diagnosis." in out.text
    assert out.payload["minutes_since_scan"] == 11 and out.payload["level"] == 1
    taken = compose(c, alert_id=7, key="k2", event="alert.taken", level=0, recipient="Dr Lee", now=now, zone=HK,
                    ack_url=None, ack_expires=None, taken_by="Dr Chan")
    assert taken.subject.startswith("[STAT] taken by Dr Chan") and "I'm taking it" not in taken.text
