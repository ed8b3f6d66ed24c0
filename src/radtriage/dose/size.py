"""Patient size and size-specific dose estimates (SSDE) for CT, after AAPM Reports 204 and 220.

Water-equivalent diameter (AAPM Report 220, 2014): on each axial slice the patient is the largest connected
region above ``THRESHOLD_HU`` (after a small morphological opening, so that a table or cradle touching the
patient by a thin bridge is cut off), its holes filled (lungs and bowel gas are inside the patient);
``Aw = sum over its pixels of (HU / 1000 + 1) * pixel area`` and ``Dw = 2 sqrt(Aw / pi)``. A series' Dw is the
mean over evenly spaced slices (`SAMPLE_SLICES`); slices where the patient touches the edge of the image
(truncated by the field of view) are left out, and with none left there is no Dw.

SSDE (AAPM Report 204, 2011, with Report 220's Dw in place of the effective diameter): ``f(Dw) * CTDIvol``,
with the report's exponential fits, ``f = a exp(-b Dw)`` (Dw in cm): a = 3.704369, b = 0.03671937 for
CTDIvol on the 32 cm (body) phantom and a = 1.874799, b = 0.03871313 on the 16 cm phantom, within the
fits' range (Dw 8 to 45 cm). Report 204 is for the body (trunk): a head's Dw is kept but no SSDE is given
(AAPM Report 293's head method is not applied).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from pydicom.dataset import Dataset
from pydicom.pixels import apply_modality_lut
from scipy import ndimage

THRESHOLD_HU = -500.0
SAMPLE_SLICES = 9
OPENING_MM = 2.5
MEASURE_MATRIX = 256
FIT = {32: (3.704369, 0.03671937), 16: (1.874799, 0.03871313)}  # phantom cm -> (a, b); AAPM 204 / 220
FIT_RANGE_CM = (8.0, 45.0)


def patient_mask(hu: np.ndarray, pixel_mm: float = 1.0, threshold: float = THRESHOLD_HU) -> np.ndarray:
    """The patient on one axial slice (HU): the largest region above ``threshold`` after an opening of
    `OPENING_MM` (which cuts a table touching the patient by a thin bridge), its holes filled."""
    body = hu > threshold
    steps = max(1, round(OPENING_MM / max(pixel_mm, 1e-3)))
    opened = ndimage.binary_opening(body, iterations=steps)
    labels, n = ndimage.label(opened if opened.any() else body)
    if n == 0:
        return np.zeros_like(body)
    sizes = np.bincount(labels.ravel())
    sizes[0] = 0
    patient = labels == int(np.argmax(sizes))
    outside, _ = ndimage.label(~patient)  # holes: the parts of the rest that do not reach the image's edge
    edge = np.unique(np.concatenate([outside[0], outside[-1], outside[:, 0], outside[:, -1]]))
    return patient | ~np.isin(outside, edge)


def water_equivalent_area(hu: np.ndarray, pixel_area_mm2: float, pixel_mm: float = 1.0) -> tuple[float, bool]:
    """(Aw in mm2, truncated) of one slice: truncated when the patient touches the edge of the image."""
    mask = patient_mask(hu, pixel_mm)
    truncated = bool(mask[0].any() or mask[-1].any() or mask[:, 0].any() or mask[:, -1].any())
    weights = np.clip(hu[mask], -1000.0, None) / 1000.0 + 1.0
    return float(weights.sum()) * pixel_area_mm2, truncated


def diameter_cm(aw_mm2: float) -> float:
    """The water-equivalent diameter (cm) of a water-equivalent area (mm2): 2 sqrt(Aw / pi)."""
    return 2.0 * math.sqrt(max(aw_mm2, 0.0) / math.pi) / 10.0


def sample(items: Sequence, n: int = SAMPLE_SLICES) -> list:
    """Up to ``n`` evenly spaced items, first and last included."""
    if len(items) <= n:
        return list(items)
    return [items[i] for i in np.unique(np.linspace(0, len(items) - 1, n).round().astype(int))]


def pooled(hu: np.ndarray, factor: int) -> np.ndarray:
    """``hu`` averaged over ``factor`` x ``factor`` blocks (the sum of HU/1000 + 1 over an area is kept)."""
    if factor <= 1:
        return hu
    rows, cols = (hu.shape[0] // factor) * factor, (hu.shape[1] // factor) * factor
    total = sum(hu[i:rows:factor, j:cols:factor] for i in range(factor) for j in range(factor))
    return total / float(factor * factor)


def slice_diameter(ds: Dataset) -> tuple[float, bool] | None:
    """(Dw cm, truncated) of one axial CT image, or None when it has no pixel spacing. Measured on a matrix of
    at most `MEASURE_MATRIX` (2 x 2 averages of a 512 x 512 image): the water-equivalent area is kept."""
    spacing = ds.get("PixelSpacing")
    if not spacing:
        return None
    factor = max(1, int(ds.Rows) // MEASURE_MATRIX)
    dy, dx = float(spacing[0]) * factor, float(spacing[1]) * factor
    hu = pooled(apply_modality_lut(ds.pixel_array, ds).astype(np.float32), factor)
    aw, truncated = water_equivalent_area(hu, dy * dx, (dy + dx) / 2.0)
    return diameter_cm(aw), truncated


def series_diameter(images: Sequence[Dataset]) -> tuple[float, int] | None:
    """(mean Dw in cm, slices used) over ``images`` (read with pixels; sample them first); None when every
    slice is truncated or unreadable."""
    got = [d for d in (slice_diameter(ds) for ds in images) if d is not None]
    whole = [dw for dw, truncated in got if not truncated and dw > 0]
    return (float(np.mean(whole)), len(whole)) if whole else None


def ssde_factor(dw_cm: float, phantom_cm: int | None) -> float | None:
    """AAPM 204's conversion factor f(Dw) for CTDIvol on ``phantom_cm``; None outside the fit or phantom."""
    if phantom_cm not in FIT or not FIT_RANGE_CM[0] <= dw_cm <= FIT_RANGE_CM[1]:
        return None
    a, b = FIT[phantom_cm]
    return a * math.exp(-b * dw_cm)


def ssde(ctdivol: float | None, dw_cm: float | None, phantom_cm: int | None, head: bool = False) -> float | None:
    """The SSDE (mGy) of a body CT: f(Dw) x CTDIvol; None for a head, or without CTDIvol, Dw or a fit."""
    if head or ctdivol is None or dw_cm is None:
        return None
    f = ssde_factor(dw_cm, phantom_cm)
    return f * ctdivol if f is not None else None
