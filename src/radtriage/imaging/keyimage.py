"""Key images: one PNG per finding, the slice in a window with the box or contour drawn.

Every key image carries, burned into its pixels in a band below the image, the
words ``AI result - not for diagnosis`` and the caller's label (e.g. "ICH
intraparenchymal 12 mL"). Nothing else is written on it: no patient name, ID,
date or accession, and the PNG holds no text chunks. It is a picture of an AI
result for a worklist, never a diagnostic image.

Layout: the slice is enlarged by a whole factor (at most 8) until its longer
side reaches ``min_size`` pixels; an image whose longer side is above
``max_size`` (a 2500 x 3000 radiograph) is instead reduced to it by area
averaging before anything is drawn (non-square pixels are stretched to the
right aspect along y either way); boxes and contours are scaled with it. The
band of height `banner_height(width)` goes below the image. Rendering uses
Pillow only (about 20-40 ms for a 512x512 slice).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Sequence

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from radtriage.imaging.volume import Volume

DISCLAIMER = "AI result - not for diagnosis"
BOX_COLOUR = (255, 40, 40)
CONTOUR_COLOUR = (255, 210, 0)
MAX_SCALE = 8
MAX_SIZE = 1024  # longest side of a key image (without its band), in pixels

Range = Sequence[float]


def _font_size(width: int) -> int:
    return max(12, min(32, width // 32))


def banner_height(width: int) -> int:
    """Height in pixels of the text band under an image ``width`` pixels wide."""
    return 2 * (_font_size(width) + 6) + 8


def display_scale(rows: int, cols: int, min_size: int = 512) -> int:
    """The whole enlargement factor used for a ``rows`` x ``cols`` slice."""
    return int(max(1, min(MAX_SCALE, math.ceil(min_size / max(rows, cols)))))


def display_size(rows: int, cols: int, aspect: float = 1.0, min_size: int = 512,
                 max_size: int = MAX_SIZE) -> tuple[int, int]:
    """(width, height) in pixels a ``rows`` x ``cols`` image is shown at; ``aspect``: row over column spacing.

    Enlarged by `display_scale` when small; reduced so its longer side is
    ``max_size`` when that is exceeded.
    """
    longest = max(cols, rows * aspect)
    factor = max_size / longest if longest > max_size else float(display_scale(rows, cols, min_size))
    return max(1, int(round(cols * factor))), max(1, int(round(rows * aspect * factor)))


def _area(img: np.ndarray, width: int, height: int) -> np.ndarray:
    """``img`` reduced to (height, width) by averaging the pixels each output pixel covers."""
    small = Image.fromarray(np.ascontiguousarray(img, dtype=np.float32), mode="F")
    return np.asarray(small.resize((width, height), Image.Resampling.BOX))


def _window(img: np.ndarray, window: tuple[float, float] | None) -> np.ndarray:
    if window is None:
        lo, hi = (float(v) for v in np.percentile(img, (1, 99)))
    else:
        level, width = float(window[0]), float(window[1])
        if width <= 0:
            raise ValueError("window width must be positive")
        lo, hi = level - width / 2, level + width / 2
    if hi <= lo:
        hi = lo + 1.0
    scaled = (img.astype(np.float32) - lo) * (255.0 / (hi - lo))
    return np.clip(scaled, 0, 255).astype(np.uint8)


def _box_2d(volume: Volume, box: Sequence[Range]) -> tuple[tuple[float, float] | None, tuple[float, float],
                                                           tuple[float, float]]:
    """(z range or None, y range, x range) from a 3D or 2D box of voxel index ranges [start, stop).

    Nested ((z0, z1), (y0, y1), (x0, x1)) / ((y0, y1), (x0, x1)) or flat (z0, z1, y0, y1, x0, x1) /
    (y0, y1, x0, x1).
    """
    if all(np.ndim(v) == 0 for v in box):
        flat = [float(v) for v in box]
        if len(flat) not in (4, 6):
            raise ValueError(f"a flat box needs 4 or 6 numbers, got {len(flat)}")
        box = [flat[i:i + 2] for i in range(0, len(flat), 2)]
    ranges = [tuple(float(v) for v in r) for r in box]
    if any(len(r) != 2 or r[1] < r[0] for r in ranges):
        raise ValueError("box ranges must be (start, stop) pairs with start <= stop")
    if len(ranges) == 3 and not volume.is_2d:
        return ranges[0], ranges[1], ranges[2]  # type: ignore[return-value]
    if len(ranges) == 2:
        return None, ranges[0], ranges[1]  # type: ignore[return-value]
    raise ValueError(f"box needs {'2' if volume.is_2d else '2 or 3'} (start, stop) ranges, got {len(ranges)}")


def _pick_slice(volume: Volume, slice_index: int | None, zrange: tuple[float, float] | None,
                mask: np.ndarray | None) -> int:
    n = volume.array.shape[0]
    if slice_index is not None:
        k = int(slice_index)
    elif zrange is not None:
        k = int((zrange[0] + max(zrange[1] - 1, zrange[0])) // 2)
    elif mask is not None and mask.ndim == 3 and mask.any():
        k = int(np.argmax(mask.reshape(n, -1).sum(axis=1)))
    else:
        k = n // 2
    if not 0 <= k < n:
        raise ValueError(f"slice index {k} outside the volume (0..{n - 1})")
    return k


def _erode(m: np.ndarray) -> np.ndarray:
    out = m.copy()
    out[1:, :] &= m[:-1, :]
    out[:-1, :] &= m[1:, :]
    out[:, 1:] &= m[:, :-1]
    out[:, :-1] &= m[:, 1:]
    out[0, :] = out[-1, :] = False
    out[:, 0] = out[:, -1] = False
    return out


def _shown_slice(volume: Volume, slice_index: int | None, zrange: tuple[float, float] | None,
                 mask: np.ndarray | None) -> tuple[np.ndarray, np.ndarray | None]:
    """The image shown (the radiograph, or the picked slice) and the contour mask cut to it."""
    if volume.is_2d:
        img = volume.array
        if mask is not None and mask.shape != img.shape:
            raise ValueError(f"contour mask shape {mask.shape} differs from the image {img.shape}")
        return img, mask
    k = _pick_slice(volume, slice_index, zrange, mask)
    img = volume.array[k]
    if mask is not None:
        if mask.shape == volume.array.shape:
            mask = mask[k]
        elif mask.shape != img.shape:
            raise ValueError(f"contour mask shape {mask.shape} fits neither the volume nor a slice")
    return img, mask


def _canvas(img: np.ndarray, window: tuple[float, float] | None, width: int, height: int) -> Image.Image:
    """The windowed image at ``width`` x ``height`` on a black canvas with room for the band below."""
    rows, cols = img.shape
    if width < cols or height < rows:  # a large image: averaged down first, so windowing and drawing stay cheap
        img = _area(img, width, height)
    grey = Image.fromarray(_window(img, window), mode="L")
    if grey.size != (width, height):
        grey = grey.resize((width, height), Image.Resampling.BILINEAR)
    canvas = Image.new("RGB", (width, height + banner_height(width)), (0, 0, 0))
    canvas.paste(grey.convert("RGB"), (0, 0))
    return canvas


def _draw_contour(canvas: Image.Image, mask: np.ndarray, width: int, height: int) -> Image.Image:
    """The outline of ``mask``, scaled to the display size, drawn over the image."""
    big = np.asarray(Image.fromarray(mask.astype(np.uint8) * 255, mode="L").resize(
        (width, height), Image.Resampling.NEAREST)) > 127
    outline = big & ~_erode(_erode(big))
    pixels = np.array(canvas)
    pixels[:height][outline] = CONTOUR_COLOUR
    return Image.fromarray(pixels, mode="RGB")


def _draw_box(draw: ImageDraw.ImageDraw, yr: tuple[float, float], xr: tuple[float, float], sx: float,
              sy: float) -> None:
    x0, x1 = xr[0] * sx, xr[1] * sx - 1
    y0, y1 = yr[0] * sy, yr[1] * sy - 1
    line = max(2, int(sx) // 2)
    draw.rectangle([x0 - line, y0 - line, x1 + line, y1 + line], outline=BOX_COLOUR, width=line)


def _draw_band(draw: ImageDraw.ImageDraw, label: str, width: int, height: int) -> None:
    """The disclaimer and the label (shortened with an ellipsis to fit) in the band below the image."""
    size = _font_size(width)
    font = ImageFont.load_default(size=size)
    pad = 6
    text = label.strip()
    while text and draw.textlength(text, font=font) > width - 2 * pad:
        text = text[:-2] + "…" if len(text) > 2 else ""
    draw.text((pad, height + 4), DISCLAIMER, fill=(255, 255, 0), font=font)
    draw.text((pad, height + 4 + size + 6), text, fill=(255, 255, 255), font=font)


def render_key_image(
    volume: Volume,
    *,
    slice_index: int | None = None,
    box: Sequence[Range] | None = None,
    contour_mask: np.ndarray | None = None,
    window: tuple[float, float] | None = None,
    label: str,
    path: str | Path,
    min_size: int = 512,
    max_size: int = MAX_SIZE,
) -> Path:
    """Write the key image of one finding as a PNG and return its path.

    ``box``: voxel index ranges [start, stop), ((z0, z1), (y0, y1), (x0, x1)) for a
    volume or ((y0, y1), (x0, x1)) in the shown slice / radiograph (or the same numbers
    flat: (z0, z1, y0, y1, x0, x1) / (y0, y1, x0, x1)). ``contour_mask``:
    a boolean mask the shape of the volume or of one slice; its outline is drawn.
    ``slice_index``: the slice shown (default: the middle of the box's z range, else
    the slice where the mask is largest, else the middle slice). ``window``: (level,
    width) in the array's units (HU for CT); default the 1st-99th percentile.
    ``min_size`` / ``max_size``: see `display_size`.
    """
    if not isinstance(label, str):
        raise TypeError("label must be a string")
    zrange, yr, xr = _box_2d(volume, box) if box is not None else (None, None, None)
    mask = None if contour_mask is None else np.asarray(contour_mask).astype(bool)
    img, mask = _shown_slice(volume, slice_index, zrange, mask)
    rows, cols = img.shape
    dy, dx = (float(v) for v in volume.spacing[-2:])
    aspect = dy / dx if dx > 0 and dy > 0 and abs(dy / dx - 1) > 0.01 else 1.0
    width, height = display_size(rows, cols, aspect, min_size, max_size)
    sx, sy = width / cols, height / rows  # display pixels per image pixel

    canvas = _canvas(img, window, width, height)
    if mask is not None and mask.any():
        canvas = _draw_contour(canvas, mask, width, height)
    draw = ImageDraw.Draw(canvas)
    if yr is not None and xr is not None:
        _draw_box(draw, yr, xr, sx, sy)
    _draw_band(draw, label, width, height)

    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    canvas.save(out, format="PNG", compress_level=4)
    return out
