"""Synthetic Radiation Dose Structured Reports (X-Ray Radiation Dose SR): CT (TID 10011) and projection
X-ray (TID 10001), written from a `DoseReport` so that a test can read one back and compare.

`ct_report` draws a realistic CT examination (a localizer, then one or more spiral or sequenced
acquisitions, head on the 16 cm phantom and body on the 32 cm one, CTDIvol and lengths in the ranges
national dose surveys report); `projection_report` a radiography one. `write_rdsr` writes either as a
Part 10 file of the study, its own series, Modality SR. `generate` is ``radtriage synth ct-rdsr``: one CT
examination's dose SR alone, with its truth. Values are synthetic.
"""

from __future__ import annotations

from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

import highdicom as hd
import numpy as np
from pydicom.dataset import Dataset
from pydicom.sr.codedict import codes
from pydicom.sr.coding import Code

from radtriage.dose.model import DoseEvent, DoseReport, PatientDose
from radtriage.dose.rdsr import CT_PROCEDURE
from radtriage.synth.dicom import Study, StudyIdentity, _base, _finish, make_study

RDSR_CLASS = "1.2.840.10008.5.1.4.1.1.88.67"
DCM, SCT = codes.DCM, codes.SCT
UCUM = "UCUM"
REGIONS = {"Head": SCT.Head, "Chest": SCT.Chest, "Abdomen": SCT.Abdomen, "Pelvis": SCT.Pelvis,
           "Abdomen and Pelvis": SCT.AbdomenAndPelvis, "Chest, Abdomen and Pelvis": SCT.ChestAbdomenAndPelvis,
           "Neck": SCT.Neck, "Hand": SCT.Hand}
PHANTOMS = {16: DCM.IECHeadDosimetryPhantom, 32: DCM.IECBodyDosimetryPhantom}
ACQUISITIONS = {"Spiral Acquisition": SCT.SpiralAcquisition, "Sequenced Acquisition": DCM.SequencedAcquisition,
                "Constant Angle Acquisition": DCM.ConstantAngleAcquisition,
                "Stationary Acquisition": DCM.StationaryAcquisition}
# (protocol, region, phantom, CTDIvol range mGy, scan length range mm): adult ranges of dose surveys
CT_PROTOCOLS = {
    "head": ("ROUTINE HEAD", "Head", 16, (35.0, 70.0), (140.0, 190.0)),
    "chest": ("ROUTINE CHEST", "Chest", 32, (5.0, 14.0), (280.0, 360.0)),
    "abdomen-pelvis": ("ABDOMEN PELVIS", "Abdomen and Pelvis", 32, (8.0, 18.0), (380.0, 480.0)),
}


def _concept(code: Code) -> Dataset:
    return hd.sr.CodedConcept(code.value, code.scheme_designator, code.meaning)


def container(name: Code, items: list[Dataset], relationship: str = "CONTAINS") -> Dataset:
    item = hd.sr.ContainerContentItem(name, is_content_continuous=False, relationship_type=relationship)
    item.ContentSequence = [i for i in items if i is not None]
    return item


def num(name: Code, value: float | None, unit: str, meaning: str | None = None) -> Dataset | None:
    if value is None:
        return None
    unit_code = Code(unit, UCUM, meaning or unit)
    return hd.sr.NumContentItem(name, float(f"{value:.6g}"), unit_code, relationship_type="CONTAINS")


def code(name: Code, value: Code | None, relationship: str = "CONTAINS") -> Dataset | None:
    return None if value is None else hd.sr.CodeContentItem(name, value, relationship_type=relationship)


def text(name: Code, value: str | None) -> Dataset | None:
    return None if value is None else hd.sr.TextContentItem(name, value, relationship_type="CONTAINS")


def uidref(name: Code, value: str | None) -> Dataset | None:
    return None if value is None else hd.sr.UIDRefContentItem(name, value, relationship_type="CONTAINS")


def _ct_acquisition(e: DoseEvent) -> Dataset:
    source = container(DCM.CTXRaySourceParameters, [num(DCM.KVP, e.kvp, "kV"),
                                                   num(DCM.XRayTubeCurrent, e.tube_current_ma, "mA")])
    params = container(DCM.CTAcquisitionParameters, [num(DCM.ScanningLength, e.scan_length_mm, "mm"), source])
    dose = container(DCM.CTDose, [num(DCM.MeanCtdivol, e.ctdivol, "mGy"),
                                  code(DCM.CtdiwPhantomType, PHANTOMS.get(e.phantom_cm or 0)),
                                  num(DCM.DLP, e.dlp, "mGy.cm")])
    return container(DCM.CTAcquisition, [
        text(DCM.AcquisitionProtocol, e.protocol), code(DCM.TargetRegion, REGIONS.get(e.target_region or "")),
        code(DCM.CTAcquisitionType, ACQUISITIONS.get(e.acquisition_type or "")),
        uidref(DCM.IrradiationEventUID, e.event_uid), params,
        dose if e.ctdivol is not None or e.dlp is not None else None])


def _projection_event(e: DoseEvent) -> Dataset:
    return container(DCM.IrradiationEventXRayData, [
        uidref(DCM.IrradiationEventUID, e.event_uid),
        code(DCM.IrradiationEventType, ACQUISITIONS.get(e.acquisition_type or "")),
        text(DCM.AcquisitionProtocol, e.protocol), code(DCM.TargetRegion, REGIONS.get(e.target_region or "")),
        num(DCM.DoseAreaProduct, None if e.dap is None else e.dap / 1e4, "Gy.m2"),
        num(DCM.DoseRP, None if e.entrance_dose is None else e.entrance_dose / 1000.0, "Gy"),
        num(DCM.ExposureIndex, e.exposure_index, "1", "no units"),
        num(DCM.TargetExposureIndex, e.target_exposure_index, "1", "no units"),
        num(DCM.DeviationIndex, e.deviation_index, "1", "no units"), num(DCM.KVP, e.kvp, "kV")])


def rdsr_dataset(report: DoseReport, study: Study, series_uid: str, sop_uid: str, series_number: int = 997) -> Dataset:
    """The RDSR of ``report`` for ``study`` (patient, scanner and dates from the study)."""
    ds = _base(study, RDSR_CLASS, "SR", series_uid, series_number, "Dose Report")
    ds.SOPInstanceUID = sop_uid
    ds.InstanceNumber = 1
    if report.patient.weight_kg is not None:
        ds.PatientWeight = round(report.patient.weight_kg, 1)
    if report.patient.pregnant:
        ds.PregnancyStatus = 2
    if report.protocol:
        ds.ProtocolName = report.protocol
    ds.CompletionFlag, ds.VerificationFlag = "COMPLETE", "UNVERIFIED"
    ds.ReferencedPerformedProcedureStepSequence, ds.PerformedProcedureCodeSequence = [], []  # type 2: empty
    template = Dataset()
    template.MappingResource, template.TemplateIdentifier = "DCMR", "10011" if report.modality == "CT" else "10001"
    ds.ContentTemplateSequence = [template]
    ds.ValueType, ds.ContinuityOfContent = "CONTAINER", "SEPARATE"
    ds.ConceptNameCodeSequence = [_concept(DCM.XRayRadiationDoseReport)]
    if report.modality == "CT":
        procedure = Code(CT_PROCEDURE, "SCT", "Computed Tomography X-Ray")
        accumulated = container(DCM.CTAccumulatedDoseData, [
            num(DCM.TotalNumberOfIrradiationEvents, len(report.events), "{events}", "events"),
            num(DCM.CTDoseLengthProductTotal, report.dlp_total, "mGy.cm")])
        events = [_ct_acquisition(e) for e in report.events]
    else:
        procedure = DCM.ProjectionXRay
        accumulated = container(DCM.AccumulatedXRayDoseData, [
            num(DCM.DoseAreaProductTotal, None if report.dap_total is None else report.dap_total / 1e4, "Gy.m2"),
            num(DCM.DoseRPTotal, None if report.entrance_dose_total is None else report.entrance_dose_total / 1000.0,
                "Gy")])
        events = [_projection_event(e) for e in report.events]
    ds.ContentSequence = [code(DCM.ProcedureReported, procedure, "HAS CONCEPT MOD"), accumulated, *events,
                          code(DCM.SourceOfDoseInformation, DCM.AutomatedDataCollection)]
    return ds


def write_rdsr(folder: Path, rng: np.random.Generator, study: Study, report: DoseReport) -> Path:
    """Write ``report`` as the study's dose SR (its own series) under ``folder``; the file."""
    folder.mkdir(parents=True, exist_ok=True)
    ds = rdsr_dataset(report, study, study.new_uid(rng), study.new_uid(rng))
    return _finish(ds, folder / "997_0001_rdsr.dcm")


def ct_report(rng: np.random.Generator, study: Study, parts: tuple[str, ...] = ("head",), *,
              child: bool = False, phantom: int | None = None, scale: float = 1.0) -> DoseReport:
    """A CT examination of ``parts`` (keys of `CT_PROTOCOLS`): a localizer, then one acquisition a part.
    ``child`` scales the dose down (0.3-0.6x); ``phantom`` forces the body phantom (16 for a child's body);
    ``scale`` multiplies every CTDIvol (a test's way to go above a level)."""
    events = [_localizer(rng, study, CT_PROTOCOLS[parts[0]][1])]
    for part in parts:
        protocol, region, ph, (lo, hi), (l0, l1) = CT_PROTOCOLS[part]
        factor = float(rng.uniform(0.3, 0.6)) if child else 1.0
        ctdi = round(float(rng.uniform(lo, hi)) * factor * scale, 2)
        length = round(float(rng.uniform(l0, l1)) * (0.7 if child else 1.0), 1)
        events.append(DoseEvent(
            kind="ct", event_uid=study.new_uid(rng), protocol=protocol, target_region=region,
            acquisition_type="Sequenced Acquisition" if part == "head" else "Spiral Acquisition",
            phantom_cm=ph if part == "head" or phantom is None else phantom, ctdivol=ctdi,
            dlp=round(ctdi * length / 10.0, 2), scan_length_mm=length, kvp=float(rng.choice([100.0, 120.0])),
            tube_current_ma=round(float(rng.uniform(150, 400)), 0)))
    return _ct_dose_report(study, events)


def _localizer(rng: np.random.Generator, study: Study, region: str) -> DoseEvent:
    return DoseEvent(kind="ct", event_uid=study.new_uid(rng), protocol="TOPOGRAM", target_region=region,
                     acquisition_type="Constant Angle Acquisition", kvp=120.0, tube_current_ma=35.0,
                     scan_length_mm=round(float(rng.uniform(250, 500)), 1))


def _ct_dose_report(study: Study, events: list[DoseEvent]) -> DoseReport:
    total = round(sum(e.dlp or 0.0 for e in events), 2)
    return DoseReport(study_uid=study.study_uid, series_uid="", sop_instance_uid="", modality="CT", source="rdsr",
                      estimated=False, events=tuple(events), dlp_total=total, protocol=events[1].protocol,
                      patient=PatientDose(sex=study.patient.sex))


def acquisition_report(rng: np.random.Generator, study: Study, *, protocol: str, region: str, phantom: int,
                       ctdivol: float, length_mm: float, kvp: float | None = None, ma: float | None = None,
                       acquisition_type: str = "Spiral Acquisition") -> DoseReport:
    """The RDSR of a study written by a CT generator: a localizer, then the one acquisition its images show
    (CTDIvol and scanned length as the images' headers give them)."""
    ctdi, length = round(float(ctdivol), 2), round(float(length_mm), 1)
    return _ct_dose_report(study, [_localizer(rng, study, region), DoseEvent(
        kind="ct", event_uid=study.new_uid(rng), protocol=protocol, target_region=region,
        acquisition_type=acquisition_type, phantom_cm=phantom, ctdivol=ctdi, dlp=round(ctdi * length / 10.0, 2),
        scan_length_mm=length, kvp=kvp, tube_current_ma=ma)])


def projection_report(rng: np.random.Generator, study: Study, views: int = 2, region: str = "Chest") -> DoseReport:
    """A radiography examination of ``views`` exposures of ``region``."""
    events = tuple(DoseEvent(
        kind="projection", event_uid=study.new_uid(rng), protocol=f"{region.upper()} {view}", target_region=region,
        acquisition_type="Stationary Acquisition", dap=round(float(rng.uniform(0.05, 0.2)), 4),
        entrance_dose=round(float(rng.uniform(0.08, 0.3)), 4), exposure_index=round(float(rng.uniform(200, 600))),
        target_exposure_index=400.0, deviation_index=round(float(rng.uniform(-2, 2)), 2), kvp=125.0)
        for view in ("PA", "LAT", "AP")[:views])
    return DoseReport(study_uid=study.study_uid, series_uid="", sop_instance_uid="", modality="DX", source="rdsr",
                      estimated=False, events=events, dap_total=round(sum(e.dap or 0 for e in events), 4),
                      entrance_dose_total=round(sum(e.entrance_dose or 0 for e in events), 4),
                      protocol=events[0].protocol, patient=PatientDose(sex=study.patient.sex))


DESCRIPTIONS = {"head": "CT HEAD", "chest": "CT CHEST", "abdomen-pelvis": "CT ABDOMEN PELVIS"}


def generate(rng: np.random.Generator, index: int, folder: Path, *, identity: StudyIdentity | None = None,
             parts: str = "head", child: bool = False, phantom: int | None = None, scale: float = 1.0
             ) -> dict[str, Any]:
    """``radtriage synth ct-rdsr``: one CT examination's RDSR (no images) under ``folder``, and its truth.

    ``parts``: the acquisitions after the localizer, keys of `CT_PROTOCOLS` joined by ``+`` (e.g.
    ``chest+abdomen-pelvis``); ``child``, ``phantom`` and ``scale`` as `ct_report`. An option this generator
    does not know, or a part it does not, raises `TypeError` (the command's option error)."""
    wanted = tuple(p.strip() for p in str(parts).split("+") if p.strip())
    unknown = [p for p in wanted if p not in CT_PROTOCOLS]
    if not wanted or unknown:
        raise TypeError(f"parts: {'+'.join(unknown) or '(none)'} unknown; one or more of {', '.join(CT_PROTOCOLS)}"
                        " joined by +")
    if phantom not in (None, 16, 32):
        raise TypeError("phantom: 16 or 32 (cm)")
    description = " AND ".join(DESCRIPTIONS[p] for p in wanted).replace(" AND CT ", " AND ")
    study = make_study(rng, index, description, age_years=(2, 12) if child else (18, 90), identity=identity)
    weight = round(float(rng.uniform(12, 40) if child else rng.uniform(50, 105)), 1)
    report = ct_report(rng, study, wanted, child=bool(child), phantom=phantom, scale=float(scale))
    report = replace(report, patient=replace(report.patient, weight_kg=weight))
    path = write_rdsr(Path(folder), rng, study, report)
    events = [{k: v for k, v in asdict(e).items() if v is not None} for e in report.events]
    return {"study_uid": study.study_uid, "study_description": description, "parts": list(wanted),
            "child": bool(child), "patient_sex": study.patient.sex, "weight_kg": weight,
            "manufacturer": study.manufacturer, "model": study.model, "files": [path.name], "events": events,
            "dlp_total_mgy_cm": report.dlp_total,
            "ctdivol_max_mgy": max(e.ctdivol for e in report.events if e.ctdivol is not None)}
