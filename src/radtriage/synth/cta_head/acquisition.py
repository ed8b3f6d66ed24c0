"""Acquisition: scanner and bolus drawn; the lateral localizer; thick slabs (MIP, average) of the thin series."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
from scipy import ndimage

from radtriage.synth.cta_head.anatomy import HU_BLOOD, Grid, _Head, _neck
from radtriage.synth.cta_head.render import _render

if TYPE_CHECKING:
    from radtriage.synth.cta_head.volume import CtaHeadSample


@dataclass(frozen=True)
class _Acquisition:
    thickness: float
    spacing: float
    fov: float
    coverage: float
    bottom: float  # anatomical height of the first slice, mm
    kvp: float
    sigma: float  # combined point-spread sigma, mm
    arterial: float
    venous: float
    noise_sd: float
    base_boost: float  # extra noise at the skull base


def _draw_acquisition(rng: np.random.Generator, matrix: int, fov_mm, slice_thickness, slice_spacing, coverage_mm,
                      kvp) -> _Acquisition:
    """Scanner and bolus; every number is drawn (in a fixed order) even when an option overrides it."""
    d_thk = float(rng.choice([0.625, 0.75, 0.8, 1.0, 1.25], p=[0.3, 0.2, 0.1, 0.3, 0.1]))
    d_overlap = rng.random() < 0.3
    d_fov, d_cov, d_bottom = rng.uniform(210, 250), rng.uniform(60, 100), rng.uniform(-40, -20)
    d_kvp = 100.0 if rng.random() < 0.55 else 120.0
    psf, art, venous_f, noise_ref, base_boost = (rng.uniform(0.35, 0.55), rng.uniform(250, 400), rng.uniform(0.1, 0.9),
                                                 rng.uniform(6, 12), rng.uniform(0.3, 0.8))
    thk = float(slice_thickness or d_thk)
    overlap = d_overlap and thk >= 1.0 and slice_thickness is None  # 1.0/0.8, 1.25/1.0 reconstructions
    dz = float(slice_spacing or (round(thk * 0.8, 3) if overlap else thk))
    fov = float(fov_mm or d_fov)
    cov = float(coverage_mm or d_cov)
    kv = float(kvp or d_kvp)
    px = fov / matrix
    # in-plane kernel blur and pixel size; slice sensitivity profile (FWHM = thickness) and slice interval
    sigma = math.sqrt((2 * (psf**2 + px**2 / 12.0) + (thk / 2.355) ** 2 + dz**2 / 12.0) / 3.0)
    low_kv = 1.15 if kv < 110 else 1.0  # iodine attenuates more, and noise is higher, at 100 kVp
    art *= low_kv
    return _Acquisition(
        thickness=thk, spacing=dz, fov=fov, coverage=cov,
        bottom=d_bottom if coverage_mm is None or coverage_mm >= 60 else -0.4 * cov,
        kvp=kv, sigma=sigma, arterial=art, venous=HU_BLOOD + venous_f * (art - HU_BLOOD),
        noise_sd=noise_ref * low_kv / math.sqrt(thk), base_boost=base_boost,
    )



def localizer(smp: CtaHeadSample, rng: np.random.Generator) -> tuple[np.ndarray, tuple, tuple]:
    """A lateral scout: the head and neck rendered coarsely and projected left-right.

    Returns ``(image (1, rows, cols), spacing, origin)`` for `write_ct_series`;
    rows run from head to feet along z, columns from anterior to posterior.
    """
    head: _Head = smp.head
    step = 2.0
    c = head.centre
    nz, ny, nx = 130, 130, 100
    grid = Grid((float(c[0] - step * nx / 2), float(c[1] + head.v0 - step * ny / 2), float(c[2] - 150.0)),
                (step, step, step), (nz, ny, nx))
    hu = _render(head, grid, 1.0, None, None, _neck(head)).astype(np.float32)
    path = np.clip(hu + 1000.0, 0.0, None).sum(axis=2) * (step / 1000.0)  # water-equivalent mm
    path = ndimage.zoom(path, 2, order=1)  # 1 mm pixels
    image = -1000.0 + 9.0 * path + rng.normal(0.0, 8.0, path.shape)
    image = image[::-1][None]  # rows from the top of the head down
    z_top = grid.origin[2] + step * (nz - 1)
    return image.astype(np.float32), (1.0, step / 2, step / 2), (float(c[0]), grid.origin[1], z_top)


def _slabs(hu: np.ndarray, dz: float, slab_mm: float, step_mm: float, op) -> tuple[np.ndarray, float, float]:
    """Axial slabs (MIP or average) ``slab_mm`` thick every ``step_mm``: (volume, first centre offset, step) mm."""
    n = max(1, int(round(slab_mm / dz)))
    stride = max(1, int(round(step_mm / dz)))
    starts = list(range(0, max(1, hu.shape[0] - n + 1), stride))
    out = np.stack([op(hu[s:s + n], axis=0) for s in starts]).astype(np.float32)
    return out, (n - 1) * dz / 2, stride * dz

