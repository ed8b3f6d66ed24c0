"""The DICOM objects radtriage sends to the PACS for one result (IHE AI Results), as pure functions of an
`ExportedResult` (they read its source headers and key image PNGs; no database, no network).

- `sr`: a Comprehensive 3D SR, TID 1500 measurement report (`radtriage.exports.dicom.sr`)
- `key_images`: a Secondary Capture per finding with a key image, the disclaimer burned in
- `kos`: a Key Object Selection pointing at the key images and the source slices the findings name
- `seg`: a binary SEG of the regions the result gives (nodules; an ICH box), or None

Every Series and SOP Instance UID comes from `object_uid`, so a resend builds identical UIDs. The codes
used are listed in `radtriage.exports.dicom.codes` and docs/results-out.md.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import highdicom as hd
from pydicom.dataset import Dataset

from radtriage.exports.dicom.keyimages import build_key_images, build_kos, build_rejection
from radtriage.exports.dicom.seg import build_seg
from radtriage.exports.dicom.source import Source
from radtriage.exports.dicom.sr import build_sr
from radtriage.exports.dicom.uids import Uids
from radtriage.exports.model import CORRECTED, PRELIMINARY, WITHDRAWN, ExportedResult

__all__ = ["ResultObjects", "build"]


@dataclass
class ResultObjects:
    sr: hd.sr.Comprehensive3DSR
    key_images: list[hd.sc.SCImage] = field(default_factory=list)
    kos: hd.ko.KeyObjectSelectionDocument | None = None
    seg: hd.seg.Segmentation | None = None
    rejection: hd.ko.KeyObjectSelectionDocument | None = None  # a withdrawal's IOCM rejection note

    def all(self) -> list[Dataset]:
        """Every object, in the order they are sent (images before the documents that reference them)."""
        return [*self.key_images, *([self.seg] if self.seg is not None else []), self.sr,
                *([self.kos] if self.kos is not None else []), *([self.rejection] if self.rejection else [])]


def build(exported: ExportedResult, site_key: bytes = b"") -> ResultObjects:
    """The DICOM objects of one result. A withdrawn result is its withdrawal SR alone."""
    source, uids = Source(exported), Uids(exported, site_key)
    sr = build_sr(exported, source, uids)
    if exported.status == WITHDRAWN:
        out = ResultObjects(sr=sr, rejection=_rejection(exported, uids, site_key))
    else:
        key_images = build_key_images(exported, source, uids)
        out = ResultObjects(sr=sr, key_images=key_images, kos=build_kos(exported, source, uids, key_images),
                            seg=build_seg(exported, source, uids))
    for ds in out.all():  # dated when the result was made, so a resend is the same object
        _dated(ds, exported)
    return out


def _rejection(exported: ExportedResult, uids: Uids, site_key: bytes) -> hd.ko.KeyObjectSelectionDocument | None:
    """The IOCM rejection note of what the withdrawn revision had sent (rebuilt: the same UIDs)."""
    revision = int(exported.notes.get("replaces_revision", max(exported.revision - 1, 0)))
    sent = build(replace(exported, status=CORRECTED if revision else PRELIMINARY, revision=revision,
                         result_id=exported.replaces or exported.result_id), site_key)
    return build_rejection(exported, uids, sent.all())


def _dated(ds: Dataset, exported: ExportedResult) -> None:
    date, time = exported.created_at.strftime("%Y%m%d"), exported.created_at.strftime("%H%M%S")
    for prefix in ("Content", "Series", "InstanceCreation"):
        if f"{prefix}Date" in ds or prefix == "Content":
            setattr(ds, f"{prefix}Date", date)
            setattr(ds, f"{prefix}Time", time)
