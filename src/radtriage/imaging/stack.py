"""Frames of one series to one 3D `Volume`: plane checks, order along the normal, spacing, tilt.

`stack` takes the image instances of a series (their frames from
`radtriage.imaging.frames`), in steps:

1. `_plane`: one size, one orientation, one pixel spacing, or `VolumeError`;
2. `_order`: sorted along the normal of the first frame given; at one
   position the highest InstanceNumber, then the one given last
   (``duplicate-positions``);
3. `_slice_steps`: the median step; a gap above ``GAP_FACTOR`` steps is
   ``missing-slices``, positions off the uniform grid ``non-uniform-spacing``;
4. `_drift`: in-plane drift of the positions is ``gantry-tilt``;
5. pixels decoded and rescaled (`radtriage.imaging.decode.decode_frames`);
6. `_untilt`: the tilt sheared out (``tilt-corrected``) or kept in a
   non-orthogonal direction;
7. `_fill_gaps`: resampled onto a uniform grid (``resampled``) or kept, with
   the missing slices' positions in the meta.

See `radtriage.imaging.series` for what each flag and meta key means.
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass
from typing import Any

import numpy as np
import pydicom

from radtriage.imaging.decode import decode_frames
from radtriage.imaging.frames import Frame, frames_of, group_value
from radtriage.imaging.volume import Volume, VolumeError, header_meta

ORIENTATION_TOLERANCE = 0.01  # largest difference of a direction cosine between frames (~0.6 degree)
PIXEL_SPACING_TOLERANCE = 1e-3  # relative
DUPLICATE_TOLERANCE_MM = 0.01  # positions closer than this along the normal are one position
GAP_FACTOR = 1.5  # a gap above this many median steps holds missing slices
UNIFORM_TOLERANCE = 0.1  # of a step: positions off the uniform grid by more are non-uniform
DRIFT_TOLERANCE_PX = 0.25  # in-plane drift of slice positions above this (pixels) is gantry tilt


@dataclass(frozen=True)
class _Plane:
    """The image plane every frame shares."""

    rows: int
    cols: int
    dy: float  # mm between rows
    dx: float  # mm between columns
    row: np.ndarray  # LPS direction along a row (x)
    col: np.ndarray  # LPS direction along a column (y)
    normal: np.ndarray


@dataclass(frozen=True)
class _Steps:
    step: float  # the median step (mm) along the normal
    fitted: float  # first to last position over the number of steps
    gap_missing: np.ndarray  # per gap: slices missing in it
    uniform: bool


@dataclass(frozen=True)
class _Drift:
    a: np.ndarray  # mm of each position from the first along the row direction
    b: np.ndarray  # ... along the column direction
    tilted: bool
    sa: float  # fitted drift per mm of depth along the row direction
    sb: float  # ... along the column direction


def _basis(iop: np.ndarray, where: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    row, col = iop[:3], iop[3:]
    nr = np.linalg.norm(row)
    if nr < 0.5:
        raise VolumeError(f"{where}: degenerate ImageOrientationPatient")
    row = row / nr
    col = col - (col @ row) * row
    nc = np.linalg.norm(col)
    if nc < 0.5:
        raise VolumeError(f"{where}: degenerate ImageOrientationPatient")
    col = col / nc
    return row, col, np.cross(row, col)


def _fill_value(arr: np.ndarray, modality: str) -> float:
    low = float(arr.min()) if arr.size else 0.0
    return max(low, -1024.0) if modality == "CT" else low


def _plane(frames: list[Frame]) -> _Plane:
    """The frames' common size, orientation and pixel spacing; `VolumeError` where they differ."""
    f0 = frames[0]
    rows, cols = int(f0.ds.Rows), int(f0.ds.Columns)
    for f in frames:
        if (int(f.ds.Rows), int(f.ds.Columns)) != (rows, cols):
            raise VolumeError(f"instances of different sizes in one series ({rows}x{cols} and "
                              f"{int(f.ds.Rows)}x{int(f.ds.Columns)})")
    iops = np.stack([f.orientation for f in frames])
    if np.max(np.abs(iops - iops[0])) > ORIENTATION_TOLERANCE:
        raise VolumeError("instances with different orientations in one series (more than one stack or plane)")
    spacings = np.stack([f.pixel_spacing for f in frames])
    if np.max(np.abs(spacings - spacings[0])) > PIXEL_SPACING_TOLERANCE * float(np.max(spacings[0])):
        raise VolumeError("instances with different pixel spacings in one series")
    dy, dx = float(spacings[0][0]), float(spacings[0][1])
    if dy <= 0 or dx <= 0:
        raise VolumeError(f"{f0.where}: PixelSpacing must be positive")
    return _Plane(rows, cols, dy, dx, *_basis(f0.orientation, f0.where))


def _order(frames: list[Frame], normal: np.ndarray, flags: list[str], extra: dict[str, Any]
           ) -> tuple[list[Frame], np.ndarray, np.ndarray]:
    """The frames sorted along the normal, one per position, with their positions and depths."""
    pos = np.stack([f.position for f in frames])
    depth = pos @ normal
    order = np.lexsort((np.arange(len(frames)), [f.instance for f in frames], depth))
    d_sorted = depth[order]
    keep = np.append(np.diff(d_sorted) > DUPLICATE_TOLERANCE_MM, True)
    if not keep.all():
        if keep.sum() == 1:
            raise VolumeError(f"all {len(frames)} frames lie at one position: a repeated or dynamic "
                              "acquisition, not a stack")
        flags.append("duplicate-positions")
        extra["duplicate_positions_dropped"] = int((~keep).sum())
    order = order[keep]
    return [frames[i] for i in order], pos[order], depth[order]


def _single_slice_step(f: Frame) -> float:
    ds = f.ds
    for value in (ds.get("SpacingBetweenSlices"), ds.get("SliceThickness")):
        if value not in (None, ""):
            try:
                if float(value) > 0:
                    return float(value)
            except (TypeError, ValueError):
                pass
    if f.frame is not None:
        value = group_value(ds, f.frame, "PixelMeasuresSequence", "SliceThickness")
        if value is not None and float(value) > 0:
            return float(value)
    return 1.0


def _slice_steps(first: Frame, d: np.ndarray, flags: list[str]) -> _Steps:
    """The step between slices and whether the depths ``d`` lie on a uniform grid without gaps."""
    m = len(d)
    step = fitted = _single_slice_step(first)
    gap_missing = np.zeros(max(m - 1, 0), dtype=bool)
    uniform = True
    if m > 1:
        gaps = np.diff(d)
        step = float(np.median(gaps))
        fitted = float((d[-1] - d[0]) / (m - 1))
        gap_missing = gaps > GAP_FACTOR * step
        uniform = not gap_missing.any() and bool(
            np.max(np.abs(d - (d[0] + np.arange(m) * fitted))) <= UNIFORM_TOLERANCE * fitted)
        if gap_missing.any():
            flags.append("missing-slices")
        elif not uniform:
            flags.append("non-uniform-spacing")
    return _Steps(step, fitted, gap_missing, uniform)


def _drift(pos: np.ndarray, d: np.ndarray, plane: _Plane, flags: list[str], extra: dict[str, Any]) -> _Drift:
    """In-plane drift of the slice positions: gantry tilt, and its slope per mm of depth."""
    rel = pos - pos[0]
    a, b = rel @ plane.row, rel @ plane.col  # mm along the row (x) and column (y) directions
    tilted = len(pos) > 1 and max(float(np.max(np.abs(a))) / plane.dx,
                                  float(np.max(np.abs(b))) / plane.dy) > DRIFT_TOLERANCE_PX
    sa = sb = 0.0
    if tilted:
        if np.max(np.abs(a)) > plane.cols * plane.dx or np.max(np.abs(b)) > plane.rows * plane.dy:
            raise VolumeError("slice positions do not overlap in the image plane: not one stack")
        sa, sb = (float(np.polyfit(d - d[0], v, 1)[0]) for v in (a, b))
        flags.append("gantry-tilt")
        extra["gantry_tilt_deg"] = round(math.degrees(math.atan(math.hypot(sa, sb))), 2)
    return _Drift(a, b, tilted, sa, sb)


def _untilt(arr: np.ndarray, drift: _Drift, plane: _Plane, first: pydicom.Dataset, pos0: np.ndarray,
            correct_tilt: bool, flags: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """(origin, stacking axis): slices shifted in place onto an orthogonal grid when tilted and asked to."""
    origin = pos0.copy()
    axis = plane.normal  # LPS mm per mm of depth along the stack
    if drift.tilted and correct_tilt:
        from scipy import ndimage

        a, b = drift.a, drift.b
        a_ref = (float(a.min()) + float(a.max())) / 2
        b_ref = (float(b.min()) + float(b.max())) / 2
        fill = _fill_value(arr, str(first.get("Modality", "")).upper())
        for k in range(len(arr)):
            shift = ((b[k] - b_ref) / plane.dy, (a[k] - a_ref) / plane.dx)
            if max(abs(shift[0]), abs(shift[1])) > 1e-3:
                arr[k] = ndimage.shift(arr[k], shift, order=1, mode="constant", cval=fill, prefilter=False)
        origin = pos0 + a_ref * plane.row + b_ref * plane.col
        flags.append("tilt-corrected")
    elif drift.tilted:
        axis = plane.normal + drift.sa * plane.row + drift.sb * plane.col
    return origin, axis


def _fill_gaps(arr: np.ndarray, d: np.ndarray, steps: _Steps, n_out: int, origin: np.ndarray, axis: np.ndarray,
               resample: bool, flags: list[str], extra: dict[str, Any]) -> tuple[np.ndarray, float]:
    """(stack, step along it): resampled onto a uniform grid where asked; missing slices listed in ``extra``."""
    m, step = len(d), steps.step
    dz = steps.fitted if steps.uniform else step
    if m > 1 and resample and not steps.uniform:
        arr, missing_idx = _resample_depth(arr, d, step, n_out, steps.gap_missing)
        flags.append("resampled")
        if missing_idx:
            extra["missing_slice_indices"] = missing_idx
        missing_depths = [d[0] + j * step for j in missing_idx]
    else:
        missing_depths = [d[k] + i * step for k in np.flatnonzero(steps.gap_missing)
                          for i in range(1, int(round((d[k + 1] - d[k]) / step)))]
    if missing_depths:
        extra["missing_slice_positions"] = [
            [round(float(v), 2) for v in origin + (t - d[0]) * axis] for t in missing_depths]
    return arr, dz


def _stack_meta(first: Frame, left_out: Counter, extra: dict[str, Any]) -> dict[str, Any]:
    meta = header_meta(first.ds)
    if "SliceThickness" not in meta and first.frame is not None:
        thickness = group_value(first.ds, first.frame, "PixelMeasuresSequence", "SliceThickness")
        if thickness is not None:
            meta["SliceThickness"] = float(thickness)
    if left_out:
        meta["left_out"] = dict(left_out)
    meta.update(extra)
    return meta


def stack(items: list[tuple[str, pydicom.Dataset]], left_out: Counter, *, resample: bool, correct_tilt: bool,
          max_voxels: int) -> Volume:
    """(where, dataset) of a series' image instances with geometry to one (z, y, x) float32 volume."""
    frames: list[Frame] = []
    for where, ds in items:
        frames += frames_of(ds, where, left_out)
    if not frames:
        raise VolumeError("no image frames (localizer frames are left out)")
    f0 = frames[0]
    plane = _plane(frames)
    flags: list[str] = []
    extra: dict[str, Any] = {}
    frames, pos, d = _order(frames, plane.normal, flags, extra)
    m = len(frames)
    steps = _slice_steps(f0, d, flags)
    drift = _drift(pos, d, plane, flags, extra)
    resampling = m > 1 and resample and not steps.uniform
    n_out = int(np.floor((d[-1] - d[0]) / steps.step + 1e-3)) + 1 if resampling else m
    if n_out * plane.rows * plane.cols > max_voxels:
        raise VolumeError(f"resampled volume would exceed {max_voxels} voxels")
    arr = decode_frames(frames, plane.rows, plane.cols)
    origin, axis = _untilt(arr, drift, plane, f0.ds, pos[0], correct_tilt, flags)
    arr, dz = _fill_gaps(arr, d, steps, n_out, origin, axis, resample, flags, extra)
    axis_len = float(np.linalg.norm(axis))
    return Volume(
        arr,
        (dz * axis_len, plane.dy, plane.dx),
        tuple(float(v) for v in origin),
        np.stack([plane.row, plane.col, axis / axis_len], axis=1),
        _stack_meta(frames[0], left_out, extra),
        tuple(flags),
    )


def _resample_depth(arr: np.ndarray, d: np.ndarray, step: float, n_out: int,
                    gap_missing: np.ndarray) -> tuple[np.ndarray, list[int]]:
    """Linear interpolation along the stack from depths ``d`` to ``d[0] + j * step``.

    Returns the new stack and the indices of output slices that lie inside a gap
    (more than half a step from any acquired slice).
    """
    m = len(d)
    t = d[0] + np.arange(n_out) * step
    idx = np.clip(np.searchsorted(d, t, side="right") - 1, 0, m - 2)
    w = np.clip((t - d[idx]) / (d[idx + 1] - d[idx]), 0.0, 1.0)
    out = np.empty((n_out, *arr.shape[1:]), dtype=np.float32)
    missing: list[int] = []
    for j in range(n_out):
        i, wj = int(idx[j]), float(w[j])
        if wj < 1e-4:
            out[j] = arr[i]
        elif wj > 1 - 1e-4:
            out[j] = arr[i + 1]
        else:
            np.multiply(arr[i], 1.0 - wj, out=out[j])
            out[j] += wj * arr[i + 1]
        if gap_missing[i] and min(t[j] - d[i], d[i + 1] - t[j]) > 0.5 * step:
            missing.append(j)
    return out, missing
