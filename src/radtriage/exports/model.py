"""What an export is about: one recorded result of a live pipeline, with its study, its series and its
source instances, read from the index once and handed to every builder (DICOM SR/SC/KOS/SEG, HL7 v2, FHIR).

`ExportedResult` is plain data: the builders never touch the database, so each is a pure function of it
(and a resend builds the same objects with the same UIDs: see `object_uid`).
"""

from __future__ import annotations

import hashlib
import uuid
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from pydicom.uid import UID

from radtriage.domain import TaskResult

# What an export says about the result it carries (HL7 OBX-11, FHIR DiagnosticReport.status, a DICOM
# object's completion/verification and its predecessor reference).
PRELIMINARY = "preliminary"  # the first send of an AI result (OBX-11 P)
CORRECTED = "corrected"  # a replacement of what was sent: a new series version, or a reader's correction (C)
WITHDRAWN = "withdrawn"  # the result must not be used: its pipeline was demoted, or it was marked wrong (entered-in-error)
STATUSES = (PRELIMINARY, CORRECTED, WITHDRAWN)
# A radiologist's report (radtriage.reports): final once signed (OBX-11 F, DiagnosticReport final, a verified
# SR); an addendum after signing goes as amended (C, amended); a draft leaves only as preliminary, where allowed.
FINAL = "final"
AMENDED = "amended"
REPORT_STATUSES = (PRELIMINARY, FINAL, AMENDED)


@dataclass(frozen=True)
class SourceInstance:
    """One instance of the series the result was computed on."""

    sop_class_uid: str
    sop_instance_uid: str
    instance_number: int | None
    path: str


@dataclass(frozen=True)
class Patient:
    patient_id: str | None
    issuer: str | None  # Issuer of Patient ID (HL7 PID-3.4, FHIR identifier.system)
    name: str | None  # DICOM Person Name (family^given...)
    birth_date: str | None  # YYYYMMDD
    sex: str | None  # M | F | O


@dataclass(frozen=True)
class ExportedResult:
    """One result of a live pipeline, as the builders need it."""

    result_id: int
    pipeline_id: str
    pipeline_version: str
    pipeline_title: str
    result: TaskResult  # task, model id/version, positive, scores, labels, findings (with key image paths)
    priority: str
    created_at: datetime
    study_uid: str
    accession: str | None
    study_description: str | None
    study_date: str | None  # YYYYMMDD
    study_time: str | None
    patient: Patient
    series_uid: str
    series_number: int | None
    series_version: int
    modality: str | None
    header: dict[str, Any]  # the series' routing header (DICOM keywords)
    instances: tuple[SourceInstance, ...] = ()  # the source series, in instance-number order
    status: str = PRELIMINARY
    revision: int = 0  # 0 for the first send; each correction or withdrawal of the same result adds one
    replaces: int | None = None  # the result id this one supersedes (a new series version), if any
    notes: dict[str, Any] = field(default_factory=dict)
    thresholds: dict[str, float] = field(default_factory=dict)  # the pipeline's operating points (SR TID 4019 parameters)

    @property
    def task(self) -> str:
        return self.result.task


def object_uid(result_id: int, kind: str, revision: int = 0, site_key: bytes = b"") -> UID:
    """The UID of one object radtriage makes for a result (``kind``: sr, kos, sc-0, seg, series-sr...):
    the same result, kind and revision give the same UID, so a resend stores the same object again
    instead of a second copy under a new UID. ``site_key`` keeps two sites' UIDs apart."""
    digest = hashlib.sha256(site_key + f"radtriage/{result_id}/{kind}/{revision}".encode()).hexdigest()
    name = uuid.uuid5(uuid.NAMESPACE_OID, digest)  # a name-based UUID
    return UID(f"2.25.{name.int}")  # a UUID-derived UID (PS3.5 B.2)


@dataclass(frozen=True)
class ReportSection:
    """One section of a report in one language: its key (examination, findings...), heading and text."""

    language: str
    section: str
    heading: str
    text: str


@dataclass(frozen=True)
class ExportedReport:
    """A radiologist's report of one study, as the report builders need it (DICOM SR TID 2000, ORU, FHIR)."""

    report_id: int
    study_uid: str
    accession: str | None
    study_description: str | None
    study_date: str | None
    study_time: str | None
    patient: Patient
    modality: str | None
    sections: tuple[ReportSection, ...]  # the signed languages' sections, then the addenda (section "addendum")
    languages: tuple[str, ...]
    status: str  # preliminary | final | amended
    revision: int  # 0 for the first send to a destination; each later send of the same report adds one
    created_at: datetime  # when it was signed (or, for a preliminary draft, saved)
    signed_by: str | None = None
    signed_at: datetime | None = None
    evidence: tuple[tuple[str, tuple[SourceInstance, ...]], ...] = ()  # (series UID, its instances) read for it
    pipelines: tuple[str, ...] = ()

    @property
    def series_uid(self) -> str:
        return self.evidence[0][0] if self.evidence else ""

    @property
    def instances(self) -> tuple[SourceInstance, ...]:
        return self.evidence[0][1] if self.evidence else ()

    @property
    def result_id(self) -> int:  # the id `object_uid` and the builders key their objects by
        return self.report_id
