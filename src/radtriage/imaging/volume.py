"""Read one DICOM series into a `Volume`.

CT series become a (z, y, x) float32 array in Hounsfield units (rescale
applied), slices sorted along the slice normal, localizers left out. A
radiograph becomes a (y, x) float32 array where denser is brighter
(MONOCHROME1 inverted). Geometry follows DICOM: origin and direction in the
patient (LPS) frame, spacing in mm in the array's axis order.

Nothing read from the network is trusted. `load_series`:

* decodes every transfer syntax the listener accepts (native little/big
  endian, deflated, JPEG baseline/extended/lossless, JPEG-LS, JPEG 2000,
  HTJ2K, RLE) through pydicom and its plugins (gdcm, pylibjpeg, pyjpegls);
  a file that cannot be read or decoded is a `VolumeError` that names the
  problem and the instance's place in the list given (never a file name or a
  patient identifier);
* checks Rows x Columns x frames against ``max_voxels`` *before* decoding;
* accepts greyscale images only (MONOCHROME1/2, one sample per pixel);
* leaves out localizers (``ImageType`` or per-frame ``FrameType``) and
  non-image objects (no pixel data, SEG, RT, SR...); counts land in
  ``meta["left_out"]``;
* reads enhanced multi-frame objects (Enhanced CT/MR, Legacy Converted):
  each frame's position, orientation, pixel spacing and rescale come from its
  per-frame functional group, else the shared one; one file becomes a stack,
  and frames of several files join one stack;
* refuses mixed series (image instances of more than one SeriesInstanceUID,
  different Rows/Columns, orientations or pixel spacings): `VolumeError`;
* keeps one instance where several lie at one position (the highest
  InstanceNumber, then the one given last) and flags ``duplicate-positions``.

Slice geometry (3D):

* positions are projected on the normal of the first frame given; a gap
  more than 1.5x the median step is ``missing-slices`` (the expected LPS
  positions go to ``meta["missing_slice_positions"]``); otherwise positions
  off a uniform grid by more than a tenth of a step are
  ``non-uniform-spacing``;
* with ``resample=True`` (default) a non-uniform or gapped stack is resampled
  by linear interpolation along the normal onto a uniform grid at the median
  step, starting at the first slice, and flagged ``resampled``; slices
  interpolated inside a gap are listed in ``meta["missing_slice_indices"]``
  (they were not acquired: treat findings there with care);
* gantry tilt (slice positions that move in the image plane as the depth
  changes) is flagged ``gantry-tilt`` with ``meta["gantry_tilt_deg"]``. With
  ``correct_tilt=True`` (default) each slice is shifted in plane (linear
  interpolation) onto an orthogonal grid whose in-plane origin is the middle
  of the drift (so content moves at most half the drift either way), flagged
  ``tilt-corrected``; the direction is then orthonormal. With
  ``correct_tilt=False`` the slices stay as acquired and the third direction
  column is the (non-orthogonal) stacking direction, so `voxel_to_lps` and
  `lps_to_voxel` stay exact.

The common case (uniform, untilted, single-frame) takes the same path and
time as before: no resampling, no extra copies.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pydicom
from pydicom.pixels import apply_rescale
from pydicom.uid import JPEGExtended12Bit

RADIOGRAPH_MODALITIES = {"CR", "DX", "DR", "RF", "XA", "MG"}
NON_IMAGE_MODALITIES = {"SEG", "RTDOSE", "RTSTRUCT", "RTPLAN", "RTRECORD", "RTIMAGE", "SR", "PR", "KO", "REG",
                        "DOC", "ECG", "FID", "RWV"}
META_KEYWORDS = (
    "Modality", "StudyInstanceUID", "SeriesInstanceUID", "SeriesNumber", "PatientSex", "PatientAge",
    "PatientBirthDate", "StudyDate", "Manufacturer", "ManufacturerModelName", "SliceThickness",
    "BodyPartExamined", "StudyDescription", "SeriesDescription", "ConvolutionKernel", "ContrastBolusAgent",
    "PhotometricInterpretation",
)

DEFAULT_MAX_VOXELS = 1_000_000_000  # Rows x Columns x frames over the series, checked before decoding
ORIENTATION_TOLERANCE = 0.01  # largest difference of a direction cosine between frames (~0.6 degree)
PIXEL_SPACING_TOLERANCE = 1e-3  # relative
DUPLICATE_TOLERANCE_MM = 0.01  # positions closer than this along the normal are one position
GAP_FACTOR = 1.5  # a gap above this many median steps holds missing slices
UNIFORM_TOLERANCE = 0.1  # of a step: positions off the uniform grid by more are non-uniform
DRIFT_TOLERANCE_PX = 0.25  # in-plane drift of slice positions above this (pixels) is gantry tilt
FRAME_TYPE_SEQUENCES = ("CTImageFrameTypeSequence", "MRImageFrameTypeSequence")


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


# --------------------------------------------------------------------------- header helpers


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
    try:
        return "LOCALIZER" in [str(v).upper() for v in ds.get("ImageType", []) or []]
    except Exception:  # noqa: BLE001 - a malformed ImageType is not a localizer
        return False


def _is_non_image(ds: pydicom.Dataset) -> bool:
    return "PixelData" not in ds or str(ds.get("Modality", "")).upper() in NON_IMAGE_MODALITIES


def _brief(exc: BaseException) -> str:
    text = " ".join(line.strip() for line in str(exc).strip().splitlines())
    return f"{type(exc).__name__}: {text[:300]}" if text else type(exc).__name__


def _int(ds: pydicom.Dataset, keyword: str, default: int, where: str) -> int:
    value = ds.get(keyword)
    if value is None or value == "":
        return default
    try:
        return int(value)
    except (TypeError, ValueError):
        raise VolumeError(f"{where}: malformed {keyword}") from None


def _number_of_frames(ds: pydicom.Dataset, where: str) -> int:
    n = _int(ds, "NumberOfFrames", 1, where)
    if n < 1:
        raise VolumeError(f"{where}: NumberOfFrames is {n}")
    return n


def _check_header(ds: pydicom.Dataset, where: str) -> int:
    """Checks that need no pixel decoding; returns the voxel count the instance claims."""
    rows, cols = _int(ds, "Rows", 0, where), _int(ds, "Columns", 0, where)
    if rows <= 0 or cols <= 0:
        raise VolumeError(f"{where}: no usable Rows/Columns")
    frames = _number_of_frames(ds, where)
    spp = _int(ds, "SamplesPerPixel", 1, where)
    photometric = str(ds.get("PhotometricInterpretation", "") or "").strip().upper()
    if spp != 1 or photometric not in ("MONOCHROME1", "MONOCHROME2"):
        raise VolumeError(f"{where}: {photometric or 'unknown photometric'} with {spp} samples per pixel "
                          "is not supported (greyscale images only)")
    return rows * cols * frames


def _transfer_syntax_name(ds: pydicom.Dataset) -> str:
    meta = getattr(ds, "file_meta", None)
    ts = meta.get("TransferSyntaxUID") if meta is not None else None
    if ts is None:
        return "unknown transfer syntax"
    return str(getattr(ts, "name", ts) or ts)


def _gdcm_decode(ds: pydicom.Dataset) -> np.ndarray:
    """Stored values through GDCM itself, for what pydicom's GDCM plugin refuses (12-bit JPEG Extended)."""
    import tempfile

    import gdcm

    filename = getattr(ds, "filename", None)
    with tempfile.TemporaryDirectory() as tmp:
        if not isinstance(filename, (str, Path)) or not Path(filename).is_file():
            filename = Path(tmp) / "instance.dcm"
            ds.save_as(filename)
        reader = gdcm.ImageReader()
        reader.SetFileName(str(filename))
        if not reader.Read():
            raise ValueError("GDCM could not read the instance")
        image = reader.GetImage()
        dtype = {"UINT8": "u1", "INT8": "i1", "UINT16": "<u2", "INT16": "<i2"}.get(
            image.GetPixelFormat().GetScalarTypeAsString())
        if dtype is None or image.GetPixelFormat().GetSamplesPerPixel() != 1:
            raise ValueError("GDCM decoded an unsupported pixel format")
        raw = np.frombuffer(image.GetBuffer().encode("utf-8", "surrogateescape"), dtype=dtype)
    rows, cols = int(ds.Rows), int(ds.Columns)
    frames = raw.size // (rows * cols)
    if frames < 1 or raw.size != frames * rows * cols:
        raise ValueError("GDCM returned a buffer of unexpected size")
    return raw.reshape(rows, cols) if frames == 1 else raw.reshape(frames, rows, cols)


def _decode(ds: pydicom.Dataset, where: str) -> np.ndarray:
    ts = getattr(getattr(ds, "file_meta", None), "TransferSyntaxUID", None)
    px = None
    if ts == JPEGExtended12Bit and _int(ds, "BitsStored", 8, where) > 8:
        try:  # pydicom's GDCM and Pillow plugins refuse 12-bit JPEG Extended; GDCM itself decodes it
            px = _gdcm_decode(ds)
        except Exception:  # noqa: BLE001 - let pydicom try and report
            px = None
    if px is None:
        try:
            px = ds.pixel_array
        except Exception as exc:  # noqa: BLE001 - every decoder failure becomes one clear error
            raise VolumeError(f"{where}: pixel data could not be decoded ({_transfer_syntax_name(ds)}; "
                              f"{_brief(exc)})") from exc
    rows, cols, frames = int(ds.Rows), int(ds.Columns), _number_of_frames(ds, where)
    if px.shape not in ((rows, cols), (frames, rows, cols)):
        raise VolumeError(f"{where}: decoded pixel data has shape {px.shape}, header says "
                          f"{frames} x {rows} x {cols}")
    return px


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


def _group_value(ds: pydicom.Dataset, frame: int, sequence: str, keyword: str) -> Any:
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


def _has_geometry(ds: pydicom.Dataset) -> bool:
    if "ImagePositionPatient" in ds:
        return True
    return _is_enhanced(ds) and _group_value(ds, 0, "PlanePositionSequence", "ImagePositionPatient") is not None


def _rescale(slope: Any, intercept: Any, where: str) -> tuple[float, float]:
    """(slope, intercept): absent or empty means (1, 0); a zero or non-finite slope is malformed."""
    try:
        s = 1.0 if slope is None or slope == "" else float(slope)
        i = 0.0 if intercept is None or intercept == "" else float(intercept)
    except (TypeError, ValueError):
        raise VolumeError(f"{where}: malformed RescaleSlope/RescaleIntercept") from None
    if s == 0 or not math.isfinite(s) or not math.isfinite(i):
        raise VolumeError(f"{where}: malformed RescaleSlope/RescaleIntercept")
    return s, i


@dataclass
class _Frame:
    ds: pydicom.Dataset
    frame: int | None  # index into a multi-frame object's frames; None for a single-frame one
    where: str
    position: np.ndarray
    orientation: np.ndarray
    pixel_spacing: np.ndarray
    slope: float
    intercept: float
    instance: int


def _frames_of(ds: pydicom.Dataset, where: str, left_out: Counter) -> list[_Frame]:
    instance = _int(ds, "InstanceNumber", 0, where)
    top_spacing = ds.get("PixelSpacing")
    if not _is_enhanced(ds):
        if _number_of_frames(ds, where) > 1:
            raise VolumeError(f"{where}: multi-frame instance without per-frame geometry is not supported")
        if "ImageOrientationPatient" not in ds:
            raise VolumeError(f"{where}: no ImageOrientationPatient")
        return [_Frame(
            ds, None, where,
            _vector(ds.ImagePositionPatient, 3, "ImagePositionPatient", where),
            _vector(ds.ImageOrientationPatient, 6, "ImageOrientationPatient", where),
            _vector(top_spacing or [1.0, 1.0], 2, "PixelSpacing", where),
            *_rescale(ds.get("RescaleSlope"), ds.get("RescaleIntercept"), where), instance,
        )]
    out = []
    top_slope, top_intercept = ds.get("RescaleSlope"), ds.get("RescaleIntercept")
    for f in range(_number_of_frames(ds, where)):
        fwhere = f"{where} frame {f + 1}"
        if any("LOCALIZER" in [str(v).upper() for v in (_group_value(ds, f, seq, "FrameType") or [])]
               for seq in FRAME_TYPE_SEQUENCES):
            left_out["localizer"] += 1
            continue
        ipp = _group_value(ds, f, "PlanePositionSequence", "ImagePositionPatient")
        iop = _group_value(ds, f, "PlaneOrientationSequence", "ImageOrientationPatient")
        if ipp is None or iop is None:
            raise VolumeError(f"{fwhere}: no plane position/orientation in its functional groups")
        spacing = _group_value(ds, f, "PixelMeasuresSequence", "PixelSpacing") or top_spacing or [1.0, 1.0]
        slope = _group_value(ds, f, "PixelValueTransformationSequence", "RescaleSlope")
        intercept = _group_value(ds, f, "PixelValueTransformationSequence", "RescaleIntercept")
        slope, intercept = _rescale(top_slope if slope is None else slope,
                                    top_intercept if intercept is None else intercept, fwhere)
        out.append(_Frame(ds, f, fwhere, _vector(ipp, 3, "ImagePositionPatient", fwhere),
                          _vector(iop, 6, "ImageOrientationPatient", fwhere),
                          _vector(spacing, 2, "PixelSpacing", fwhere), slope, intercept, instance))
    return out


# --------------------------------------------------------------------------- entry points


def radiograph(ds: pydicom.Dataset, *, where: str = "instance 1") -> Volume:
    """One radiograph: denser brighter, rescale applied where present."""
    _check_header(ds, where)
    px = _decode(ds, where).astype(np.float32)
    if px.ndim == 3:
        px = px[0]
    px = apply_rescale(px, ds).astype(np.float32) if "RescaleSlope" in ds else px
    if str(ds.get("PhotometricInterpretation", "")).upper() == "MONOCHROME1":
        px = px.max() - px
    spacing = ds.get("PixelSpacing") or ds.get("ImagerPixelSpacing") or [1.0, 1.0]
    return Volume(px, (float(spacing[0]), float(spacing[1])), meta=_meta(ds))


def _read(p: Path | pydicom.Dataset, where: str) -> pydicom.Dataset:
    if isinstance(p, pydicom.Dataset):
        return p
    try:
        return pydicom.dcmread(p)
    except Exception as exc:  # noqa: BLE001 - not DICOM, truncated, unreadable: one clear error
        raise VolumeError(f"{where}: not readable as DICOM ({type(exc).__name__})") from None


def load_series(
    paths: Iterable[Path | pydicom.Dataset],
    *,
    resample: bool = True,
    correct_tilt: bool = True,
    max_voxels: int = DEFAULT_MAX_VOXELS,
) -> Volume:
    """Files (or datasets) of one series to a Volume (CT stack or single radiograph).

    ``resample``: put a non-uniform or gapped stack on a uniform grid (else keep the
    acquired slices and only flag). ``correct_tilt``: shear-correct a gantry-tilted
    stack onto an orthogonal grid (else keep the slices and a non-orthogonal
    direction). ``max_voxels``: refuse, before decoding, a series whose headers claim
    more voxels than this. Instances are named in errors by their place in ``paths``.
    """
    items: list[tuple[str, pydicom.Dataset]] = []
    left_out: Counter = Counter()
    total = 0
    for i, p in enumerate(paths):
        where = f"instance {i + 1}"
        ds = _read(p, where)
        if _is_non_image(ds):
            left_out["non-image"] += 1
            continue
        if _is_localizer(ds):
            left_out["localizer"] += 1
            continue
        total += _check_header(ds, where)
        if total > max_voxels:
            raise VolumeError(f"series too large: its headers claim more than {max_voxels} voxels")
        items.append((where, ds))
    if not items:
        raise VolumeError("no image instances (localizers and non-image objects are left out)")
    series = {str(ds.get("SeriesInstanceUID", "") or "") for _, ds in items} - {""}
    if len(series) > 1:
        raise VolumeError(f"image instances of {len(series)} different series given as one")
    first = items[0][1]
    with_geometry = [(w, ds) for w, ds in items if _has_geometry(ds)]
    if str(first.get("Modality", "")).upper() in RADIOGRAPH_MODALITIES or not with_geometry:
        return radiograph(first, where=items[0][0])
    if len(with_geometry) < len(items):
        left_out["no-geometry"] += len(items) - len(with_geometry)
    return _stack(with_geometry, left_out, resample=resample, correct_tilt=correct_tilt, max_voxels=max_voxels)


# --------------------------------------------------------------------------- stacks


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


def _stack(items: list[tuple[str, pydicom.Dataset]], left_out: Counter, *, resample: bool, correct_tilt: bool,
           max_voxels: int) -> Volume:
    frames: list[_Frame] = []
    for where, ds in items:
        frames += _frames_of(ds, where, left_out)
    if not frames:
        raise VolumeError("no image frames (localizer frames are left out)")
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
    row, col, normal = _basis(f0.orientation, f0.where)

    # sort along the normal; at one position keep the highest InstanceNumber, then the one given last
    pos = np.stack([f.position for f in frames])
    depth = pos @ normal
    order = np.lexsort((np.arange(len(frames)), [f.instance for f in frames], depth))
    d_sorted = depth[order]
    keep = np.append(np.diff(d_sorted) > DUPLICATE_TOLERANCE_MM, True)
    flags: list[str] = []
    extra: dict[str, Any] = {}
    if not keep.all():
        if keep.sum() == 1:
            raise VolumeError(f"all {len(frames)} frames lie at one position: a repeated or dynamic "
                              "acquisition, not a stack")
        flags.append("duplicate-positions")
        extra["duplicate_positions_dropped"] = int((~keep).sum())
    order = order[keep]
    frames = [frames[i] for i in order]
    pos, d = pos[order], depth[order]
    m = len(frames)

    # slice steps
    step = fitted = _single_slice_step(f0)
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

    # in-plane drift of the slice positions: gantry tilt
    rel = pos - pos[0]
    a, b = rel @ row, rel @ col  # mm along the row (x) and column (y) directions
    tilted = m > 1 and max(float(np.max(np.abs(a))) / dx, float(np.max(np.abs(b))) / dy) > DRIFT_TOLERANCE_PX
    sa = sb = 0.0
    if tilted:
        if np.max(np.abs(a)) > cols * dx or np.max(np.abs(b)) > rows * dy:
            raise VolumeError("slice positions do not overlap in the image plane: not one stack")
        sa, sb = (float(np.polyfit(d - d[0], v, 1)[0]) for v in (a, b))
        flags.append("gantry-tilt")
        extra["gantry_tilt_deg"] = round(math.degrees(math.atan(math.hypot(sa, sb))), 2)

    # decode and rescale into one float32 stack
    n_out = int(np.floor((d[-1] - d[0]) / step + 1e-3)) + 1 if (m > 1 and resample and not uniform) else m
    if n_out * rows * cols > max_voxels:
        raise VolumeError(f"resampled volume would exceed {max_voxels} voxels")
    arr = np.empty((m, rows, cols), dtype=np.float32)
    decoded: dict[int, np.ndarray] = {}
    for k, f in enumerate(frames):
        if f.frame is None:
            px = _decode(f.ds, f.where)
            if "ModalityLUTSequence" in f.ds:
                arr[k] = apply_rescale(px, f.ds)
                continue
        else:
            key = id(f.ds)
            if key not in decoded:
                decoded[key] = _decode(f.ds, f.where)
            px = decoded[key]
            px = px[f.frame] if px.ndim == 3 else px
        arr[k] = px
        if f.slope != 1.0:
            arr[k] *= f.slope
        if f.intercept != 0.0:
            arr[k] += f.intercept
    decoded.clear()

    origin = pos[0].copy()
    axis = normal  # LPS mm per mm of depth along the stack
    if tilted and correct_tilt:
        from scipy import ndimage

        a_ref = (float(a.min()) + float(a.max())) / 2
        b_ref = (float(b.min()) + float(b.max())) / 2
        fill = _fill_value(arr, str(f0.ds.get("Modality", "")).upper())
        for k in range(m):
            shift = ((b[k] - b_ref) / dy, (a[k] - a_ref) / dx)
            if max(abs(shift[0]), abs(shift[1])) > 1e-3:
                arr[k] = ndimage.shift(arr[k], shift, order=1, mode="constant", cval=fill, prefilter=False)
        origin = pos[0] + a_ref * row + b_ref * col
        flags.append("tilt-corrected")
    elif tilted:
        axis = normal + sa * row + sb * col

    dz = fitted if uniform else step
    if m > 1 and resample and not uniform:
        arr, missing_idx = _resample_depth(arr, d, step, n_out, gap_missing)
        flags.append("resampled")
        if missing_idx:
            extra["missing_slice_indices"] = missing_idx
        missing_depths = [d[0] + j * step for j in missing_idx]
    else:
        missing_depths = [d[k] + i * step for k in np.flatnonzero(gap_missing)
                          for i in range(1, int(round((d[k + 1] - d[k]) / step)))]
    if missing_depths:
        extra["missing_slice_positions"] = [
            [round(float(v), 2) for v in origin + (t - d[0]) * axis] for t in missing_depths]

    axis_len = float(np.linalg.norm(axis))
    meta = _meta(frames[0].ds)
    if "SliceThickness" not in meta and frames[0].frame is not None:
        thickness = _group_value(frames[0].ds, frames[0].frame, "PixelMeasuresSequence", "SliceThickness")
        if thickness is not None:
            meta["SliceThickness"] = float(thickness)
    if left_out:
        meta["left_out"] = dict(left_out)
    meta.update(extra)
    return Volume(
        arr,
        (dz * axis_len, dy, dx),
        tuple(float(v) for v in origin),
        np.stack([row, col, axis / axis_len], axis=1),
        meta,
        tuple(flags),
    )


def _single_slice_step(f: _Frame) -> float:
    ds = f.ds
    for value in (ds.get("SpacingBetweenSlices"), ds.get("SliceThickness")):
        if value not in (None, ""):
            try:
                if float(value) > 0:
                    return float(value)
            except (TypeError, ValueError):
                pass
    if f.frame is not None:
        value = _group_value(ds, f.frame, "PixelMeasuresSequence", "SliceThickness")
        if value is not None and float(value) > 0:
            return float(value)
    return 1.0


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
