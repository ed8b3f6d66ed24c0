"""HL7 v2 pregnancy statuses (ER7 written by hand): an ORM^O01 with its accession in OBR-18 and an ADT^A08 for
the patient alone, read to the fields of the JSON form; what is missing or not understood is named."""

from __future__ import annotations

import datetime as dt

import pytest

from radtriage.dose.ris import RisPregnancy
from radtriage.dose.ris_hl7 import Hl7StatusError, fields_of

MSH = "MSH|^~\\&|RIS-A|HOSP|RADTRIAGE|HOSP|20261208091200+0800||{kind}|MSG0001|P|2.5.1"
PID = "PID|1||P042^^^HOSP^MR||DOE^JANE||19950101|F"
OBR = "OBR|1|PL1|FL1|CTAP^CT ABDOMEN PELVIS||||||||||||||A1234567"
OBX = "OBX|1|CWE|82810-3^Pregnancy status^LN||{answer}||||||F|||{when}"


def orm(answer: str = "LA15173-0^Pregnant^LN", when: str = "20261208091000+0800", obr: str = OBR) -> str:
    return "\r".join([MSH.format(kind="ORM^O01^ORM_O01"), PID, "ORC|NW|PL1|FL1", obr, OBX.format(answer=answer, when=when)])


def test_an_order_with_its_accession():
    got = fields_of(orm())
    assert got == {"accession_number": "A1234567", "patient_id": "P042", "issuer_of_patient_id": "HOSP",
                   "status": "pregnant", "source": "RIS-A",
                   "recorded_at": dt.datetime(2026, 12, 8, 1, 10, tzinfo=dt.UTC)}
    assert RisPregnancy.model_validate(got).status == "pregnant"


def test_a_patient_update_with_newlines_and_an_oid_issuer():
    adt = "\n".join([MSH.format(kind="ADT^A08").replace("2.5.1", "2.3.1"), "EVN|A08|20261208091200",
                     "PID|1||P042^^^&1.2.3.4&ISO^MR||DOE^JANE", "PV1|1|O",
                     "OBX|1|CE|11449-6^Pregnancy status^LN||LA26683-5^Not pregnant^LN||||||F"])
    got = fields_of(adt)
    assert (got["accession_number"], got["issuer_of_patient_id"], got["status"]) == (None, "1.2.3.4", "not_pregnant")
    assert got["recorded_at"] == dt.datetime(2026, 12, 8, 1, 12, tzinfo=dt.UTC)  # MSH-7: no OBX-14


@pytest.mark.parametrize("text,field", [
    ("hello", "not an HL7 v2 message"),
    (orm().replace("ORM^O01^ORM_O01", "ORU^R01^ORU_R01"), "MSH-9"),
    (orm().replace("82810-3", "8302-2"), "OBX-3"),  # body height, not a pregnancy status
    (orm(answer="Y"), "OBX-5"),
    (orm(when="202612080910"), "OBX-14"),  # no UTC offset
    (orm(when="20261308091000+0800"), "OBX-14"),  # month 13
])
def test_what_is_not_understood_is_named(text, field):
    with pytest.raises(Hl7StatusError, match=field) as err:
        fields_of(text)
    assert "P042" not in str(err.value) and "A1234567" not in str(err.value)
