"""Acquisition: in-plane resolution, slab rendering with partial volume, correlated noise; the localizer."""

from __future__ import annotations

import math

import numpy as np

from radtriage.synth.ct_chest.body import Body, Nodule, Scan, Tubes, _psf, _table_y
from radtriage.synth.ct_chest.lungs import _nodule_patch
from radtriage.synth.ct_chest.plane import _Plane
from radtriage.synth.ct_chest.raster import _capsules, _empty_boxes, _splat


def _up2(a: np.ndarray, out: np.ndarray) -> None:
    """Bilinear x2 upsampling in-plane (cell-centred), (nk, h, w) -> out (nk, 2h, 2w)."""
    nk, h, w = a.shape
    t = np.empty((nk, h, 2 * w), np.float32)
    t[:, :, 0::2] = a
    t[:, :, 1::2] = a
    d = a[:, :, 1:] - a[:, :, :-1]
    d *= 0.25
    t[:, :, 2::2] -= d
    t[:, :, 1:-1:2] += d
    out[:, 0::2] = t
    out[:, 1::2] = t
    d = t[:, 1:] - t[:, :-1]
    d *= 0.25
    out[:, 2::2] -= d
    out[:, 1:-1:2] += d


def _plane_for(body: Body, scan: Scan, factor: int) -> _Plane:
    n = scan.matrix // factor
    step = scan.pixel * factor
    off = (factor - 1) / 2 * scan.pixel
    x0, y0, _ = scan.origin
    xp = (x0 + off + np.arange(n) * step).astype(np.float32)
    yp = (y0 + off + np.arange(n) * step).astype(np.float32)
    Xp, Yp = np.meshgrid(xp, yp)
    X, Y, _ = scan.to_body(Xp, Yp, 0.0)
    wxy = math.hypot(step, _psf(scan))
    return _Plane(body, X.astype(np.float32), Y.astype(np.float32), Xp, Yp, wxy, scan.thickness, _table_y(body, scan))


def _render(body: Body, scan: Scan, blood: Tubes, air: Tubes, walls: np.ndarray, nodules: list[Nodule],
            rng_noise: np.random.Generator, rng_nod: np.random.Generator) -> np.ndarray:
    shape = scan.shape
    sp = scan.spacing
    width = (scan.thickness, math.hypot(scan.pixel, _psf(scan)))
    h = body.hu
    # blood (vessels, oesophagus): capsules, or material splats for tubes thinner than ~1.5 pixels
    F = np.zeros(shape, np.float32)
    fbox = _empty_boxes(shape)
    va, vb = scan.to_voxel(blood.a), scan.to_voxel(blood.b)
    thin = np.maximum(blood.r0, blood.r1) < 1.2 * scan.pixel
    _capsules(F, va[~thin], vb[~thin], blood.r0[~thin], blood.r1[~thin], sp, width, boxes=fbox)
    _splat(F, va[thin], vb[thin], blood.r0[thin], blood.r1[thin], sp, boxes=fbox)
    np.minimum(F, 1.0, out=F)
    layers = [(F, 1.0, h["blood"], fbox)]
    # airways: wall (outer) then lumen, uint8 fractions
    aa, ab = scan.to_voxel(air.a), scan.to_voxel(air.b)
    wall, lumen = np.zeros(shape, np.uint8), np.zeros(shape, np.uint8)
    mbox = _empty_boxes(shape)
    _capsules([(wall, walls, 255.0), (lumen, 0.0, 255.0)], aa, ab, air.r0, air.r1, sp, width, boxes=mbox)
    layers += [(wall, 1 / 255, h["wall"], mbox), (lumen, 1 / 255, -1000.0, mbox)]
    patches = [p for p in (_nodule_patch(n, scan, rng_nod) for n in nodules) if p is not None]
    factor = 2 if scan.matrix >= 384 and scan.matrix % 2 == 0 else 1
    plane = _plane_for(body, scan, factor)
    out = np.empty(shape, np.int16)
    z_body = scan.origin[2] + np.arange(scan.nz) * scan.dz - scan.z_carina
    # noise: sums of uniform int8 fields (close to Gaussian), correlated in-plane
    n = scan.matrix
    passes = 1 if scan.kernel == "lung" else 2
    norm = 73.9 * (2.0 if passes == 1 else 6.0)
    shoulders = 1 + 0.35 * np.clip((z_body - (body.apex_z - 40)) / 60, 0, 1)
    # outside the 500 mm scan field of view (centred on the isocentre, x = y = 0) the scanner pads -1024
    xs = scan.origin[0] + np.arange(n) * scan.pixel
    ys = scan.origin[1] + np.arange(n) * scan.pixel
    outside = np.hypot(xs[None, :], ys[:, None]) > 250.0
    chunk = 8
    buf = np.empty((chunk, n, n), np.float32)
    for k0 in range(0, scan.nz, chunk):
        k1 = min(k0 + chunk, scan.nz)
        m = k1 - k0
        hu = buf[:m]
        static = plane.slab(z_body[k0:k1])
        if factor == 2:
            _up2(static, hu)
        else:
            hu[...] = static
        for dense, scale, value, boxes in layers:
            y0, y1 = boxes[k0:k1, 0].min(), boxes[k0:k1, 1].max()
            x0, x1 = boxes[k0:k1, 2].min(), boxes[k0:k1, 3].max()
            if y1 <= y0 or x1 <= x0:
                continue
            sub = hu[:, y0:y1, x0:x1]
            frac = dense[k0:k1, y0:y1, x0:x1].astype(np.float32)
            if scale != 1.0:
                frac *= np.float32(scale)
            frac *= value - sub
            sub += frac
        for sl, f, nhu, core in patches:
            a0, a1 = max(sl[0].start, k0), min(sl[0].stop, k1)
            if a0 >= a1:
                continue
            s = slice(a0 - sl[0].start, a1 - sl[0].start)
            sub = hu[a0 - k0:a1 - k0, sl[1], sl[2]]
            np.maximum(sub, sub + f[s] * (nhu[s] - sub), out=sub)  # ground glass leaves vessels visible
            if core is not None:
                sub += core[0][s] * (core[1] - sub)
        e = passes + 1
        x = rng_noise.integers(-128, 128, size=(m, n + e - 1, n + e - 1), dtype=np.int8).astype(np.int16)
        for _ in range(passes):
            x = x[:, 1:] + x[:, :-1]
            x = x[:, :, 1:] + x[:, :, :-1]
        hu += x * (scan.noise_sd / norm * shoulders[k0:k1, None, None]).astype(np.float32)
        np.clip(hu, -1024, 3071, out=hu)
        np.rint(hu, out=hu)
        if outside.any():
            hu[:, outside] = -1024
        out[k0:k1] = hu
    return out


def _localizer(body: Body, scan: Scan) -> tuple[np.ndarray, tuple[float, float, float], tuple[float, float]]:
    """AP topogram over the scan range +/- 60 mm: (image (1, rows z, cols x) as HU-like, origin, spacing)."""
    step_x, step_y, step_z = 2.0, 4.0, 2.5
    z_lo = scan.origin[2] - 60
    z_hi = scan.origin[2] + (scan.nz - 1) * scan.dz + 60
    zs = np.arange(z_hi, z_lo, -step_z)  # rows from head to feet
    xs = np.arange(-256, 256, step_x) + scan.body_xy[0]
    ys = np.arange(-200, 200, step_y) + scan.body_xy[1]
    Xp, Yp = np.meshgrid(xs.astype(np.float32), ys.astype(np.float32))
    X, Y, _ = scan.to_body(Xp, Yp, 0.0)
    plane = _Plane(body, X.astype(np.float32), Y.astype(np.float32), Xp, Yp, 4.0, step_z, _table_y(body, scan))
    proj = np.empty((len(zs), len(xs)), np.float32)
    for k0 in range(0, len(zs), 16):
        hu = plane.slab(zs[k0:k0 + 16] - scan.z_carina)
        mu = np.clip(hu + 1000, 0, None) / 1000  # water-equivalent
        proj[k0:k0 + 16] = mu.sum(1) * step_y
    img = 3000 * (1 - np.exp(-proj / 140)) - 1000
    origin = (round(float(xs[0]), 3), round(float(scan.body_xy[1]), 3), round(float(zs[0]), 3))
    return img[None].astype(np.float32), origin, (step_z, step_x)

