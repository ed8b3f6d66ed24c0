"""`Volume`: the pixels of one series with their geometry and the header keywords models need.

A CT series is a (z, y, x) float32 array in Hounsfield units; a radiograph a
(y, x) float32 array where denser is brighter. Geometry follows DICOM: origin
and direction in the patient (LPS) frame, spacing in mm in the array's axis
order. `radtriage.imaging.series.load_series` makes one from the files of a
series.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pydicom

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
    # e.g. "missing-slices", "non-uniform-spacing", "resampled", "gantry-tilt", "tilt-corrected",
    # "duplicate-positions"
    flags: tuple[str, ...] = ()

    @property
    def is_2d(self) -> bool:
        return self.array.ndim == 2

    def voxel_to_lps(self, zyx: np.ndarray) -> np.ndarray:
        """Voxel indices (..., 3) in (z, y, x) order to LPS mm."""
        zyx = np.asarray(zyx, dtype=np.float64)
        xyz_mm = zyx[..., ::-1] * np.asarray(self.spacing[::-1])
        return np.asarray(self.origin) + xyz_mm @ np.asarray(self.direction).T

    def lps_to_voxel(self, lps: np.ndarray) -> np.ndarray:
        """LPS mm (..., 3) to voxel indices in (z, y, x) order (float).

        Uses the inverse of ``direction`` (its transpose when orthonormal), so it
        also inverts `voxel_to_lps` for an uncorrected gantry-tilted stack.
        """
        rel = (np.asarray(lps, dtype=np.float64) - np.asarray(self.origin)) @ np.linalg.inv(
            np.asarray(self.direction, dtype=np.float64)).T
        return (rel / np.asarray(self.spacing[::-1]))[..., ::-1]


def header_meta(ds: pydicom.Dataset) -> dict[str, Any]:
    """The header keywords models and the worklist use (`META_KEYWORDS`), as plain strings and numbers."""
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
