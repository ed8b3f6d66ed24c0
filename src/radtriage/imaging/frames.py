"""The image frames of an instance, each with its geometry and rescale, read from the header.

A single-frame instance is one `Frame` (its ImagePositionPatient,
ImageOrientationPatient, PixelSpacing, RescaleSlope/Intercept). An enhanced
multi-frame object (Enhanced CT/MR, Legacy Converted) gives one `Frame` per
frame, each attribute from the frame's per-frame functional group, else the
shared one, else the top level; localizer frames (``FrameType``) are left
out and counted. Nothing is decoded here (`radtriage.imaging.decode`).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Any

import numpy as np
import pydicom

from radtriage.imaging.decode import int_value, number_of_frames, rescale
from radtriage.imaging.volume import VolumeError

FRAME_TYPE_SEQUENCES = ("CTImageFrameTypeSequence", "MRImageFrameTypeSequence")


@dataclass
class Frame:
    ds: pydicom.Dataset
    frame: int | None  # index into a multi-frame object's frames; None for a single-frame one
    where: str
    position: np.ndarray
    orientation: np.ndarray
    pixel_spacing: np.ndarray
    slope: float
    intercept: float
    instance: int


def _vector(value: Any, n: int, what: str, where: str) -> np.ndarray:
    try:
        out = np.asarray([float(v) for v in value], dtype=np.float64)
    except (TypeError, ValueError):
        raise VolumeError(f"{where}: malformed {what}") from None
    if out.shape != (n,) or not np.all(np.isfinite(out)):
        raise VolumeError(f"{where}: malformed {what}")
    return out


def _is_enhanced(ds: pydicom.Dataset) -> bool:
    return "PerFrameFunctionalGroupsSequence" in ds or "SharedFunctionalGroupsSequence" in ds


def group_value(ds: pydicom.Dataset, frame: int, sequence: str, keyword: str) -> Any:
    """A functional-group attribute of one frame: its per-frame group first, then the shared one."""
    items = []
    per_frame = ds.get("PerFrameFunctionalGroupsSequence")
    if per_frame is not None and frame < len(per_frame):
        items.append(per_frame[frame])
    shared = ds.get("SharedFunctionalGroupsSequence")
    if shared:
        items.append(shared[0])
    for item in items:
        seq = item.get(sequence)
        if seq:
            value = seq[0].get(keyword)
            if value is not None and value != "":
                return value
    return None


def has_geometry(ds: pydicom.Dataset) -> bool:
    """Whether the instance says where its (first) frame lies in the patient."""
    if "ImagePositionPatient" in ds:
        return True
    return _is_enhanced(ds) and group_value(ds, 0, "PlanePositionSequence", "ImagePositionPatient") is not None


def _single_frame(ds: pydicom.Dataset, where: str, instance: int) -> Frame:
    if number_of_frames(ds, where) > 1:
        raise VolumeError(f"{where}: multi-frame instance without per-frame geometry is not supported")
    if "ImageOrientationPatient" not in ds:
        raise VolumeError(f"{where}: no ImageOrientationPatient")
    return Frame(
        ds, None, where,
        _vector(ds.ImagePositionPatient, 3, "ImagePositionPatient", where),
        _vector(ds.ImageOrientationPatient, 6, "ImageOrientationPatient", where),
        _vector(ds.get("PixelSpacing") or [1.0, 1.0], 2, "PixelSpacing", where),
        *rescale(ds.get("RescaleSlope"), ds.get("RescaleIntercept"), where), instance,
    )


def _is_localizer_frame(ds: pydicom.Dataset, f: int) -> bool:
    return any("LOCALIZER" in [str(v).upper() for v in (group_value(ds, f, seq, "FrameType") or [])]
               for seq in FRAME_TYPE_SEQUENCES)


def _enhanced_frame(ds: pydicom.Dataset, f: int, where: str, instance: int) -> Frame:
    fwhere = f"{where} frame {f + 1}"
    ipp = group_value(ds, f, "PlanePositionSequence", "ImagePositionPatient")
    iop = group_value(ds, f, "PlaneOrientationSequence", "ImageOrientationPatient")
    if ipp is None or iop is None:
        raise VolumeError(f"{fwhere}: no plane position/orientation in its functional groups")
    spacing = group_value(ds, f, "PixelMeasuresSequence", "PixelSpacing") or ds.get("PixelSpacing") or [1.0, 1.0]
    slope = group_value(ds, f, "PixelValueTransformationSequence", "RescaleSlope")
    intercept = group_value(ds, f, "PixelValueTransformationSequence", "RescaleIntercept")
    slope, intercept = rescale(ds.get("RescaleSlope") if slope is None else slope,
                               ds.get("RescaleIntercept") if intercept is None else intercept, fwhere)
    return Frame(ds, f, fwhere, _vector(ipp, 3, "ImagePositionPatient", fwhere),
                 _vector(iop, 6, "ImageOrientationPatient", fwhere),
                 _vector(spacing, 2, "PixelSpacing", fwhere), slope, intercept, instance)


def frames_of(ds: pydicom.Dataset, where: str, left_out: Counter) -> list[Frame]:
    """The instance's image frames in its own order; localizer frames counted in ``left_out``."""
    instance = int_value(ds, "InstanceNumber", 0, where)
    if not _is_enhanced(ds):
        return [_single_frame(ds, where, instance)]
    out = []
    for f in range(number_of_frames(ds, where)):
        if _is_localizer_frame(ds, f):
            left_out["localizer"] += 1
            continue
        out.append(_enhanced_frame(ds, f, where, instance))
    return out
