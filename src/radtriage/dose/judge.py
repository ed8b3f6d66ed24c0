"""Judging one examination: its dose against the DRL of its examination and band, a child, a pregnant
patient with the abdomen or pelvis exposed, and a repeat. The one home of these rules; pure functions.

`examination_of` turns a study's dose reports into one `Examination` (its RDSRs where any came, else its
headers): CTDIvol is the highest of its acquisitions and DLP their sum, both on one phantom (the one that
carries most of the DLP; events on the other phantom are left out and never compared), DAP and entrance
dose the sums over the exposures. `judge` gives the flags: above ``flag_multiple`` x the level (urgent for a
child, or above ``urgent_multiple`` x the level), a pregnant patient's abdomen or pelvis (urgent, whatever
the dose), the same examination of the same patient within the repeat interval (the digest). Nothing here
touches a study's clinical priority.
"""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from radtriage.dose.config import DoseConfig
from radtriage.dose.drl import DrlSet
from radtriage.dose.header import HEAD_PARTS
from radtriage.dose.model import QUANTITIES, QUANTITY_COLUMNS, DoseReport
from radtriage.dose.size import ssde

CHILD_YEARS = 16.0  # younger is a child for the urgent rule
HEADER, RIS = "image header (Pregnancy Status 2)", "RIS"


@dataclass(frozen=True)
class Examination:
    study_uid: str
    performed_at: dt.datetime
    modality: str
    facility: str
    scanner: str
    protocol: str | None
    study_description: str | None
    source: str  # rdsr | header
    estimated: bool
    age_years: float | None
    weight_kg: float | None
    sex: str | None
    pregnant: bool
    phantom_cm: int | None
    values: dict[str, float] = field(default_factory=dict)  # quantity -> value in the registry's unit
    regions: tuple[str, ...] = ()  # body parts and target regions
    examination: str | None = None
    band: str | None = None
    drl_set: str | None = None
    water_diameter_cm: float | None = None  # from the study's CT images (`radtriage.dose.size`)
    ssde: float | None = None  # mGy: f(Dw) x CTDIvol, body CT only (AAPM 204 / 220)
    pregnancy_source: str | None = None  # who said pregnant: HEADER, RIS, or both

    @property
    def child(self) -> bool:
        return self.age_years is not None and self.age_years < CHILD_YEARS

    def header(self) -> dict[str, Any]:
        """The examination as a header the site's mapping rules read."""
        return {"Modality": self.modality, "ProtocolName": self.protocol, "StudyDescription": self.study_description,
                "BodyPartExamined": list(self.regions)}

    def row(self) -> dict[str, Any]:
        """The ``dose_exams`` columns."""
        cols = {QUANTITY_COLUMNS[q]: self.values.get(q) for q in QUANTITIES}
        return dict(study_uid=self.study_uid, performed_at=self.performed_at, modality=self.modality,
                    facility=self.facility[:64], scanner=self.scanner[:128], protocol=self.protocol,
                    study_description=self.study_description, examination=self.examination, band=self.band,
                    age_years=self.age_years, weight_kg=self.weight_kg, sex=self.sex, pregnant=self.pregnant,
                    source=self.source, estimated=self.estimated, phantom_cm=self.phantom_cm,
                    drl_set=self.drl_set, dw_cm=self.water_diameter_cm, ssde=self.ssde, **cols)


@dataclass(frozen=True)
class Flag:
    reason: str  # above_drl | pregnant_abdomen_pelvis | repeat
    quantity: str  # CTDIvol | DLP | DAP | EntranceDose | "-"
    urgent: bool
    detail: str
    value: float | None = None
    level: float | None = None
    unit: str | None = None


def _ct_values(reports: Sequence[DoseReport]) -> tuple[int | None, dict[str, float]]:
    events = [e for r in reports for e in r.events if e.kind == "ct" and not e.is_localizer]
    by_phantom: dict[int | None, float] = defaultdict(float)
    for e in events:
        by_phantom[e.phantom_cm] += e.dlp or 0.0
    if not by_phantom:
        return None, {}
    phantom = max(by_phantom, key=lambda p: (by_phantom[p], p is not None))
    mine = [e for e in events if e.phantom_cm == phantom]
    values: dict[str, float] = {}
    ctdis = [e.ctdivol for e in mine if e.ctdivol is not None]
    if ctdis:
        values["CTDIvol"] = max(ctdis)
    if len(by_phantom) == 1 and all(r.dlp_total is not None for r in reports):
        values["DLP"] = sum(r.dlp_total or 0.0 for r in reports)  # the accumulated total, localizers and all
    elif any(e.dlp is not None for e in mine):
        values["DLP"] = sum(e.dlp or 0.0 for e in mine)
    return phantom, values


def examination_of(reports: Sequence[DoseReport], config: DoseConfig | None = None, drl: DrlSet | None = None,
                   now: dt.datetime | None = None) -> Examination | None:
    """One study's reports as its examination, mapped to the DRL set's examination and band; None if empty."""
    dosed = [r for r in reports if r.events or r.dlp_total is not None or r.dap_total is not None]
    if not dosed:
        return None  # nothing but a patient's size (CT images without CTDIvol)
    rdsr = [r for r in dosed if r.source == "rdsr"]
    used = rdsr or dosed
    first = used[0]
    patient = next((r.patient for r in used if r.patient.age_years is not None), first.patient)
    weight = next((r.patient.weight_kg for r in reports if r.patient.weight_kg is not None), None)
    if first.modality == "CT":
        phantom, values = _ct_values(used)
    else:
        phantom, values = None, {}
        for q, attr in (("DAP", "dap_total"), ("EntranceDose", "entrance_dose_total")):
            got = [getattr(r, attr) for r in used if getattr(r, attr) is not None]
            if got:
                values[q] = sum(got)
    regions = tuple(dict.fromkeys(x for r in reports for x in [r.body_part, *(e.target_region for e in r.events)]
                                  if x))
    pick = lambda attr: next((getattr(r, attr) for r in [*used, *reports] if getattr(r, attr)), None)  # noqa: E731
    exam = Examination(
        study_uid=first.study_uid, performed_at=pick("performed_at") or now or dt.datetime.now(dt.UTC),
        modality=first.modality, facility=pick("facility") or "unknown", scanner=first.scanner,
        protocol=pick("protocol"), study_description=pick("study_description"), source=first.source,
        estimated=any(r.estimated for r in used), age_years=patient.age_years, weight_kg=weight, sex=patient.sex,
        pregnant=any(r.patient.pregnant for r in reports), phantom_cm=phantom, values=values, regions=regions)
    if exam.pregnant:
        exam = replace(exam, pregnancy_source=HEADER)
    exam = _with_size(exam, reports)
    if config is None or drl is None:
        return exam
    examination = config.examination_of(exam.header())
    band = drl.band_for(examination, exam.age_years, exam.weight_kg) if examination else None
    return replace(exam, examination=examination, band=band, drl_set=drl.label)


def _with_size(exam: Examination, reports: Sequence[DoseReport]) -> Examination:
    """The examination with its patient's water-equivalent diameter (the mean over every slice measured in its
    CT image series) and, for a body CT, its SSDE."""
    sized = [r for r in reports if r.water_diameter_cm is not None and r.size_slices > 0]
    if not sized:
        return exam
    slices = sum(r.size_slices for r in sized)
    dw = sum((r.water_diameter_cm or 0.0) * r.size_slices for r in sized) / slices
    head = any(p in x.upper() for x in exam.regions for p in HEAD_PARTS)
    value = ssde(exam.values.get("CTDIvol"), dw, exam.phantom_cm, head)
    return replace(exam, water_diameter_cm=round(dw, 2), ssde=round(value, 3) if value is not None else None)


def with_ris_status(exam: Examination, status: str | None) -> Examination:
    """The examination as the RIS's pregnancy status (`radtriage.dose.ris`) makes it: ``pregnant`` makes the
    patient pregnant whatever the header says; ``not_pregnant`` or ``unknown`` never clears a header's
    Pregnancy Status 2 (the safer side: a physicist is told)."""
    if status != "pregnant":
        return exam
    return replace(exam, pregnant=True, pregnancy_source=f"{HEADER} and the {RIS}" if exam.pregnant else RIS)


def _number(value: float) -> str:
    """A dose as a physicist writes it: three significant digits, whole numbers from 100 up, never 1.96e+03."""
    return f"{value:.0f}" if abs(value) >= 100 else f"{value:.3g}"


def judge(exam: Examination, config: DoseConfig, drl: DrlSet, earlier: Sequence[dt.datetime] = ()) -> list[Flag]:
    """The flags of one examination. ``earlier``: when the same patient had the same examination before it
    (within the repeat interval: the caller asks for those)."""
    flags: list[Flag] = []
    if exam.examination is not None and exam.band is not None:
        for quantity, value in sorted(exam.values.items()):
            level = drl.level(exam.examination, exam.band, quantity, exam.phantom_cm)
            if level is None:
                continue
            ref = level.registry_value
            if value <= config.flag_multiple * ref:
                continue
            far = config.urgent_multiple is not None and value > config.urgent_multiple * ref
            unit = QUANTITIES[quantity][0]
            phantom = f" ({exam.phantom_cm} cm phantom)" if exam.phantom_cm else ""
            detail = (f"{exam.examination}, {exam.band}: {quantity} {_number(value)} {unit}{phantom} is "
                      f"{value / ref:.2f} x the DRL {_number(ref)} {unit} ({drl.label})"
                      + (", estimated from the image headers" if exam.estimated else ""))
            flags.append(Flag("above_drl", quantity, exam.child or far, detail, value, ref, unit))
    if exam.pregnant and config.abdomen_or_pelvis(exam.header()):
        flags.append(Flag("pregnant_abdomen_pelvis", "-", True,
                          f"pregnant patient (per the {exam.pregnancy_source or HEADER}): {exam.modality} exposure "
                          "of the abdomen or pelvis"))
    window = dt.timedelta(hours=config.repeat_window_h)
    repeats = [t for t in earlier if abs(exam.performed_at - t) <= window]
    if exam.examination is not None and repeats:
        flags.append(Flag("repeat", "-", False, f"{exam.examination} repeated for the same patient within "
                                                f"{config.repeat_window_h:g} h ({len(repeats)} other)"))
    return flags
