"""How each channel delivers one result to one destination: dicom (C-STORE of SR, key images + KOS, SEG),
hl7 (ORU^R01 over MLLP) and fhir (DiagnosticReport with its Observations); and a radiologist's report
(`ExportedReport`: its TID 2000 SR, its ORU, its DiagnosticReport)."""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from radtriage.config import Settings
from radtriage.config.exports import DicomDestination, FhirDestination, Hl7Destination
from radtriage.exports.model import ExportedReport, ExportedResult
from radtriage.exports.sender import Deliver, note
from radtriage.outbox import Attempt


def _dicom(calling_ae: str, site_key: bytes) -> Deliver:
    def deliver(dest: DicomDestination, result: ExportedResult, attempt: Attempt) -> None:
        from radtriage.exports.dicom import build
        from radtriage.exports.send_dicom import store

        if isinstance(result, ExportedReport):  # a radiologist's report: its SR alone
            from radtriage.exports.report_dicom import build_report_sr

            for text in store(dest, calling_ae, [build_report_sr(result, site_key)]).notes:
                note(attempt, text)
            return
        objs = build(result, site_key=site_key)
        images = [*objs.key_images, *([objs.kos] if objs.kos is not None else [])]
        wanted: list[Any] = [objs.sr] if "sr" in dest.objects else []
        if "key_images" in dest.objects:
            wanted += images
        if "seg" in dest.objects and objs.seg is not None:
            wanted.append(objs.seg)
        if objs.rejection is not None:  # a withdrawal: the IOCM rejection note of what was sent before
            wanted.append(objs.rejection)
        done = store(dest, calling_ae, wanted, fallback=[] if "key_images" in dest.objects else images)
        for text in done.notes:
            note(attempt, text)

    return deliver


def _hl7() -> Deliver:
    def deliver(dest: Hl7Destination, result: ExportedResult, attempt: Attempt) -> None:
        from radtriage.exports.hl7 import Hl7Options, MllpClient, oru_er7, report_er7

        options = Hl7Options(sending_application=dest.sending_application, sending_facility=dest.sending_facility,
                             receiving_application=dest.receiving_application,
                             receiving_facility=dest.receiving_facility, accession_in=dest.accession_in)
        build = report_er7 if isinstance(result, ExportedReport) else oru_er7
        message = build(result, f"RT{attempt.item['id']}", options)  # a resend of the row keeps its control id
        tls = dest.tls.context() if dest.tls is not None else None
        MllpClient(dest.host, dest.port, ssl_context=tls, server_hostname=dest.host if tls else None,
                   connect_timeout_s=min(dest.timeout_s, 10.0), read_timeout_s=dest.timeout_s).send(message)

    return deliver


def _fhir(site_key: bytes, environ: Mapping[str, str]) -> Deliver:
    def deliver(dest: FhirDestination, result: ExportedResult, attempt: Attempt) -> None:
        from radtriage.exports.fhir import FhirClient, FhirOptions, build_bundle, build_report_bundle

        token = environ.get(dest.token_env) if dest.token_env else None
        verify: Any = dest.tls.context() if dest.tls is not None else True
        with FhirClient(dest.base_url, token, timeout=dest.timeout_s, verify=verify) as client:
            build = build_report_bundle if isinstance(result, ExportedReport) else build_bundle
            client.send(build(result, FhirOptions(site_key=site_key)))

    return deliver


def channels(settings: Settings, environ: Mapping[str, str] | None = None) -> dict[str, Deliver]:
    """The deliver function of each channel. Objects' UIDs are keyed to this site by its AE title (stable:
    a resend after any restart or key rotation reuses them)."""
    site_key = settings.ae_title.encode()
    environ = os.environ if environ is None else environ
    return {"dicom": _dicom(settings.ae_title, site_key), "hl7": _hl7(), "fhir": _fhir(site_key, environ)}
