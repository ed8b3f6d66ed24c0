"""The RIS's pregnancy status: validated strictly (who, which status, when, sizes and characters), kept with
the patient as a one-way key only, and judged: pregnant per the RIS flags an abdomen or pelvis at once with
its source; the RIS's not pregnant or unknown never clears a header's Pregnancy Status 2."""

from __future__ import annotations

import datetime as dt

import pytest
from pydantic import ValidationError

from radtriage.db.dose import key_of
from radtriage.dose.judge import examination_of, judge, with_ris_status
from radtriage.dose.ris import RisPregnancy
from tests.unit.test_dose_judge import _ct, site  # noqa: F401 - fixture

NOW = dt.datetime.now(dt.UTC)
GOOD = {"accession_number": "ACC123", "status": "pregnant", "recorded_at": (NOW - dt.timedelta(hours=1)).isoformat(),
        "source": "RIS-A"}


def test_a_good_status_and_its_row():
    got = RisPregnancy.model_validate({**GOOD, "patient_id": "P42", "issuer_of_patient_id": "HOSP"})
    row = got.row("ris-engine", NOW)
    assert row["patient_key"] == key_of("HOSP", "P42") and "P42" not in str(row)
    assert row["recorded_at"].tzinfo == dt.UTC and row["status"] == "pregnant"
    by_patient = RisPregnancy.model_validate({**GOOD, "accession_number": None, "patient_id": "P42"})
    assert by_patient.row("x", NOW)["accession_number"] is None


@pytest.mark.parametrize("change", [
    {"status": "maybe"},                                   # not one of the three
    {"status": "2"},                                       # DICOM's code is not the API's word
    {"accession_number": "A" * 17},                        # SH: 16 characters at most
    {"accession_number": "AC\\C"},                         # no backslash (DICOM's delimiter)
    {"accession_number": "   "},                           # blank
    {"accession_number": None},                            # nobody named
    {"accession_number": "ACC\n1"},                        # control characters
    {"patient_id": "P" * 65},                              # LO: 64 at most
    {"issuer_of_patient_id": "HOSP"},                      # issuer without an ID
    {"recorded_at": "2026-12-07T10:00:00"},                # no UTC offset
    {"recorded_at": (NOW + dt.timedelta(days=1)).isoformat()},  # the future
    {"source": ""},
    {"source": "S" * 65},
    {"comment": "extra field"},
])
def test_bad_statuses_are_refused(change):
    with pytest.raises(ValidationError):
        RisPregnancy.model_validate({**GOOD, **change})


def test_pregnant_per_the_ris_is_urgent_and_says_so(site):  # noqa: F811
    config, drl = site
    pelvis = examination_of([_ct(32, 5.0, 200.0, protocol="ABDOMEN PELVIS", region="Abdomen and Pelvis")], config, drl)
    assert judge(pelvis, config, drl) == []  # nothing in the header
    (flag,) = judge(with_ris_status(pelvis, "pregnant"), config, drl)
    assert flag.reason == "pregnant_abdomen_pelvis" and flag.urgent and "per the RIS" in flag.detail
    assert judge(with_ris_status(pelvis, "not_pregnant"), config, drl) == []
    assert judge(with_ris_status(pelvis, "unknown"), config, drl) == []
    head = examination_of([_ct(16, 40.0, 600.0)], config, drl)
    assert judge(with_ris_status(head, "pregnant"), config, drl) == []  # no abdomen or pelvis exposed


def test_the_ris_never_clears_the_header(site):  # noqa: F811
    config, drl = site
    pelvis = examination_of([_ct(32, 5.0, 200.0, pregnant=True, protocol="ABDOMEN PELVIS",
                                 region="Abdomen and Pelvis")], config, drl)
    (flag,) = judge(with_ris_status(pelvis, "not_pregnant"), config, drl)
    assert "image header (Pregnancy Status 2)" in flag.detail and "RIS" not in flag.detail
    (both,) = judge(with_ris_status(pelvis, "pregnant"), config, drl)
    assert "image header (Pregnancy Status 2) and the RIS" in both.detail
