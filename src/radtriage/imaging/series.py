"""Read one DICOM series into a `Volume` (`load_series`).

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

Pixel decoding is `radtriage.imaging.decode`, per-frame geometry
`radtriage.imaging.frames`, stacking `radtriage.imaging.stack`.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from pathlib import Path

import pydicom

from radtriage.imaging.decode import check_header, radiograph
from radtriage.imaging.frames import has_geometry
from radtriage.imaging.stack import stack
from radtriage.imaging.volume import Volume, VolumeError

RADIOGRAPH_MODALITIES = {"CR", "DX", "DR", "RF", "XA", "MG"}
NON_IMAGE_MODALITIES = {"SEG", "RTDOSE", "RTSTRUCT", "RTPLAN", "RTRECORD", "RTIMAGE", "SR", "PR", "KO", "REG",
                        "DOC", "ECG", "FID", "RWV"}
DEFAULT_MAX_VOXELS = 1_000_000_000  # Rows x Columns x frames over the series, checked before decoding


def _is_localizer(ds: pydicom.Dataset) -> bool:
    try:
        return "LOCALIZER" in [str(v).upper() for v in ds.get("ImageType", []) or []]
    except Exception:  # noqa: BLE001 - a malformed ImageType is not a localizer
        return False


def _is_non_image(ds: pydicom.Dataset) -> bool:
    return "PixelData" not in ds or str(ds.get("Modality", "")).upper() in NON_IMAGE_MODALITIES


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
        total += check_header(ds, where)
        if total > max_voxels:
            raise VolumeError(f"series too large: its headers claim more than {max_voxels} voxels")
        items.append((where, ds))
    if not items:
        raise VolumeError("no image instances (localizers and non-image objects are left out)")
    series = {str(ds.get("SeriesInstanceUID", "") or "") for _, ds in items} - {""}
    if len(series) > 1:
        raise VolumeError(f"image instances of {len(series)} different series given as one")
    first = items[0][1]
    with_geometry = [(w, ds) for w, ds in items if has_geometry(ds)]
    if str(first.get("Modality", "")).upper() in RADIOGRAPH_MODALITIES or not with_geometry:
        return radiograph(first, where=items[0][0])
    if len(with_geometry) < len(items):
        left_out["no-geometry"] += len(items) - len(with_geometry)
    return stack(with_geometry, left_out, resample=resample, correct_tilt=correct_tilt, max_voxels=max_voxels)
