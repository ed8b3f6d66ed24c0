"""LUNA16 (LIDC-IDRI subset, Grand Challenge 2016) as downloaded.

Layout::

    root/annotations.csv            seriesuid,coordX,coordY,coordZ,diameter_mm
    root/subset0/<seriesuid>.mhd    MetaImage header (+ <seriesuid>.raw)
    ...
    root/subset9/...
    root/candidates*.csv, seg-lungs-LUNA16/, evaluationScript/   (ignored)

Annotation coordinates are world mm in the frame of the .mhd Offset and
TransformMatrix, which ITK reads as LPS, the frame of `Volume`; so
``Volume.lps_to_voxel(centre_mm)`` of a loaded scan is the nodule's voxel. A
scan without annotation rows is a negative (``nodules == []``); annotation
rows for scans not on disk (a partial download) and unreadable rows are
counted and logged once.
"""

from __future__ import annotations

import logging
import re
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import SimpleITK as sitk

from radtriage.datasets import Example
from radtriage.datasets._tables import DatasetError, Skips, finite, logged, read_table
from radtriage.imaging.volume import Volume, VolumeError

log = logging.getLogger(__name__)

ANNOTATIONS = "annotations.csv"
SUBSET_GLOB = "subset*"
_COLUMNS = {"seriesuid": ["seriesuid"], "x": ["coordX"], "y": ["coordY"], "z": ["coordZ"],
            "diameter": ["diameter_mm"]}
_UID = re.compile(r"^[0-9.]{1,64}$")


def is_layout(root: Path) -> bool:
    root = Path(root)
    return (root / ANNOTATIONS).is_file() and any(p.is_dir() for p in root.glob(SUBSET_GLOB))


def _header(path: Path) -> dict[str, str]:
    """The ``key = value`` lines of a MetaImage header (stops at ElementDataFile)."""
    out: dict[str, str] = {}
    with open(path, encoding="latin-1") as f:
        for n, line in enumerate(f):
            if n > 200:
                break
            key, sep, value = line.partition("=")
            if sep:
                out[key.strip()] = value.strip()
                if key.strip() == "ElementDataFile":
                    break
    return out


@dataclass(frozen=True)
class LunaScan:
    seriesuid: str
    mhd: Path
    nodules: tuple[dict[str, Any], ...]

    def load(self) -> Volume:
        return read_mhd(self.mhd, meta={"Modality": "CT", "SeriesInstanceUID": self.seriesuid})


def read_mhd(path: Path, meta: dict[str, Any] | None = None) -> Volume:
    """A 3D MetaImage (or any SimpleITK-readable 3D image) as a (z, y, x) float32 Volume in LPS."""
    try:
        img = sitk.ReadImage(str(path))
    except RuntimeError as e:
        raise VolumeError(f"{path}: SimpleITK cannot read it ({str(e).strip().splitlines()[-1]})") from None
    if img.GetDimension() != 3 or img.GetNumberOfComponentsPerPixel() != 1:
        raise VolumeError(f"{path}: expected a 3D single-channel image, got {img.GetDimension()}D "
                          f"with {img.GetNumberOfComponentsPerPixel()} components")
    arr = sitk.GetArrayFromImage(img).astype(np.float32, copy=False)  # (z, y, x)
    sx, sy, sz = img.GetSpacing()
    return Volume(
        arr,
        (float(sz), float(sy), float(sx)),
        tuple(float(v) for v in img.GetOrigin()),
        np.asarray(img.GetDirection(), dtype=np.float64).reshape(3, 3),  # ITK: columns are the index axes
        dict(meta or {}),
    )


def read_annotations(path: Path, skips: Skips) -> dict[str, list[dict[str, Any]]]:
    out: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for _, row in read_table(path, _COLUMNS):
        uid = row["seriesuid"]
        centre = [finite(row[k]) for k in ("x", "y", "z")]
        diameter = finite(row["diameter"])
        if not _UID.match(uid):
            skips.add("annotation rows with an unreadable seriesuid")
        elif any(c is None for c in centre) or diameter is None or not 0 < diameter < 500:
            skips.add("annotation rows with unreadable coordinates or diameter")
        else:
            out[uid].append({"centre_mm": centre, "diameter_mm": diameter, "type": None})
    return dict(out)


def index(root: Path) -> tuple[list[LunaScan], Skips]:
    root = Path(root)
    if not is_layout(root):
        raise DatasetError(f"{root}: not a LUNA16 layout (looked for {ANNOTATIONS} and {SUBSET_GLOB}/ folders)")
    skips = Skips(f"LUNA16 {root}")
    annotations = read_annotations(root / ANNOTATIONS, skips)
    scans: dict[str, Path] = {}
    for subset in sorted(p for p in root.glob(SUBSET_GLOB) if p.is_dir()):
        for mhd in sorted(subset.rglob("*.mhd")):  # rglob: zips often unpack as subsetN/subsetN/
            uid = mhd.stem
            if uid in scans:
                skips.add("scans found twice (first kept)")
                continue
            try:
                header = _header(mhd)
            except OSError:
                skips.add("unreadable .mhd headers")
                continue
            data = header.get("ElementDataFile", "")
            if header.get("NDims") != "3" or not data:
                skips.add(".mhd files that are not 3D images")
                continue
            if data != "LOCAL" and not (mhd.parent / data).is_file():
                skips.add(".mhd files whose .raw is missing")
                continue
            scans[uid] = mhd
    skips.add("annotated scans not on disk (partial download?)", len(annotations.keys() - scans.keys()))
    out = [LunaScan(uid, scans[uid], tuple(annotations.get(uid, ()))) for uid in sorted(scans)]
    return out, skips


def examples(root: Path, task: str = "nodule") -> Iterator[Example]:
    """One nodule Example per scan in the subsets, in seriesuid order (negatives included).

    The task was checked by `radtriage.datasets.layouts.examples`.
    """
    for s in logged(index(root), log):
        yield Example(id=s.seriesuid, task="nodule", label={"nodules": [{**n, "centre_mm": list(n["centre_mm"])} for n in s.nodules]}, load=s.load)
