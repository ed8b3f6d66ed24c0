"""A radiologist's report as a DICOM Enhanced SR, TID 2000 Basic Diagnostic Imaging Report (highdicom
content items): a pure function of an `ExportedReport` (reads the source headers; no database, no network).

The root (LN 18748-4 Diagnostic Imaging Report) says its language (DCM 121049, RFC 5646) and who observed
(the signing radiologist as a person; radtriage as a device for a preliminary draft). Each section is a
CONTAINER of CID 7001 with TEXT items of CID 7002: examination and technique as Procedure Description
under Current Procedure Descriptions (with the AI-assistance sentence as a Comment), findings as Finding
under Findings, the impression as Impression under Impressions, each addendum as a Comment under
Addendum. A second signed language follows as its own sections, each with its language. Final and amended
reports are complete, final and verified by the signer; an amendment names the SR it replaces (Predecessor
Documents Sequence); a preliminary draft is neither final nor verified.
"""

from __future__ import annotations

import highdicom as hd
from pydicom.dataset import Dataset
from pydicom.sr.codedict import codes
from pydicom.sr.coding import Code
from pydicom.uid import EnhancedSRStorage

from radtriage.exports.dicom.source import Source
from radtriage.exports.model import PRELIMINARY, ExportedReport, object_uid

SERIES_NUMBER = 9910
MANUFACTURER = "radtriage"
LANGUAGE_NAMES = {"en": "English", "zh-Hant": "Chinese (Traditional)", "zh-HK": "Chinese (Hong Kong)"}
# section -> (CID 7001 heading, CID 7002 element)
SECTIONS = {
    "examination": (codes.DCM.CurrentProcedureDescriptions, codes.DCM.ProcedureDescription),
    "technique": (codes.DCM.CurrentProcedureDescriptions, codes.DCM.ProcedureDescription),
    "ai_statement": (codes.DCM.CurrentProcedureDescriptions, codes.DCM.Comment),
    "findings": (codes.DCM.Findings, codes.DCM.Finding),
    "impression": (codes.DCM.Impressions, codes.DCM.Impression),
    "addendum": (codes.DCM.Addendum, codes.DCM.Comment),
}
R = hd.sr.RelationshipTypeValues


def _language(code: str) -> hd.sr.CodeContentItem:
    return hd.sr.CodeContentItem(name=codes.DCM.LanguageOfContentItemAndDescendants,
                                 value=Code(code, "RFC5646", LANGUAGE_NAMES.get(code, code)),
                                 relationship_type=R.HAS_CONCEPT_MOD)


def person_name(name: str) -> str:
    """A display name ("Anna Lee") as a DICOM PN (family^given: "Lee^Anna"); a PN stays as it is."""
    if "^" in name:
        return name[:64]
    words = name.split()
    return ("^".join([words[-1], " ".join(words[:-1])]) if len(words) > 1 else name + "^")[:64]


def _observer(r: ExportedReport, site_key: bytes) -> list[Dataset]:
    """TID 1001: the signing radiologist (a person), or radtriage (a device) for a preliminary draft."""
    if r.signed_by and r.status != PRELIMINARY:
        who = hd.sr.PersonObserverIdentifyingAttributes(name=person_name(r.signed_by))
        person = hd.sr.ObserverContext(observer_type=codes.DCM.Person, observer_identifying_attributes=who)
        return list(hd.sr.ObservationContext(observer_person_context=person))
    device = hd.sr.DeviceObserverIdentifyingAttributes(
        uid=object_uid(0, "device/reports", 0, site_key), name="radtriage reports", manufacturer_name=MANUFACTURER)
    ctx = hd.sr.ObserverContext(observer_type=codes.DCM.Device, observer_identifying_attributes=device)
    return list(hd.sr.ObservationContext(observer_device_context=ctx))


def content(r: ExportedReport, site_key: bytes = b"") -> hd.sr.ContainerContentItem:
    """The TID 2000 content tree of the report."""
    root = hd.sr.ContainerContentItem(name=codes.LN.DiagnosticImagingReport, template_id="2000")
    first = r.languages[0] if r.languages else "en"
    items: list[Dataset] = [_language(first), *_observer(r, site_key)]
    containers: dict[tuple[str, str], hd.sr.ContainerContentItem] = {}
    for s in r.sections:
        heading, element = SECTIONS[s.section]
        key = (s.language, heading.value)
        if key not in containers:
            box = hd.sr.ContainerContentItem(name=heading, relationship_type=R.CONTAINS)
            box.ContentSequence = hd.sr.ContentSequence([_language(s.language)] if s.language != first else [])
            containers[key] = box
            items.append(box)
        containers[key].ContentSequence.append(
            hd.sr.TextContentItem(name=element, value=s.text, relationship_type=R.CONTAINS))
    root.ContentSequence = hd.sr.ContentSequence(items)
    return root


def _evidence(r: ExportedReport) -> tuple[list[Dataset], bool]:
    """The source instances (patient and study from their header), or, for a report without any, a stand-in
    carrying the study's identifiers that is not recorded as evidence."""
    if r.evidence:
        source = Source(r)  # type: ignore[arg-type] - it reads the same fields of a report
        refs = []
        for series_uid, instances in r.evidence:
            for inst in instances:
                ds = source.reference(inst)
                ds.SeriesInstanceUID = series_uid
                refs.append(ds)
        return refs, True
    ds = Dataset()
    p = r.patient
    for keyword, value in (("PatientID", p.patient_id), ("PatientName", p.name), ("PatientBirthDate", p.birth_date),
                           ("PatientSex", p.sex), ("StudyInstanceUID", r.study_uid), ("AccessionNumber", r.accession),
                           ("StudyDate", r.study_date), ("StudyTime", r.study_time), ("StudyID", None),
                           ("ReferringPhysicianName", None)):
        setattr(ds, keyword, value)
    ds.SOPClassUID, ds.SOPInstanceUID = EnhancedSRStorage, object_uid(r.report_id, "report-standin")
    ds.SeriesInstanceUID, ds.Modality = object_uid(r.report_id, "report-standin-series"), "SR"
    return [ds], False


def build_report_sr(r: ExportedReport, site_key: bytes = b"") -> hd.sr.EnhancedSR:
    """The SR of one send of a report (its UIDs from the report id and revision, so a resend is the same)."""
    evidence, recorded = _evidence(r)
    series_uid = object_uid(r.report_id, "report-series-sr", 0, site_key)
    previous = None
    if r.revision > 0:
        previous = Dataset()
        previous.StudyInstanceUID, previous.SeriesInstanceUID = r.study_uid, series_uid
        previous.SOPClassUID = EnhancedSRStorage
        previous.SOPInstanceUID = object_uid(r.report_id, "report-sr", r.revision - 1, site_key)
    done = r.status != PRELIMINARY
    sr = hd.sr.EnhancedSR(
        evidence=evidence, content=content(r, site_key), series_instance_uid=series_uid,
        series_number=SERIES_NUMBER, sop_instance_uid=object_uid(r.report_id, "report-sr", r.revision, site_key),
        instance_number=r.revision + 1, manufacturer=MANUFACTURER, is_complete=True, is_final=done,
        is_verified=done and bool(r.signed_by), verifying_observer_name=person_name(r.signed_by) if done and r.signed_by else None,
        verifying_organization="radtriage site" if done and r.signed_by else None,
        previous_versions=[previous] if previous is not None else None, record_evidence=recorded)
    sr.SpecificCharacterSet = "ISO_IR 192"  # Chinese text: UTF-8
    sr.SeriesDescription = {"preliminary": "Report (preliminary draft)", "amended": "Report (amended)"}.get(
        r.status, "Report")
    when = r.signed_at or r.created_at
    sr.ContentDate, sr.ContentTime = when.strftime("%Y%m%d"), when.strftime("%H%M%S")
    return sr
