"""FHIR R4B DiagnosticReport for the EMR (IHE AI Results), and the httpx client that delivers it.

`build_bundle` is a pure function of an `ExportedResult`, built with ``fhir.resources.R4B``: a transaction
Bundle of conditional updates (``PUT DiagnosticReport?identifier=urn:dicom:uid|urn:oid:<uid>``), so a resend
updates what is there instead of adding a copy. It holds the DiagnosticReport (``preliminary``; ``amended``
for a correction; ``entered-in-error`` for a withdrawal), the algorithm as a Device (name, version), and the
observations of `radtriage.exports.observations` following the HL7 "DICOM SR to FHIR" mapping: the study's
observations, and per finding an imaging measurement group Observation whose members are one Observation
per measurement (``derivedFrom`` the group and the ImagingStudy, ``partOf`` the ImagingStudy), with the
finding's site as a BodyStructure carrying the tracking identifier and tracking UID (DICOM 112039/112040).
R4B has no ``Observation.bodyStructure`` (R5 does), so the group points at it with the core extension
``http://hl7.org/fhir/StructureDefinition/bodySite``.

The ImagingStudy is referred to by its Study Instance UID (``urn:dicom:uid`` / ``urn:oid:<uid>``) and the
Patient by identifier (system from the Issuer of Patient ID), as logical references: radtriage does not
own those resources. Identifiers of the resources it makes come from `object_uid` (revision 0), so every
revision of a result updates the same resources.

`FhirClient.send` posts the Bundle with a bearer token: 2xx delivered; 408, 429, 5xx and transport errors
raise a retryable `radtriage.outbox.SendError`; any other 4xx a permanent one.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

import httpx
from fhir.resources.R4B.bodystructure import BodyStructure
from fhir.resources.R4B.bundle import Bundle
from fhir.resources.R4B.device import Device
from fhir.resources.R4B.diagnosticreport import DiagnosticReport
from fhir.resources.R4B.observation import Observation
from fhir.resources.R4B.resource import Resource

from radtriage.exports.model import (
    AMENDED, CORRECTED, FINAL, PRELIMINARY, WITHDRAWN, ExportedReport, ExportedResult, object_uid,
)
from radtriage.exports.observations import (
    DISCLAIMER, TRACKING_ID, TRACKING_UID, UCUM_URI, Code, Group, Item, groups, summary,
)
from radtriage.outbox import SendError

FHIR_VERSION = "R4B"
DICOM_UID = "urn:dicom:uid"
MODEL_SYSTEM = "urn:radtriage:model"
ISSUER_SYSTEM = "urn:radtriage:issuer:"  # a plain (non-URI) issuer the site has not mapped
BODY_SITE_EXT = "http://hl7.org/fhir/StructureDefinition/bodySite"
REPORT_STATUS = {PRELIMINARY: "preliminary", CORRECTED: "amended", WITHDRAWN: "entered-in-error"}
RADIOLOGY = {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v2-0074", "code": "RAD",
                         "display": "Radiology"}]}
ABNORMAL = {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v3-ObservationInterpretation", "code": "A",
                        "display": "Abnormal"}]}
IMAGING = {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/observation-category", "code": "imaging",
                       "display": "Imaging"}]}


@dataclass(frozen=True)
class FhirOptions:
    """What a site configures: Issuer of Patient ID -> FHIR identifier system (else an OID or URI as is), and
    the site key of `object_uid` (the DICOM exports' own, so a finding's tracking UID is the same in both)."""

    issuer_systems: Mapping[str, str] = field(default_factory=dict)
    site_key: bytes = b""


def patient_system(issuer: str | None, systems: Mapping[str, str] | None = None) -> str | None:
    """The Patient identifier's system for a DICOM Issuer of Patient ID."""
    if not issuer:
        return None
    if systems and issuer in systems:
        return systems[issuer]
    if re.fullmatch(r"[0-2](\.\d+)+", issuer):
        return f"urn:oid:{issuer}"
    if re.match(r"^[a-zA-Z][a-zA-Z0-9+.\-]*:\S+$", issuer):
        return issuer
    return ISSUER_SYSTEM + quote(issuer, safe="")


def _uid_identifier(uid: str) -> dict[str, str]:
    return {"system": DICOM_UID, "value": f"urn:oid:{uid}"}


def _coding(c: Code) -> dict[str, Any]:
    return {"coding": [{"system": c.system.uri, "code": c.code, "display": c.display}], "text": c.display}


def _fhir_time(date: str | None, time: str | None) -> str | None:
    if not date or not re.fullmatch(r"\d{8}", date):
        return None
    t = re.sub(r"\D", "", (time or "").split(".")[0])
    day = f"{date[:4]}-{date[4:6]}-{date[6:]}"
    return f"{day}T{t[:2]}:{t[2:4]}:{t[4:6]}Z" if len(t) >= 6 else day  # DICOM keeps no zone: said as UTC


def _instant(when: datetime) -> str:
    return (when if when.tzinfo else when.replace(tzinfo=UTC)).isoformat()


@dataclass
class _Parts:
    """What every resource of one result shares while the Bundle is built."""

    r: ExportedResult
    subject: dict[str, Any]
    study: dict[str, Any]
    device: dict[str, Any]
    status: str
    site_key: bytes = b""
    entries: list[tuple[Resource, str]] = field(default_factory=list)  # resource, its full URL

    def uid(self, kind: str) -> str:
        return str(object_uid(self.r.result_id, f"fhir-{kind}", 0, self.site_key))

    def add(self, resource: Resource, kind: str) -> dict[str, Any]:
        """Adds ``resource`` under its identifier's urn:uuid; returns a reference to it."""
        url = f"urn:uuid:{uuid.uuid5(uuid.NAMESPACE_OID, self.uid(kind))}"
        self.entries.append((resource, url))
        return {"reference": url}


def _observation(p: _Parts, kind: str, item: Item, **extra: Any) -> Observation:
    r = p.r
    obs: dict[str, Any] = {
        "identifier": [_uid_identifier(p.uid(kind))], "status": p.status, "category": [IMAGING],
        "code": _coding(item.what), "subject": p.subject, "device": p.device, "partOf": [p.study],
        "issued": _instant(r.created_at), **extra}
    if (when := _fhir_time(r.study_date, r.study_time)) is not None:
        obs["effectiveDateTime"] = when
    if isinstance(item.value, Code):
        obs["valueCodeableConcept"] = _coding(item.value)
    elif isinstance(item.value, float):
        obs["valueQuantity"] = {"value": item.value, "unit": item.unit or "1", "system": UCUM_URI,
                                "code": item.unit or "1"}
    else:
        obs["valueString"] = item.value
    if item.abnormal:
        obs["interpretation"] = [ABNORMAL]
    return Observation(**obs)


def _body_structure(p: _Parts, g: Group) -> dict[str, Any] | None:
    if g.site is None:
        return None
    s = g.site
    body = BodyStructure(
        identifier=[{"type": _coding(TRACKING_UID), **_uid_identifier(s.tracking_uid)},
                    {"type": _coding(TRACKING_ID), "value": s.tracking_id}],
        location=_coding(s.location), locationQualifier=[_coding(s.laterality)] if s.laterality else None,
        description=g.text, patient=p.subject)
    return p.add(body, f"site-{g.number}")


def _finding(p: _Parts, g: Group) -> dict[str, Any]:
    """An imaging measurement group: the finding, its members one Observation per measurement."""
    group_kind = f"group-{g.number}"
    group_url = f"urn:uuid:{uuid.uuid5(uuid.NAMESPACE_OID, p.uid(group_kind))}"
    members = [p.add(_observation(p, f"{group_kind}-{i}", item, derivedFrom=[{"reference": group_url}, p.study]),
                     f"{group_kind}-{i}") for i, item in enumerate(g.items[1:], start=1)]
    extra: dict[str, Any] = {"hasMember": members, "derivedFrom": [p.study]}
    site = _body_structure(p, g)
    if site is not None:
        extra["extension"] = [{"url": BODY_SITE_EXT, "valueReference": site}]
        extra["bodySite"] = _coding(g.site.location)  # type: ignore[union-attr]
    return p.add(_observation(p, group_kind, g.items[0], **extra), group_kind)


def _device(r: ExportedResult) -> Device:
    res = r.result
    return Device(identifier=[{"system": MODEL_SYSTEM, "value": f"{res.model_id}:{res.model_version}"}],
                  deviceName=[{"name": res.model_id, "type": "model-name"}],
                  version=[{"value": res.model_version}], type={"text": "AI algorithm (radtriage)"},
                  note=[{"text": DISCLAIMER}])


def _put_url(resource: Resource) -> str:
    """The conditional update of a resource by its first identifier (always a system and a value here)."""
    ident = resource.identifier[0]  # type: ignore[attr-defined]
    return (f"{resource.get_resource_type()}?identifier="
            f"{quote(ident.system, safe=':/')}|{quote(ident.value, safe=':/.')}")


def _subject(r: ExportedResult | ExportedReport, o: FhirOptions) -> dict[str, Any]:
    """The Patient by identifier (a logical reference: radtriage does not own it)."""
    patient_id = {"system": patient_system(r.patient.issuer, o.issuer_systems), "value": r.patient.patient_id}
    return {"type": "Patient", "identifier": {k: v for k, v in patient_id.items() if v}} \
        if r.patient.patient_id else {"display": "patient without a Patient ID"}


def build_bundle(r: ExportedResult, options: FhirOptions | None = None) -> Bundle:
    """The transaction Bundle of one result: conditional updates of its DiagnosticReport, Device,
    Observations and BodyStructures, keyed by identifiers that stay the same across resends and revisions."""
    o = options or FhirOptions()
    subject, study = _subject(r, o), {"type": "ImagingStudy", "identifier": _uid_identifier(r.study_uid)}
    device = _device(r)
    p = _Parts(r, subject, study, {}, REPORT_STATUS[r.status], o.site_key)
    p.device = p.add(device, "device")
    top, *found = groups(r, o.site_key)
    results = [p.add(_observation(p, f"study-{i}", item, derivedFrom=[study]), f"study-{i}")
               for i, item in enumerate(top.items)]
    results += [_finding(p, g) for g in found]
    report: dict[str, Any] = {
        "identifier": [_uid_identifier(p.uid("report"))], "status": p.status, "category": [RADIOLOGY],
        "code": _coding(Code(r.pipeline_id, r.pipeline_title)), "subject": subject, "imagingStudy": [study],
        "issued": _instant(r.created_at), "result": results, "conclusion": summary(r)}
    if (when := _fhir_time(r.study_date, r.study_time)) is not None:
        report["effectiveDateTime"] = when
    p.add(DiagnosticReport(**report), "report")
    entries = [{"fullUrl": url, "resource": res, "request": {"method": "PUT", "url": _put_url(res)}}
               for res, url in p.entries]
    return Bundle(type="transaction", entry=entries)


# --------------------------------------------------------------------------- a radiologist's report

REPORT_FHIR_STATUS = {PRELIMINARY: "preliminary", FINAL: "final", AMENDED: "amended"}
IMAGING_REPORT = {"coding": [{"system": "http://loinc.org", "code": "18748-4", "display": "Diagnostic imaging study"}]}


def report_text(r: ExportedReport, language: str) -> str:
    """One language's sections (and the addenda written in it) as plain text under their headings."""
    return "\n\n".join(f"{s.heading}\n{s.text}" for s in r.sections if s.language == language)


def build_report_bundle(r: ExportedReport, options: FhirOptions | None = None) -> Bundle:
    """A transaction Bundle with the report's DiagnosticReport (``final`` when signed, ``amended`` after an
    addendum, ``preliminary`` for a draft a site lets leave), updated in place by its identifier: the text of
    each language as a ``presentedForm`` (text/plain, its language), the impression as ``conclusion``, the
    signer as ``resultsInterpreter``."""
    import base64

    o = options or FhirOptions()
    ident = _uid_identifier(str(object_uid(r.report_id, "fhir-radiologist-report", 0, o.site_key)))
    forms = [{"contentType": "text/plain; charset=utf-8", "language": lang, "title": f"Report ({lang})",
              "data": base64.b64encode(report_text(r, lang).encode()).decode(), "creation": _instant(r.created_at)}
             for lang in r.languages]
    impression = next((s.text for s in r.sections if s.section == "impression"), None)
    report: dict[str, Any] = {
        "identifier": [ident], "status": REPORT_FHIR_STATUS[r.status], "category": [RADIOLOGY], "code": IMAGING_REPORT,
        "subject": _subject(r, o), "imagingStudy": [{"type": "ImagingStudy", "identifier": _uid_identifier(r.study_uid)}],
        "issued": _instant(r.signed_at or r.created_at), "presentedForm": forms}
    if impression:
        report["conclusion"] = impression
    if r.signed_by and r.status != PRELIMINARY:
        report["resultsInterpreter"] = [{"type": "Practitioner", "display": r.signed_by}]
    if (when := _fhir_time(r.study_date, r.study_time)) is not None:
        report["effectiveDateTime"] = when
    resource = DiagnosticReport(**report)
    url = f"urn:uuid:{uuid.uuid5(uuid.NAMESPACE_OID, ident['value'])}"
    return Bundle(type="transaction", entry=[{"fullUrl": url, "resource": resource,
                                              "request": {"method": "PUT", "url": _put_url(resource)}}])


# --------------------------------------------------------------------------- the client


class FhirClient:
    """Posts transaction Bundles to a FHIR server's base URL with a bearer token (a string, or a callable
    that returns a current one)."""

    def __init__(self, base_url: str, token: str | Callable[[], str] | None = None, *,
                 timeout: httpx.Timeout | float = httpx.Timeout(30.0, connect=10.0),
                 verify: Any = True, transport: httpx.BaseTransport | None = None) -> None:
        self.base_url, self.token = base_url.rstrip("/"), token
        self._http = httpx.Client(timeout=timeout, verify=verify, transport=transport)

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> FhirClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def send(self, bundle: Bundle) -> dict[str, Any]:
        """Post ``bundle``; the server's transaction-response Bundle, or `SendError`."""
        headers = {"Content-Type": "application/fhir+json", "Accept": "application/fhir+json"}
        token = self.token() if callable(self.token) else self.token
        if token:
            headers["Authorization"] = f"Bearer {token}"
        try:
            reply = self._http.post(self.base_url + "/", content=bundle.model_dump_json(), headers=headers)
        except httpx.TimeoutException as exc:
            raise SendError(f"FHIR: timed out ({type(exc).__name__})") from exc
        except httpx.HTTPError as exc:
            raise SendError(f"FHIR: {type(exc).__name__}") from exc
        code = reply.status_code
        if 200 <= code < 300:
            try:
                return reply.json()
            except ValueError:
                return {}
        permanent = 400 <= code < 500 and code not in (408, 429)
        raise SendError(f"FHIR server answered HTTP {code}", permanent=permanent)
