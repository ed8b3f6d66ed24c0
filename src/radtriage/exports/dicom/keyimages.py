"""Key images as Secondary Capture (one per finding with a key image PNG) and the Key Object Selection
that points at them and at the source slices the findings name.

Each SC carries the disclaimer three times: burned into its pixels (a band above the image), in
ImageComments and in the SeriesDescription, with BurnedInAnnotation YES.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import highdicom as hd
import numpy as np
from PIL import Image, ImageDraw, ImageFont
from pydicom.dataset import Dataset
from pydicom.sr.codedict import codes

from radtriage.domain.case import Finding
from radtriage.exports.dicom.source import Source, slice_normal
from radtriage.exports.dicom.sr import MANUFACTURER, clinical, device_context, series_description
from radtriage.exports.dicom.uids import Uids
from radtriage.exports.model import ExportedResult
from radtriage.imaging.keyimage import DISCLAIMER

_LETTERS = (("L", "R"), ("P", "A"), ("H", "F"))  # +x, -x / +y, -y / +z, -z in LPS


def burn_disclaimer(img: Image.Image) -> Image.Image:
    """The image with a band above it that reads the disclaimer (white on black, or yellow in colour),
    the font shrunk, and the text on two lines, until it fits the image's width."""
    mono = img.mode == "L"
    probe = ImageDraw.Draw(Image.new("L", (1, 1)))
    size = max(8, min(32, img.width // 24))
    lines = [DISCLAIMER]
    while True:
        font = ImageFont.load_default(size=size)
        if max(probe.textlength(t, font=font) for t in lines) <= img.width - 8 or size <= 8 and len(lines) > 1:
            break
        if size > 8:
            size -= 1
        else:
            lines, size = ["AI result -", "not for diagnosis"], max(8, min(32, img.width // 24))
    band = len(lines) * (size + 4) + 6
    out = Image.new(img.mode, (img.width, img.height + band), 0)
    out.paste(img, (0, band))
    draw = ImageDraw.Draw(out)
    for k, text in enumerate(lines):
        draw.text((4, 3 + k * (size + 4)), text, fill=255 if mono else (255, 255, 0), font=font)
    return out


def _pixels(path: str) -> tuple[np.ndarray, str]:
    with Image.open(path) as im:
        img = im.convert("L") if im.mode in ("L", "I", "I;16", "1") else im.convert("RGB")
    img = burn_disclaimer(img)
    return np.asarray(img, dtype=np.uint8), "MONOCHROME2" if img.mode == "L" else "RGB"


def _letter(v: np.ndarray) -> str:
    axis = int(np.argmax(np.abs(v)))
    return _LETTERS[axis][0 if v[axis] > 0 else 1]


def patient_orientation(header: Dataset) -> tuple[str, str]:
    """Which way the shown image's rows and columns point (from the source's orientation)."""
    if "ImageOrientationPatient" in header:
        iop = np.asarray(header.ImageOrientationPatient, float)
        return _letter(iop[:3]), _letter(iop[3:])
    given = [str(v)[:1] for v in header.get("PatientOrientation") or []]
    return (given[0], given[1]) if len(given) == 2 and all(given) else ("L", "F")


def finding_slice(source: Source, f: Finding) -> Dataset | None:
    """The source instance a finding names: its key slice, the slice through its centre, or the one image."""
    m = f.measurements
    if "key_slice" in m:
        return source.slice_reference(int(m["key_slice"]))
    if {"x_mm", "y_mm", "z_mm"} <= m.keys() and len(source.exported.instances) > 1:
        slices = source.slices
        normal = slice_normal(slices[0])
        centre = float(np.dot([m["x_mm"], m["y_mm"], m["z_mm"]], normal))
        depth = [float(np.dot(np.asarray(h.ImagePositionPatient, float), normal)) for h in slices]
        return source.slice_reference(int(np.argmin(np.abs(np.asarray(depth) - centre))))
    return source.references[0] if len(source.exported.instances) == 1 else None


def build_key_images(exported: ExportedResult, source: Source, uids: Uids) -> list[hd.sc.SCImage]:
    out = []
    shown = [f for f in clinical(exported.result.findings) if f.key_image and Path(f.key_image).is_file()]
    for i, f in enumerate(shown):
        pixels, photometric = _pixels(str(f.key_image))
        sc = hd.sc.SCImage.from_ref_dataset(
            ref_dataset=source.header, pixel_array=pixels, photometric_interpretation=photometric,
            bits_allocated=8, coordinate_system="PATIENT", series_instance_uid=uids.series("sc"),
            series_number=uids.series_number("sc"), sop_instance_uid=uids.sop(f"sc-{i}"),
            instance_number=exported.revision * 100 + i + 1, manufacturer=MANUFACTURER,
            patient_orientation=patient_orientation(source.header), transfer_syntax_uid="1.2.840.10008.1.2.1")
        sc.ImageComments = f"{DISCLAIMER}. {f.text}"[:10240]
        sc.SeriesDescription = series_description(exported, "key images")
        sc.BurnedInAnnotation = "YES"
        ref = finding_slice(source, f)
        if ref is not None:
            item = Dataset()
            item.ReferencedSOPClassUID, item.ReferencedSOPInstanceUID = ref.SOPClassUID, ref.SOPInstanceUID
            sc.SourceImageSequence = [item]
        out.append(sc)
    return out


def build_kos(exported: ExportedResult, source: Source, uids: Uids,
              key_images: list[hd.sc.SCImage]) -> hd.ko.KeyObjectSelectionDocument | None:
    """The key objects of a result: its key images and the source slices its findings name."""
    slices = [finding_slice(source, f) for f in clinical(exported.result.findings) if f.key_image]
    named: dict[str, Dataset] = {}
    for ds in [*key_images, *(s for s in slices if s is not None)]:
        named.setdefault(ds.SOPInstanceUID, ds)
    if not named:
        return None
    return _kos(exported, uids, "kos", codes.DCM.OfInterest, list(named.values()),
                f"{DISCLAIMER}: {exported.pipeline_title}", "key objects")


def build_rejection(exported: ExportedResult, uids: Uids, rejected: list[Dataset]) -> hd.ko.KeyObjectSelectionDocument:
    """An IHE IOCM rejection note for a withdrawn result: a Key Object Selection titled "Rejected for Patient
    Safety Reasons" (DCM 113037) naming the objects sent before (SR, key images, their KOS, SEG), so a PACS
    that follows IOCM hides them; the withdrawal SR stays and says why."""
    return _kos(exported, uids, "rejection", codes.DCM.RejectedForPatientSafetyReasons, rejected,
                f"AI result withdrawn: {exported.notes.get('reason') or 'do not use'}", "rejection note")


def _kos(exported: ExportedResult, uids: Uids, kind: str, title: Any, objects: list[Dataset], description: str,
         what: str) -> hd.ko.KeyObjectSelectionDocument:
    """A Key Object Selection document of ``objects`` titled ``title``, in the result's ``kind`` series."""
    content = hd.ko.KeyObjectSelection(document_title=title, referenced_objects=objects,
                                       observer_device_context=device_context(exported, uids),
                                       description=description[:1024])
    kos = hd.ko.KeyObjectSelectionDocument(
        evidence=objects, content=content, series_instance_uid=uids.series(kind),
        series_number=uids.series_number(kind), sop_instance_uid=uids.sop(kind),
        instance_number=exported.revision + 1, manufacturer=MANUFACTURER)
    kos.SeriesDescription = series_description(exported, what)
    return kos
