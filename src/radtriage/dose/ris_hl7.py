"""The RIS's pregnancy status as an HL7 v2 message (ER7), parsed with hl7apy: an order (ORM^O01) or a patient
update (ADT^A08) with an OBX whose identifier is LOINC 82810-3 "Pregnancy status" (or the older 11449-6).

- the status: OBX-5's code, a LOINC answer: LA15173-0 Pregnant, LA26683-5 Not pregnant, LA4489-6 Unknown;
- when: OBX-14 (date/time of the observation), else MSH-7; either must carry its UTC offset (+0800);
- the order: OBR-18 (Placer Field 1: the accession number, as IHE Scheduled Workflow maps it), ORM only;
- the patient: PID-3's first identifier, its assigning authority (PID-3.4) as the issuer;
- the source: MSH-3 (the sending application).

`fields_of` gives the fields of `radtriage.dose.ris.RisPregnancy` (validated there like the JSON form).
"""

from __future__ import annotations

import datetime as dt
import re
from typing import Any

from hl7apy.consts import VALIDATION_LEVEL
from hl7apy.exceptions import HL7apyException
from hl7apy.parser import parse_message

MESSAGES = ("ORM^O01", "ADT^A08")
PREGNANCY_CODES = frozenset({"82810-3", "11449-6"})  # LOINC: Pregnancy status
ANSWERS = {"LA15173-0": "pregnant", "LA26683-5": "not_pregnant", "LA4489-6": "unknown"}
_TS = re.compile(r"^(\d{12})(\d{2})?(?:\.\d{1,4})?([+-]\d{4})$")  # YYYYMMDDHHMM[SS][.S][+-ZZZZ]


class Hl7StatusError(ValueError):
    """Not a pregnancy status this reader takes; the message says which field, never a value."""


def _when(ts: str, field: str) -> dt.datetime:
    m = _TS.match(ts)
    if m is None:
        raise Hl7StatusError(f"{field}: a date and time to the minute with its UTC offset (YYYYMMDDHHMM[SS]+ZZZZ)")
    offset = dt.datetime.strptime(m.group(3), "%z").tzinfo
    try:
        return dt.datetime.strptime(m.group(1) + (m.group(2) or "00"), "%Y%m%d%H%M%S").replace(tzinfo=offset)
    except ValueError:
        raise Hl7StatusError(f"{field}: not a valid date and time") from None


def _segments(er7: str) -> tuple[Any, str, str]:
    """The message's segments (hl7apy, tolerant, flat), its component and subcomponent separators."""
    text = re.sub(r"\r\n|\n", "\r", er7.strip())
    try:
        msg = parse_message(text, find_groups=False, validation_level=VALIDATION_LEVEL.TOLERANT)
    except (HL7apyException, ValueError, IndexError, KeyError) as exc:
        raise Hl7StatusError(f"not an HL7 v2 message ({type(exc).__name__})") from None
    chars = msg.encoding_chars
    return msg, chars["COMPONENT"], chars["SUBCOMPONENT"]


def _field(segment: Any, name: str) -> str:
    value = getattr(segment, name)
    return (value[0] if isinstance(value, list) else value).to_er7() if value else ""


def fields_of(er7: str) -> dict[str, Any]:
    """The `RisPregnancy` fields of one ORM^O01 or ADT^A08 message; `Hl7StatusError` names what is missing."""
    msg, comp, sub = _segments(er7)
    kind = "^".join(_field(msg.msh, "msh_9").split(comp)[:2])
    if kind not in MESSAGES:
        raise Hl7StatusError(f"MSH-9: one of {', '.join(MESSAGES)}")
    segments = {name: [s for s in msg.children if s.name == name] for name in ("PID", "OBR", "OBX")}
    obx = next((s for s in segments["OBX"] if _field(s, "obx_3").split(comp)[0] in PREGNANCY_CODES), None)
    if obx is None:
        raise Hl7StatusError("no OBX with OBX-3 LOINC 82810-3 (Pregnancy status)")
    answer = _field(obx, "obx_5").split(comp)[0]
    if answer not in ANSWERS:
        raise Hl7StatusError(f"OBX-5: one of the LOINC answers {', '.join(ANSWERS)}")
    when = _field(obx, "obx_14")
    recorded = _when(when, "OBX-14") if when else _when(_field(msg.msh, "msh_7"), "MSH-7")
    patient_id = issuer = None
    if segments["PID"]:
        cx = _field(segments["PID"][0], "pid_3").split(comp)
        patient_id = cx[0] or None
        issuer = next((x for x in cx[3].split(sub) if x), None) if len(cx) > 3 else None
    accession = None
    if kind == "ORM^O01" and segments["OBR"]:
        accession = _field(segments["OBR"][0], "obr_18").split(comp)[0] or None
    return {"accession_number": accession, "patient_id": patient_id, "issuer_of_patient_id": issuer,
            "status": ANSWERS[answer], "recorded_at": recorded, "source": _field(msg.msh, "msh_3").split(comp)[0]}
