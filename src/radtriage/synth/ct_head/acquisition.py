"""Acquisition: the scanner's draw (field, slices, dose, noise), slice-by-slice rendering, reconstruction, localizer."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from radtriage.synth.ct_head.anatomy import _Anatomy
from radtriage.synth.ct_head.frame import A_IN, B_IN, C_DN, C_UP, F32, _blur_yx, _Grid, _ramp, _upsample2
from radtriage.synth.ct_head.lesions import _Bleed
from radtriage.synth.ct_head.render import _render
from radtriage.synth.geometry import rotation
from radtriage.synth.noise import fbp_noise


@dataclass(frozen=True, eq=False)
class _Acquisition:
    matrix: int
    fov: float
    pixel: float
    thickness: float
    n_slices: int
    origin: tuple[float, float, float]
    centre: np.ndarray  # head centre, patient mm
    rot: np.ndarray  # head axes in patient coordinates
    rotation_deg: tuple[float, float, float]
    noise_sd: float  # soft kernel, brain centre, HU
    psf_mm: float
    kvp: float
    mas: float
    ctdi_vol: float
    recon_centre: tuple[float, float]


def _draw_acquisition(rng: np.random.Generator, an: _Anatomy, matrix: int,
                      thickness: float | None, max_slices: int | None) -> _Acquisition:
    if thickness is None:
        thickness = float(rng.choice([5.0, 4.0, 3.75, 3.0, 2.5], p=[0.55, 0.15, 0.1, 0.1, 0.1]))
    yaw, pitch, roll = (float(np.clip(rng.normal(0, sd), -2.5 * sd, 2.5 * sd)) for sd in (2.5, 4.0, 2.0))
    rot = rotation(*(math.radians(v) for v in (yaw, pitch, roll)))
    sc = np.array(an.scale)
    centre = np.array([rng.normal(0, 4), rng.normal(5, 7), rng.uniform(-180, 20)])
    out = an.skull_t + an.scalp_t
    semi = sc * np.array([A_IN * 1.06 + out, B_IN + out, C_UP + out])
    z_top = centre[2] + math.sqrt(float(np.sum((rot[2] * semi) ** 2)))
    lows = [centre[2] + float(rot[2] @ (sc * np.array(p))) for p in ((0, 40, -62), (0, 15, -64), (30, 30, -58))]
    z_start = min(lows) + rng.uniform(-4, 6)
    z_end = z_top + rng.uniform(-1, 6)
    n = int(math.ceil((z_end - z_start) / thickness))
    if max_slices is not None and n > max_slices:
        mid = centre[2] + float(rot[2] @ (sc * np.array([0, 0, 5.0])))
        z_start = mid - max_slices * thickness / 2
        n = max_slices
    half = max(semi[0], semi[1] + 12) + 6
    fov = float(max(rng.uniform(215, 250), 2 * half))
    pixel = fov / matrix
    rc = (float(centre[0] + rng.normal(0, 2)), float(centre[1] + rng.normal(0, 3)))
    origin = (rc[0] - fov / 2 + pixel / 2, rc[1] - fov / 2 + pixel / 2, z_start + thickness / 2)
    kvp = float(rng.choice([120.0, 120.0, 120.0, 100.0, 140.0]))
    ctdi = float(rng.uniform(38, 65))
    # noise SD in brain for a 5 mm soft-kernel slice at ~55 mGy: typically 2.5-4.5 HU
    noise = rng.uniform(2.5, 4.5) * math.sqrt(5.0 / thickness) * math.sqrt(55.0 / ctdi)
    return _Acquisition(
        matrix=matrix, fov=fov, pixel=pixel, thickness=float(thickness), n_slices=n, origin=origin,
        centre=centre, rot=rot, rotation_deg=(yaw, pitch, roll), noise_sd=float(noise),
        psf_mm=float(rng.uniform(0.45, 0.7)), kvp=kvp, mas=float(rng.uniform(250, 380)),
        ctdi_vol=ctdi, recon_centre=rc,
    )



def _reconstruct(rng: np.random.Generator, slab: np.ndarray, acq: _Acquisition, factor: int,
                 hbox: tuple[slice, slice], noise_map: tuple[np.ndarray, np.ndarray], *, psf_mm: float,
                 noise_sd: float, fc: float, sharpen: float = 0.0) -> np.ndarray:
    """Coarse slab-averaged HU -> output matrix: PSF blur, resample, noise, quantise to int16 HU."""
    img = _blur_yx(slab[:, hbox[0], hbox[1]], psf_mm / (acq.pixel * factor))
    if factor == 2:
        img = _upsample2(img)
    if sharpen:
        img = img + F32(sharpen) * (img - _blur_yx(img, 1.2))
    m = acq.matrix
    full = np.full((slab.shape[0], m, m), -1000.0, F32)
    full[:, hbox[0].start * factor:hbox[0].stop * factor, hbox[1].start * factor:hbox[1].stop * factor] = img
    del img
    noise = fbp_noise(rng, full.shape, acq.pixel, fc)
    central, low = noise_map
    noise *= central[None]
    noise *= (F32(noise_sd) * low)[:, None, None]
    full += noise
    del noise
    yy, xx = np.mgrid[0:m, 0:m]
    full[:, np.hypot(yy - (m - 1) / 2, xx - (m - 1) / 2) > m / 2] = -1024  # outside the reconstruction circle
    np.rint(full, out=full)
    np.clip(full, -1024, 3071, out=full)
    return full.astype(np.int16)


def _coarse_axes(acq: _Acquisition, factor: int):
    """Centres (patient mm) of the coarse render pixels; coarse pixel i covers output pixels f*i..f*i+f-1."""
    m = acq.matrix // factor
    step = acq.pixel * factor
    px = acq.origin[0] + (factor - 1) / 2 * acq.pixel + step * np.arange(m)
    py = acq.origin[1] + (factor - 1) / 2 * acq.pixel + step * np.arange(m)
    return px, py


def _fibonacci_sphere(n: int) -> np.ndarray:
    k = np.arange(n) + 0.5
    z = 1 - 2 * k / n
    r = np.sqrt(1 - z * z)
    phi = math.pi * (1 + 5**0.5) * k
    return np.stack([r * np.cos(phi), r * np.sin(phi), z], axis=1)


def _slice_boxes(acq: _Acquisition, an: _Anatomy, px: np.ndarray, py: np.ndarray, z_centres: np.ndarray,
                 half_depth: float) -> list[tuple[slice, slice] | None]:
    """Per slice, the coarse in-plane index box that holds the head (with a margin)."""
    u = _fibonacci_sphere(4000)
    out = an.skull_t + an.scalp_t + an.temporalis
    head = u * np.array([A_IN * (1 + an.egg) + out, B_IN + out, 0.0])
    head[:, 2] = u[:, 2] * np.where(u[:, 2] > 0, C_UP + out, C_DN + out)
    shapes = [head, np.array([0, -62, -58]) + u * [58, 36, 38], np.array([0, -100, -62]) + u * [11, 14, 20],
              np.array([0, 8, -140]) + u * [46, 50, 85]]
    pts = acq.centre + (np.concatenate(shapes) * np.array(an.scale)) @ acq.rot.T
    margin, step = 14.0, px[1] - px[0]
    boxes = []
    for zc in z_centres:
        sel = pts[np.abs(pts[:, 2] - zc) <= half_depth + 10]
        if len(sel) == 0:
            boxes.append(None)
            continue
        lo = sel[:, :2].min(0) - margin
        hi = sel[:, :2].max(0) + margin
        x0 = max(int((lo[0] - px[0]) // step), 0)
        x1 = min(int((hi[0] - px[0]) // step) + 2, len(px))
        y0 = max(int((lo[1] - py[0]) // step), 0)
        y1 = min(int((hi[1] - py[0]) // step) + 2, len(py))
        boxes.append((slice(y0, y1), slice(x0, x1)) if x0 < x1 and y0 < y1 else None)
    return boxes


def _headrest(img: np.ndarray, px: np.ndarray, py: np.ndarray, acq: _Acquisition, an: _Anatomy):
    """A carbon-fibre head cradle with a foam pad under the occiput (a cylinder along z), where there is air."""
    back = acq.centre[1] + (B_IN + an.skull_t + an.scalp_t) * an.scale[1]
    radius = (A_IN + an.skull_t + an.scalp_t + an.temporalis) * an.scale[0] + 4.0
    cy = back + 5.0 - radius
    r = np.hypot(px[None, :] - acq.centre[0], py[:, None] - cy).astype(F32)
    below = _ramp((py[:, None] - cy - F32(0.25 * radius)).astype(F32))
    pad = _ramp(r - F32(radius - 7)) * _ramp(F32(radius) - r) * below
    shell = _ramp(r - F32(radius)) * _ramp(F32(radius + 3.5) - r) * below
    add = pad * F32(150) + shell * F32(1180)
    img += add[None] * (img < -990)
    rows, cols = np.nonzero(add > 0)
    if len(rows) == 0:
        return slice(0, 0), slice(0, 0)
    return slice(int(rows.min()), int(rows.max()) + 1), slice(int(cols.min()), int(cols.max()) + 1)


def _render_slices(an: _Anatomy, acq: _Acquisition, bleeds: Sequence[_Bleed], factor: int):
    """Render slice by slice on the head's box with sub-slices through the thickness, and average them.

    Returns the coarse (n_slices, m, m) HU slab, each bleed's occupancy on the same grid, the box that holds
    the head and cradle, and each metal's occupancy (material -> volume fraction; mimics only).
    """
    px, py = _coarse_axes(acq, factor)
    m = len(px)
    n_sub = max(1, int(math.ceil(acq.thickness / 1.7)))
    offsets = acq.thickness * ((np.arange(n_sub) + 0.5) / n_sub - 0.5)
    z_centres = acq.origin[2] + acq.thickness * np.arange(acq.n_slices)
    boxes = _slice_boxes(acq, an, px, py, z_centres, acq.thickness / 2)
    w = acq.pixel * factor / float(np.mean(an.scale))
    slab = np.full((acq.n_slices, m, m), -1000.0, F32)
    occupancy = [np.zeros((acq.n_slices, m, m), F32) for _ in bleeds]
    metal: dict[str, np.ndarray] = {}
    steps = (acq.thickness / n_sub, acq.pixel * factor, acq.pixel * factor)
    per = max(1, 6 // n_sub)  # slices rendered together: few enough planes to stay in cache
    for k0 in range(0, acq.n_slices, per):
        ks = list(range(k0, min(k0 + per, acq.n_slices)))  # contiguous: the sub-slices stay evenly spaced
        inside = [boxes[k] for k in ks if boxes[k] is not None]
        if not inside:
            continue
        ys = slice(min(b[0].start for b in inside), max(b[0].stop for b in inside))
        xs = slice(min(b[1].start for b in inside), max(b[1].stop for b in inside))
        pz = (z_centres[ks][:, None] + offsets[None, :]).ravel()
        grid = _Grid(px[xs], py[ys], pz, steps, acq, an.scale)
        img, lesions = _render(grid, an, bleeds, w)
        shape = (len(ks), n_sub, img.shape[1], img.shape[2])
        slab[ks, ys, xs] = img.reshape(shape).mean(axis=1)
        for i, a in lesions.items():
            if isinstance(i, tuple):  # ("metal", material): the mimics' metal occupancy
                metal.setdefault(i[1], np.zeros((acq.n_slices, m, m), F32))[ks, ys, xs] = a.reshape(shape).mean(axis=1)
                continue
            occupancy[i][ks, ys, xs] = a.reshape(shape).mean(axis=1)
    hbox = _headrest(slab, px, py, acq, an)
    used = [b for b in boxes if b is not None]
    y0 = min([b[0].start for b in used] + [hbox[0].start]) - 3
    y1 = max([b[0].stop for b in used] + [hbox[0].stop]) + 3
    x0 = min([b[1].start for b in used] + [hbox[1].start]) - 3
    x1 = max([b[1].stop for b in used] + [hbox[1].stop]) + 3
    return slab, occupancy, (slice(max(y0, 0), min(y1, m)), slice(max(x0, 0), min(x1, m))), metal


def _noise_map(acq: _Acquisition, an: _Anatomy) -> tuple[np.ndarray, np.ndarray]:
    """Relative noise SD: in-plane (higher through the centre of the head) and per slice (posterior fossa)."""
    m = acq.matrix
    y = acq.origin[1] + acq.pixel * np.arange(m)
    x = acq.origin[0] + acq.pixel * np.arange(m)
    r2 = (x[None, :] - acq.centre[0]) ** 2 + (y[:, None] - acq.centre[1]) ** 2
    central = 1 + 0.25 * np.exp(-r2 / (2 * 45.0**2))
    z = acq.origin[2] + acq.thickness * np.arange(acq.n_slices)
    zh = (z - acq.centre[2]) / an.scale[2]
    low = 1 + 0.4 * np.clip((-30 - zh) / 25, 0, 1)
    return central.astype(F32), low.astype(F32)


def _localizer(an: _Anatomy, acq: _Acquisition) -> tuple[np.ndarray, tuple[float, float, float], float]:
    """A lateral scout: the line integral of attenuation across the head and neck.

    Returns (image rows = z from the top down, columns = y from anterior), the
    patient position (x, y, z) of its first pixel and its pixel spacing (mm).
    """
    step = 2.0
    sc = np.array(an.scale)
    top = acq.centre[2] + (C_UP + 25) * sc[2]
    zs = np.arange(top - 250, top, step)
    ys = acq.centre[1] + np.arange(-128, 128, step)
    xs = acq.centre[0] + np.arange(-96, 96, step)
    grid = _Grid(xs, ys, zs, (step, step, step), acq, an.scale)
    img, _ = _render(grid, an, (), step / float(np.mean(sc)), detail=False)
    mu = np.maximum(img + F32(1000), F32(0)) * F32(0.019 / 1000 * step)  # water ~0.019/mm at ~70 keV
    proj = mu.sum(axis=2)[::-1]  # (z from the top, y)
    proj = _upsample2(proj[None].astype(F32))[0]
    scaled = proj / max(float(proj.max()), 1e-6) * 3000.0 - 1024.0
    origin = (float(acq.centre[0]), float(ys[0] - step / 4), float(zs[-1] + step / 4))
    return scaled.astype(F32), origin, step / 2
