"""Read one DICOM series into a `Volume`.

CT series become a (z, y, x) float32 array in Hounsfield units (rescale
applied), slices sorted along the slice normal, localizers left out. A
radiograph becomes a (y, x) float32 array where denser is brighter
(MONOCHROME1 inverted). Geometry follows DICOM: origin and direction in the
patient (LPS) frame, spacing in mm in the array's axis order.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pydicom
from pydicom.pixels import apply_rescale

RADIOGRAPH_MODALITIES = {"CR", "DX", "DR", "RF", "XA", "MG"}
META_KEYWORDS = (
    "Modality", "StudyInstanceUID", "SeriesInstanceUID", "SeriesNumber", "PatientSex", "PatientAge",
    "PatientBirthDate", "StudyDate", "Manufacturer", "ManufacturerModelName", "SliceThickness",
    "BodyPartExamined", "StudyDescription", "SeriesDescription", "ConvolutionKernel", "ContrastBolusAgent",
    "PhotometricInterpretation",
)


class VolumeError(ValueError):
    """A series that cannot be made into a volume (no pixels, mixed geometry...)."""


@dataclass(frozen=True)
class Volume:
    array: np.ndarray  # (z, y, x) HU for CT; (y, x) for a radiograph, denser = brighter
    spacing: tuple[float, ...]  # mm, in the array's axis order
    origin: tuple[float, float, float] = (0.0, 0.0, 0.0)  # LPS mm of array[0, 0, 0]
    direction: np.ndarray = field(default_factory=lambda: np.eye(3))  # columns: x (row), y (column), z (normal)
    meta: dict[str, Any] = field(default_factory=dict)
    flags: tuple[str, ...] = ()  # e.g. "missing-slices", "non-uniform-spacing"

    @property
    def is_2d(self) -> bool:
        return self.array.ndim == 2

    def voxel_to_lps(self, zyx: np.ndarray) -> np.ndarray:
        """Voxel indices (..., 3) in (z, y, x) order to LPS mm."""
        zyx = np.asarray(zyx, dtype=np.float64)
        xyz_mm = zyx[..., ::-1] * np.asarray(self.spacing[::-1])
        return np.asarray(self.origin) + xyz_mm @ np.asarray(self.direction).T

    def lps_to_voxel(self, lps: np.ndarray) -> np.ndarray:
        """LPS mm (..., 3) to voxel indices in (z, y, x) order (float)."""
        rel = (np.asarray(lps, dtype=np.float64) - np.asarray(self.origin)) @ np.asarray(self.direction)
        return (rel / np.asarray(self.spacing[::-1]))[..., ::-1]


def _meta(ds: pydicom.Dataset) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for kw in META_KEYWORDS:
        value = ds.get(kw)
        if value is None or value == "":
            continue
        if isinstance(value, pydicom.multival.MultiValue):
            value = [str(v) for v in value]
        elif isinstance(value, (pydicom.valuerep.DSfloat, pydicom.valuerep.IS)):
            value = float(value)
        else:
            value = str(value)
        out[kw] = value
    return out


def _is_localizer(ds: pydicom.Dataset) -> bool:
    return "LOCALIZER" in [str(v).upper() for v in ds.get("ImageType", [])]


def radiograph(ds: pydicom.Dataset) -> Volume:
    """One radiograph: denser brighter, rescale applied where present."""
    px = ds.pixel_array.astype(np.float32)
    if px.ndim == 3 and ds.get("SamplesPerPixel", 1) == 1:
        px = px[0]
    px = apply_rescale(px, ds).astype(np.float32) if "RescaleSlope" in ds else px
    if str(ds.get("PhotometricInterpretation", "")).upper() == "MONOCHROME1":
        px = px.max() - px
    spacing = ds.get("PixelSpacing") or ds.get("ImagerPixelSpacing") or [1.0, 1.0]
    return Volume(px, (float(spacing[0]), float(spacing[1])), meta=_meta(ds))


def load_series(paths: Iterable[Path]) -> Volume:
    """Files of one series to a Volume (CT stack or single radiograph)."""
    datasets = []
    for p in paths:
        ds = pydicom.dcmread(p)
        if "PixelData" not in ds or _is_localizer(ds):
            continue
        datasets.append(ds)
    if not datasets:
        raise VolumeError("no image instances (localizers and non-image objects are left out)")
    first = datasets[0]
    if str(first.get("Modality", "")).upper() in RADIOGRAPH_MODALITIES or "ImagePositionPatient" not in first:
        return radiograph(first)
    return _stack(datasets)


def _stack(datasets: list[pydicom.Dataset]) -> Volume:
    first = datasets[0]
    iop = np.asarray(first.ImageOrientationPatient, dtype=np.float64)
    row, col = iop[:3], iop[3:]
    normal = np.cross(row, col)
    pos = np.array([np.asarray(d.ImagePositionPatient, dtype=np.float64) for d in datasets])
    order = np.argsort(pos @ normal)
    datasets = [datasets[i] for i in order]
    pos = pos[order]
    depth = pos @ normal
    gaps = np.diff(depth)
    flags: list[str] = []
    if len(gaps):
        step = float(np.median(gaps))
        if step <= 0:
            raise VolumeError("instances share one position: not a single stack")
        if np.any(np.abs(gaps - step) > 0.1 * step):
            flags.append("missing-slices" if np.any(gaps > 1.5 * step) else "non-uniform-spacing")
    else:
        step = float(first.get("SliceThickness") or 1.0)
    shape = (int(first.Rows), int(first.Columns))
    arr = np.empty((len(datasets), *shape), dtype=np.float32)
    for i, d in enumerate(datasets):
        if (int(d.Rows), int(d.Columns)) != shape:
            raise VolumeError("instances of different sizes in one series")
        arr[i] = apply_rescale(d.pixel_array, d)
    ps = first.PixelSpacing
    return Volume(
        arr,
        (step, float(ps[0]), float(ps[1])),
        tuple(float(v) for v in pos[0]),
        np.stack([row, col, normal], axis=1),
        _meta(first),
        tuple(flags),
    )
