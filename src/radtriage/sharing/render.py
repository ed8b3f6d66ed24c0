"""One frame of a shared instance as a PNG for the recipient's phone, with the window presets of a CT reading.

Rendered on the server from the decrypted copy (the browser gets pixels, not DICOM): stored values decoded
(every transfer syntax `radtriage.imaging.decode` reads), the rescale to Hounsfield units applied, the chosen
window, MONOCHROME1 shown inverted, reduced to `MAX_SIDE` pixels at most. Colour images are shown as they are.
"""

from __future__ import annotations

import io

import numpy as np
import pydicom
from PIL import Image

from radtriage.imaging.decode import decode, rescale
from radtriage.imaging.keyimage import _window

# (level, width) in HU; "auto": the instance's own window, else the 1st-99th percentile
PRESETS: dict[str, tuple[float, float] | None] = {
    "auto": None, "brain": (40.0, 80.0), "soft": (40.0, 400.0), "lung": (-600.0, 1500.0), "bone": (400.0, 1800.0),
}


MAX_SIDE = 1024  # a phone's screen: a radiograph of 2000+ pixels is reduced (box average), zoom shows it larger


class NotAnImage(ValueError):
    """The instance has no pixels to show, or no such frame."""


def frame_png(data: bytes, frame: int, preset: str, own_window: list[float] | None) -> bytes:
    """Frame ``frame`` (0-based) of the Part 10 ``data`` as PNG in window ``preset``."""
    ds = pydicom.dcmread(io.BytesIO(data))
    if "PixelData" not in ds:
        raise NotAnImage("this instance has no pixel data")
    n = int(ds.get("NumberOfFrames") or 1)
    if not 0 <= frame < n:
        raise NotAnImage(f"no frame {frame + 1}")
    if int(ds.get("SamplesPerPixel") or 1) != 1:  # colour, shown as it is (pydicom gives RGB)
        rgb = ds.pixel_array
        return _png(Image.fromarray(np.asarray(rgb[frame] if n > 1 else rgb, dtype=np.uint8)))
    px = decode(ds, "shared instance")
    img = px[frame] if px.ndim == 3 else px
    slope, intercept = rescale(ds.get("RescaleSlope"), ds.get("RescaleIntercept"), "shared instance")
    values = img.astype(np.float32) * slope + intercept
    window = (own_window[0], own_window[1]) if preset == "auto" and own_window else PRESETS[preset]
    shown = _window(values, window)
    if str(ds.get("PhotometricInterpretation", "")) == "MONOCHROME1":
        shown = 255 - shown
    return _png(Image.fromarray(shown))


def _png(img: Image.Image) -> bytes:
    if max(img.size) > MAX_SIDE:
        img.thumbnail((MAX_SIDE, MAX_SIDE), Image.Resampling.BOX)
    buf = io.BytesIO()
    img.save(buf, format="PNG", optimize=False, compress_level=3)
    return buf.getvalue()
