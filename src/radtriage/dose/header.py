"""Dose from image headers: CT estimates (CTDIvol (0018,9345), kVp, mA, exposure, the series' scan
length) and radiography values (DAP (0018,115E), entrance dose, EI / target / DI (0018,1411-1413));
and the patient and device fields every `DoseReport` carries, read from any header (an RDSR's too).

A CT report from headers is ``estimated``: DLP is CTDIvol times the reconstructed length, and the phantom
is the CTDI Phantom Type (0018,9346) where written, else assumed from the body part for a head (16 cm) or
an adult body (32 cm), and unknown (never compared) for a child's body.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Sequence
from typing import Any

from pydicom.dataset import Dataset

from radtriage.dose.model import DoseEvent, DoseReport, PatientDose, to_unit
from radtriage.rules import parse_age

HEAD_PARTS = ("HEAD", "BRAIN", "SKULL", "IAC", "ORBIT", "SINUS")
ADULT_YEARS = 18.0
PHANTOM_CODES = {"113690": 16, "113691": 32}  # IEC Head / IEC Body Dosimetry Phantom


def number(ds: Dataset, keyword: str) -> float | None:
    """A finite number from ``keyword``'s first value, or None."""
    try:
        value = ds.get(keyword)
    except Exception:  # noqa: BLE001 - a malformed optional value counts as absent
        return None
    if value is None or value == "":
        return None
    if isinstance(value, (list, tuple)) or hasattr(value, "__getitem__") and not isinstance(value, str):
        try:
            value = value[0]
        except (IndexError, TypeError):
            return None
    try:
        x = float(value)
    except (TypeError, ValueError):
        return None
    return x if math.isfinite(x) else None


def text(ds: Dataset, keyword: str, limit: int = 64) -> str | None:
    try:
        value = ds.get(keyword)
    except Exception:  # noqa: BLE001
        return None
    if value is None or value == "":
        return None
    out = " ".join(str(value).replace("\\", " ").split())
    return out[:limit] or None


def _date_time(ds: Dataset) -> dt.datetime | None:
    for d_kw, t_kw in (("AcquisitionDate", "AcquisitionTime"), ("SeriesDate", "SeriesTime"),
                       ("StudyDate", "StudyTime")):
        d, t = text(ds, d_kw, 8), (text(ds, t_kw, 16) or "000000").split(".")[0].ljust(6, "0")
        if d:
            try:
                return dt.datetime.strptime(d + t[:6], "%Y%m%d%H%M%S").replace(tzinfo=dt.UTC)
            except ValueError:
                continue
    return None


def _age(ds: Dataset, when: dt.datetime | None) -> float | None:
    age = parse_age(text(ds, "PatientAge", 8))
    if age is not None:
        return age
    birth = text(ds, "PatientBirthDate", 8)
    if birth and when is not None:
        try:
            born = dt.datetime.strptime(birth, "%Y%m%d").date()
        except ValueError:
            return None
        days = (when.date() - born).days
        return days / 365.25 if days >= 0 else None
    return None


def patient_of(ds: Dataset, when: dt.datetime | None = None) -> PatientDose:
    """Age (Patient's Age, else birth date to the examination), weight, sex and pregnancy from a header."""
    weight = number(ds, "PatientWeight")
    sex = (text(ds, "PatientSex", 16) or "").upper()[:1] or None
    return PatientDose(age_years=_age(ds, when or _date_time(ds)), weight_kg=weight if weight and weight > 0 else None,
                       sex=sex if sex in ("M", "F", "O") else None, pregnant=number(ds, "PregnancyStatus") == 2)


def common_fields(ds: Dataset) -> dict[str, Any]:
    """The fields of a `DoseReport` any header gives: identifiers, patient, device, descriptions, time."""
    when = _date_time(ds)
    return dict(study_uid=str(ds.StudyInstanceUID), series_uid=str(ds.SeriesInstanceUID),
                sop_instance_uid=str(ds.SOPInstanceUID), patient=patient_of(ds, when), performed_at=when,
                facility=text(ds, "InstitutionName"), station=text(ds, "StationName", 16),
                manufacturer=text(ds, "Manufacturer"), model=text(ds, "ManufacturerModelName"),
                device_serial=text(ds, "DeviceSerialNumber"), protocol=text(ds, "ProtocolName"),
                study_description=text(ds, "StudyDescription"), body_part=text(ds, "BodyPartExamined", 16))


def header_phantom(ds: Dataset, patient: PatientDose) -> int | None:
    """16 or 32 (cm) from CTDI Phantom Type Code Sequence, else assumed from the body part; None if unknown."""
    seq = ds.get("CTDIPhantomTypeCodeSequence")
    if seq:
        return PHANTOM_CODES.get(str(seq[0].get("CodeValue", "")))
    part = (text(ds, "BodyPartExamined", 16) or "").upper()
    if any(p in part for p in HEAD_PARTS):
        return 16
    if patient.age_years is not None and patient.age_years >= ADULT_YEARS:
        return 32
    return None


def _z(ds: Dataset) -> float | None:
    try:
        return float(ds.ImagePositionPatient[2])
    except (AttributeError, IndexError, TypeError, ValueError):
        return number(ds, "SliceLocation")


def ct_estimate(headers: Sequence[Dataset]) -> DoseReport | None:
    """The estimated dose of one CT image series from its instances' headers (no pixels); None without
    CTDIvol. Scan length: the span of slice positions plus one slice thickness."""
    images = [h for h in headers if "LOCALIZER" not in str(h.get("ImageType", "")).upper()]
    first = next((h for h in images if number(h, "CTDIvol") is not None), None)
    if first is None:
        return None
    ctdi = max(number(h, "CTDIvol") or 0.0 for h in images)
    zs = [z for z in (_z(h) for h in images) if z is not None]
    thick = number(first, "SliceThickness") or 0.0
    length_mm = (max(zs) - min(zs) + thick) if zs else None
    fields = common_fields(first)
    event = DoseEvent(
        kind="ct", protocol=fields["protocol"] or text(first, "SeriesDescription"), target_region=fields["body_part"],
        phantom_cm=header_phantom(first, fields["patient"]), ctdivol=ctdi,
        dlp=ctdi * length_mm / 10.0 if length_mm is not None else None, scan_length_mm=length_mm,
        kvp=number(first, "KVP"), tube_current_ma=number(first, "XRayTubeCurrent"), exposure_mas=number(first, "Exposure"))
    return DoseReport(modality="CT", source="header", estimated=True, events=(event,), dlp_total=event.dlp, **fields)


def projection_values(headers: Sequence[Dataset]) -> DoseReport | None:
    """The dose of one radiography series (CR, DX) from its headers, one event per image; None when no image
    gives DAP, entrance dose or an exposure index. DAP (0018,115E) is written in dGy.cm2."""
    events = []
    for h in headers:
        dap = number(h, "ImageAndFluoroscopyAreaDoseProduct")
        ev = DoseEvent(
            kind="projection", protocol=text(h, "ProtocolName") or text(h, "SeriesDescription"),
            target_region=text(h, "BodyPartExamined", 16), kvp=number(h, "KVP"),
            tube_current_ma=number(h, "XRayTubeCurrent"), exposure_mas=number(h, "Exposure"),
            dap=to_unit("DAP", dap, "dGy.cm2") if dap is not None else None,
            entrance_dose=number(h, "EntranceDoseInmGy"), exposure_index=number(h, "ExposureIndex"),
            target_exposure_index=number(h, "TargetExposureIndex"), deviation_index=number(h, "DeviationIndex"))
        if any(v is not None for v in (ev.dap, ev.entrance_dose, ev.exposure_index)):
            events.append(ev)
    if not events:
        return None
    fields = common_fields(headers[0])
    return DoseReport(modality=text(headers[0], "Modality", 16) or "DX", source="header", estimated=False,
                      events=tuple(events), dap_total=_sum(e.dap for e in events),
                      entrance_dose_total=_sum(e.entrance_dose for e in events), **fields)


def _sum(values: Any) -> float | None:
    got = [v for v in values if v is not None]
    return sum(got) if got else None
