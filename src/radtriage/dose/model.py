"""What the dose registry reads from one object: a `DoseReport` of `DoseEvent`s, in the registry's units.

Units are fixed here, whatever the object wrote: CTDIvol and entrance dose in mGy, DLP in mGy.cm, scan
length in mm, dose-area product in Gy.cm2. `to_unit` converts a value given in any of the units scanners,
RDSRs and published DRL tables use. A report from image headers alone is ``estimated``.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

RDSR_CLASSES = frozenset({
    "1.2.840.10008.5.1.4.1.1.88.67",  # X-Ray Radiation Dose SR
    "1.2.840.10008.5.1.4.1.1.88.76",  # Enhanced X-Ray Radiation Dose SR
})
CT_IMAGE_CLASSES = frozenset({"1.2.840.10008.5.1.4.1.1.2", "1.2.840.10008.5.1.4.1.1.2.1"})
PROJECTION_MODALITIES = frozenset({"CR", "DX", "RG", "MG", "XA", "RF", "PX", "IO"})

# quantity -> (registry unit, {unit as written: factor to the registry unit})
QUANTITIES: dict[str, tuple[str, dict[str, float]]] = {
    "CTDIvol": ("mGy", {"mgy": 1.0, "gy": 1000.0, "ugy": 1e-3}),
    "DLP": ("mGy.cm", {"mgy.cm": 1.0, "gy.cm": 1000.0, "mgy.mm": 0.1, "gy.m": 1e5}),
    "DAP": ("Gy.cm2", {"gy.cm2": 1.0, "gy.m2": 1e4, "dgy.cm2": 0.1, "cgy.cm2": 1e-2, "mgy.cm2": 1e-3,
                       "ugy.m2": 1e-2, "ugy.cm2": 1e-6, "mgy.m2": 10.0}),
    "EntranceDose": ("mGy", {"mgy": 1.0, "gy": 1000.0, "ugy": 1e-3}),
}
QUANTITY_COLUMNS = {"CTDIvol": "ctdivol", "DLP": "dlp", "DAP": "dap", "EntranceDose": "entrance_dose"}
CT_QUANTITIES = frozenset({"CTDIvol", "DLP"})  # compared only on the phantom they were measured on


def unit_key(unit: str) -> str:
    """A unit as written ("Gy·m²", "mGy*cm", "µGy.m2") in one spelling: lower case, ``.`` between factors."""
    u = unit.strip().replace("·", ".").replace("*", ".").replace("²", "2").replace("µ", "u").replace("μ", "u")
    return u.replace(" ", "").replace("^", "").lower()


def to_unit(quantity: str, value: float, unit: str) -> float:
    """``value`` in ``unit`` as the registry's unit of ``quantity``; ValueError for a unit it does not know."""
    if quantity not in QUANTITIES:
        raise ValueError(f"unknown quantity {quantity!r}; one of {', '.join(QUANTITIES)}")
    target, factors = QUANTITIES[quantity]
    factor = factors.get(unit_key(unit))
    if factor is None:
        raise ValueError(f"{quantity}: unit {unit!r} is not one of {', '.join(sorted(factors))} (registry: {target})")
    return float(value) * factor


@dataclass(frozen=True)
class DoseEvent:
    """One irradiation event (a CT acquisition, a radiographic exposure), values in the registry's units."""

    kind: str  # "ct" | "projection"
    event_uid: str | None = None
    protocol: str | None = None
    target_region: str | None = None  # the code meaning, e.g. "Head", "Abdomen and Pelvis"
    acquisition_type: str | None = None  # e.g. "Spiral Acquisition", "Constant Angle Acquisition"
    phantom_cm: int | None = None  # 16 (IEC head) | 32 (IEC body) | None (unknown)
    ctdivol: float | None = None
    dlp: float | None = None
    scan_length_mm: float | None = None
    kvp: float | None = None
    tube_current_ma: float | None = None
    exposure_mas: float | None = None
    dap: float | None = None
    entrance_dose: float | None = None
    exposure_index: float | None = None
    target_exposure_index: float | None = None
    deviation_index: float | None = None

    @property
    def is_localizer(self) -> bool:
        return (self.acquisition_type or "").lower() == "constant angle acquisition"


@dataclass(frozen=True)
class PatientDose:
    """The patient as the dose registry needs them: no identifier but a one-way key."""

    age_years: float | None = None
    weight_kg: float | None = None
    sex: str | None = None
    pregnant: bool = False  # Pregnancy Status (0010,21C0) = 2 "definitely pregnant"


@dataclass(frozen=True)
class DoseReport:
    """The dose of one object: an RDSR (``source`` rdsr) or one image series' headers (``source`` header)."""

    study_uid: str
    series_uid: str
    sop_instance_uid: str
    modality: str  # CT, DX, CR, ...: the imaging modality (an RDSR's procedure, not "SR")
    source: str  # "rdsr" | "header"
    estimated: bool
    events: tuple[DoseEvent, ...] = ()
    dlp_total: float | None = None
    dap_total: float | None = None
    entrance_dose_total: float | None = None
    patient: PatientDose = field(default_factory=PatientDose)
    performed_at: dt.datetime | None = None
    facility: str | None = None
    station: str | None = None
    manufacturer: str | None = None
    model: str | None = None
    device_serial: str | None = None
    protocol: str | None = None
    study_description: str | None = None
    body_part: str | None = None
    water_diameter_cm: float | None = None  # CT images: mean water-equivalent diameter (`radtriage.dose.size`)
    size_slices: int = 0  # the slices it was measured on

    @property
    def scanner(self) -> str:
        """The scanner as the registry names it: station, else manufacturer and model, and serial number."""
        name = self.station or " ".join(x for x in (self.manufacturer, self.model) if x) or "unknown"
        return f"{name} #{self.device_serial}" if self.device_serial else name


def report_json(report: DoseReport) -> dict:
    """A report as stored (``dose_reports.report``): JSON types, times in ISO 8601."""
    from dataclasses import asdict

    out = asdict(report)
    out["performed_at"] = report.performed_at.isoformat() if report.performed_at else None
    return out


def report_from_json(data: dict) -> DoseReport:
    fields = dict(data)
    fields["events"] = tuple(DoseEvent(**e) for e in fields.get("events") or ())
    fields["patient"] = PatientDose(**(fields.get("patient") or {}))
    when = fields.get("performed_at")
    fields["performed_at"] = dt.datetime.fromisoformat(when) if when else None
    return DoseReport(**fields)
