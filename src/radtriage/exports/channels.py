"""How each channel delivers one result to one destination: dicom (C-STORE of SR, key images + KOS, SEG),
hl7 (ORU^R01 over MLLP) and fhir (DiagnosticReport with its Observations)."""

from __future__ import annotations

from typing import Any

from radtriage.config import Settings
from radtriage.config.exports import DicomDestination
from radtriage.exports.model import ExportedResult
from radtriage.exports.sender import Deliver, note
from radtriage.outbox import Attempt


def _dicom(calling_ae: str, site_key: bytes) -> Deliver:
    def deliver(dest: DicomDestination, result: ExportedResult, attempt: Attempt) -> None:
        from radtriage.exports.dicom import build
        from radtriage.exports.send_dicom import store

        objs = build(result, site_key=site_key)
        images = [*objs.key_images, *([objs.kos] if objs.kos is not None else [])]
        wanted: list[Any] = [objs.sr] if "sr" in dest.objects else []
        if "key_images" in dest.objects:
            wanted += images
        if "seg" in dest.objects and objs.seg is not None:
            wanted.append(objs.seg)
        done = store(dest, calling_ae, wanted, fallback=[] if "key_images" in dest.objects else images)
        for text in done.notes:
            note(attempt, text)

    return deliver


def channels(settings: Settings) -> dict[str, Deliver]:
    """The deliver function of each channel. Objects' UIDs are keyed to this site by its AE title (stable:
    a resend after any restart or key rotation reuses them)."""
    site_key = settings.ae_title.encode()
    return {"dicom": _dicom(settings.ae_title, site_key)}
