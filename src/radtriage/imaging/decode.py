"""Pixel data to arrays: header checks before decoding, every transfer syntax, rescale, MONOCHROME1.

`decode` turns one instance's pixel data into its stored values (every
transfer syntax the listener accepts, through pydicom and its plugins; 12-bit
JPEG Extended through GDCM itself); a failure is a `VolumeError` that names
the transfer syntax and the instance's place (never a file name or a patient
identifier). `check_header` refuses, before any decoding, what is not a
greyscale image and says how many voxels an instance claims. `radiograph`
makes one radiograph a `Volume` (rescale applied, MONOCHROME1 inverted);
`decode_frames` decodes and rescales the frames of a stack into one float32
array.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pydicom
from pydicom.pixels import apply_rescale
from pydicom.uid import JPEGExtended12Bit

from radtriage.imaging.volume import Volume, VolumeError, header_meta

if TYPE_CHECKING:
    from radtriage.imaging.frames import Frame


def _brief(exc: BaseException) -> str:
    """An exception in one line of at most ~300 characters."""
    text = " ".join(line.strip() for line in str(exc).strip().splitlines())
    return f"{type(exc).__name__}: {text[:300]}" if text else type(exc).__name__


def int_value(ds: pydicom.Dataset, keyword: str, default: int, where: str) -> int:
    """An integer attribute (``default`` when absent or empty); malformed: `VolumeError`."""
    value = ds.get(keyword)
    if value is None or value == "":
        return default
    try:
        return int(value)
    except (TypeError, ValueError):
        raise VolumeError(f"{where}: malformed {keyword}") from None


def number_of_frames(ds: pydicom.Dataset, where: str) -> int:
    n = int_value(ds, "NumberOfFrames", 1, where)
    if n < 1:
        raise VolumeError(f"{where}: NumberOfFrames is {n}")
    return n


def check_header(ds: pydicom.Dataset, where: str) -> int:
    """Checks that need no pixel decoding; returns the voxel count the instance claims."""
    rows, cols = int_value(ds, "Rows", 0, where), int_value(ds, "Columns", 0, where)
    if rows <= 0 or cols <= 0:
        raise VolumeError(f"{where}: no usable Rows/Columns")
    frames = number_of_frames(ds, where)
    spp = int_value(ds, "SamplesPerPixel", 1, where)
    photometric = str(ds.get("PhotometricInterpretation", "") or "").strip().upper()
    if spp != 1 or photometric not in ("MONOCHROME1", "MONOCHROME2"):
        raise VolumeError(f"{where}: {photometric or 'unknown photometric'} with {spp} samples per pixel "
                          "is not supported (greyscale images only)")
    return rows * cols * frames


def rescale(slope: Any, intercept: Any, where: str) -> tuple[float, float]:
    """(slope, intercept): absent or empty means (1, 0); a zero or non-finite slope is malformed."""
    try:
        s = 1.0 if slope is None or slope == "" else float(slope)
        i = 0.0 if intercept is None or intercept == "" else float(intercept)
    except (TypeError, ValueError):
        raise VolumeError(f"{where}: malformed RescaleSlope/RescaleIntercept") from None
    if s == 0 or not math.isfinite(s) or not math.isfinite(i):
        raise VolumeError(f"{where}: malformed RescaleSlope/RescaleIntercept")
    return s, i


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


def decode(ds: pydicom.Dataset, where: str) -> np.ndarray:
    """The instance's stored values: (rows, cols) or (frames, rows, cols), as the header says."""
    ts = getattr(getattr(ds, "file_meta", None), "TransferSyntaxUID", None)
    px = None
    if ts == JPEGExtended12Bit and int_value(ds, "BitsStored", 8, where) > 8:
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
    rows, cols, frames = int(ds.Rows), int(ds.Columns), number_of_frames(ds, where)
    if px.shape not in ((rows, cols), (frames, rows, cols)):
        raise VolumeError(f"{where}: decoded pixel data has shape {px.shape}, header says "
                          f"{frames} x {rows} x {cols}")
    return px


def radiograph(ds: pydicom.Dataset, *, where: str = "instance 1") -> Volume:
    """One radiograph: denser brighter, rescale applied where present."""
    check_header(ds, where)
    px = decode(ds, where).astype(np.float32)
    if px.ndim == 3:
        px = px[0]
    px = apply_rescale(px, ds).astype(np.float32) if "RescaleSlope" in ds else px
    if str(ds.get("PhotometricInterpretation", "")).upper() == "MONOCHROME1":
        px = px.max() - px
    spacing = ds.get("PixelSpacing") or ds.get("ImagerPixelSpacing") or [1.0, 1.0]
    return Volume(px, (float(spacing[0]), float(spacing[1])), meta=header_meta(ds))


def decode_frames(frames: Sequence[Frame], rows: int, cols: int) -> np.ndarray:
    """The frames, in order, decoded and rescaled into one (len(frames), rows, cols) float32 stack.

    A multi-frame object is decoded once for all its frames; a Modality LUT
    replaces the linear rescale where an instance has one.
    """
    arr = np.empty((len(frames), rows, cols), dtype=np.float32)
    decoded: dict[int, np.ndarray] = {}
    for k, f in enumerate(frames):
        if f.frame is None:
            px = decode(f.ds, f.where)
            if "ModalityLUTSequence" in f.ds:
                arr[k] = apply_rescale(px, f.ds)
                continue
        else:
            key = id(f.ds)
            if key not in decoded:
                decoded[key] = decode(f.ds, f.where)
            px = decoded[key]
            px = px[f.frame] if px.ndim == 3 else px
        arr[k] = px
        if f.slope != 1.0:
            arr[k] *= f.slope
        if f.intercept != 0.0:
            arr[k] += f.intercept
    decoded.clear()
    return arr
