"""Rasterising tapered capsules into a volume with partial volume, bucketed by box shape."""

from __future__ import annotations

import math

import numpy as np


_BUCKETS = np.array([1, 2, 3, 4, 5, 6, 8, 10, 12, 14, 16, 20, 24, 28, 32, 40, 48, 56, 64, 80, 96, 112, 128, 160,
                     192, 256, 320, 384, 448, 512, 640, 768, 1024])


def _split(a: np.ndarray, b: np.ndarray, r0: np.ndarray, r1: np.ndarray, sp: np.ndarray):
    """Cut long capsules (in voxel coordinates) into pieces no longer than ~1.5 radii, for tight boxes."""
    length = np.linalg.norm((b - a) * sp, axis=1)
    n = np.maximum(1, np.ceil(length / np.maximum(2.0 * np.maximum(r0, r1), 3.0))).astype(np.int64)
    if (n == 1).all():
        return a, b, r0, r1, np.arange(len(n))
    owner = np.repeat(np.arange(len(n)), n)
    j = np.arange(n.sum()) - np.repeat(np.cumsum(n) - n, n)
    t0, t1 = j / n[owner], (j + 1) / n[owner]
    d = (b - a)[owner]
    dr = (r1 - r0)[owner]
    return (a[owner] + t0[:, None] * d, a[owner] + t1[:, None] * d, r0[owner] + t0 * dr, r0[owner] + t1 * dr,
            owner)


def _extend_boxes(boxes: np.ndarray | None, lo: np.ndarray, hi: np.ndarray) -> None:
    """Grow the per-slice in-plane bounding boxes (nz, 4: y0, y1, x0, x1) by index boxes [lo, hi)."""
    if boxes is None or len(lo) == 0:
        return
    nzr = hi[:, 0] - lo[:, 0]
    owner = np.repeat(np.arange(len(lo)), nzr)
    zs = lo[owner, 0] + np.arange(len(owner)) - np.repeat(np.cumsum(nzr) - nzr, nzr)
    np.minimum.at(boxes[:, 0], zs, lo[owner, 1])
    np.maximum.at(boxes[:, 1], zs, hi[owner, 1])
    np.minimum.at(boxes[:, 2], zs, lo[owner, 2])
    np.maximum.at(boxes[:, 3], zs, hi[owner, 2])


def _empty_boxes(shape) -> np.ndarray:
    return np.tile(np.array([shape[1], 0, shape[2], 0], np.int64), (shape[0], 1))


def _capsules(dst, a: np.ndarray, b: np.ndarray, r0: np.ndarray, r1: np.ndarray, spacing, width,
              scale: float = 1.0, boxes: np.ndarray | None = None, cap_batch: int = 1_000_000) -> None:
    """Max-combine the partial-volume fraction of tapered capsules into ``dst``.

    ``a``/``b``: (S, 3) continuous voxel indices (z, y, x); ``r0``/``r1`` mm;
    ``spacing`` mm per index; ``width`` the partial-volume ramp width along
    z and in-plane (slice thickness, in-plane resolution). ``scale``
    multiplies the fraction (255 for a uint8 destination). ``dst`` may be a
    list of (array, extra radius (S,) or scalar, scale): concentric capsules
    (e.g. a bronchial wall and its lumen) from one distance computation.
    ``boxes`` (nz, 4) collects each slice's touched rows/columns.
    """
    outputs = dst if isinstance(dst, list) else [(dst, 0.0, scale)]
    if len(r0) == 0:
        return
    shape = np.array(outputs[0][0].shape)
    sp = np.asarray(spacing, float)
    n0 = len(r0)
    adds = [np.broadcast_to(np.asarray(add, float), (n0,)) for _, add, _ in outputs]
    extra = np.max(np.stack(adds), axis=0)
    a, b, r0, r1, owner = _split(a, b, r0, r1, sp)
    adds = [ad[owner].astype(np.float32) for ad in adds]
    wz2, wxy2 = float(width[0]) ** 2, float(width[1]) ** 2
    margin = (np.maximum(r0, r1)[:, None] + extra[owner][:, None]
              + 0.5 * np.asarray(width)[[0, 1, 1]][None, :]) / sp[None, :]
    lo = np.clip(np.floor(np.minimum(a, b) - margin).astype(np.int64), 0, shape)
    hi = np.clip(np.floor(np.maximum(a, b) + margin).astype(np.int64) + 1, 0, shape)
    dims = hi - lo
    idx = np.nonzero((dims > 0).all(1))[0]
    if len(idx) == 0:
        return
    _extend_boxes(boxes, lo[idx], hi[idx])
    q = _BUCKETS[np.searchsorted(_BUCKETS, dims[idx])]
    keys = (q[:, 0] * 10**4 + q[:, 1]) * 10**4 + q[:, 2]
    order = np.lexsort((lo[idx, 1], lo[idx, 0], keys))  # by box shape, then in memory order (cache)
    idx, q, keys = idx[order], q[order], keys[order]
    f32 = np.float32
    am = (a * sp).astype(f32)
    D = ((b - a) * sp).astype(f32)
    Dn = D / np.maximum((D * D).sum(1), 1e-6)[:, None]
    dr = (r1 - r0).astype(f32)
    r0 = r0.astype(f32)
    for grp in np.split(np.arange(len(idx)), np.nonzero(np.diff(keys))[0] + 1):
        Bz, By, Bx = (int(v) for v in q[grp[0]])
        gz, gy, gx = (g.reshape(-1) for g in np.meshgrid(np.arange(Bz), np.arange(By), np.arange(Bx),
                                                            indexing="ij"))
        per = max(1, cap_batch // (Bz * By * Bx))
        for s0 in range(0, len(grp), per):
            _capsule_batch(outputs, adds, idx[grp[s0:s0 + per]], lo, hi, (gz, gy, gx), (am, D, Dn, dr, r0), sp,
                           shape, wz2, wxy2)


def _capsule_batch(outputs, adds, sel, lo, hi, offsets, caps, sp, shape, wz2: float, wxy2: float) -> None:
    """Max-combine the capsules ``sel`` (boxes of one shape) into each output, over their boxes' voxels."""
    gz, gy, gx = offsets
    am, D, Dn, dr, r0 = caps
    f32 = np.float32
    L, H = lo[sel], hi[sel]
    iz, iy, ix = L[:, 0, None] + gz, L[:, 1, None] + gy, L[:, 2, None] + gx  # (S, V)
    A = am[sel]
    pz = iz.astype(f32) * f32(sp[0]) - A[:, 0, None]
    py = iy.astype(f32) * f32(sp[1]) - A[:, 1, None]
    px = ix.astype(f32) * f32(sp[2]) - A[:, 2, None]
    t = pz * Dn[sel, 0, None] + py * Dn[sel, 1, None]
    t += px * Dn[sel, 2, None]
    np.clip(t, 0.0, 1.0, out=t)
    Ds = D[sel]
    pz -= t * Ds[:, 0, None]
    py -= t * Ds[:, 1, None]
    px -= t * Ds[:, 2, None]
    pz *= pz
    py *= py
    px *= px
    py += px
    py += pz
    py += 1e-6  # squared distance to the axis
    w = pz / py
    w *= wz2 - wxy2
    w += wxy2
    np.sqrt(w, out=w)
    np.sqrt(py, out=py)
    t *= dr[sel, None]
    t += r0[sel, None]
    t -= py  # signed depth below the surface (mm)
    inside = (iz < H[:, 0, None]) & (iy < H[:, 1, None]) & (ix < H[:, 2, None])
    iz *= shape[1]
    iz += iy
    iz *= shape[2]
    iz += ix
    lin_all = iz.reshape(-1)
    for (out, _, sc), add in zip(outputs, adds):
        f = (t + add[sel, None]) / w
        f += 0.5
        np.clip(f, 0.0, 1.0, out=f)
        f *= inside
        f = f.reshape(-1)
        keep = np.flatnonzero(f > 0.004)
        v = f[keep] * sc
        np.maximum.at(out.reshape(-1), lin_all[keep],
                      (np.rint(v) if out.dtype == np.uint8 else v).astype(out.dtype))


def _splat(dst: np.ndarray, tubes_vox_a, tubes_vox_b, r0, r1, spacing, boxes: np.ndarray | None = None) -> None:
    """Add thin tubes (radius below a pixel) as their material per voxel, trilinearly."""
    if len(r0) == 0:
        return
    sp = np.asarray(spacing, float)
    seg = (tubes_vox_b - tubes_vox_a) * sp
    length = np.linalg.norm(seg, axis=1)
    step = 0.7 * sp.min()
    n = np.maximum(1, np.ceil(length / step).astype(np.int64))
    owner = np.repeat(np.arange(len(n)), n)
    t = (np.arange(n.sum()) - np.repeat(np.cumsum(n) - n, n) + 0.5) / n[owner]
    p = tubes_vox_a[owner] + t[:, None] * (tubes_vox_b - tubes_vox_a)[owner]
    r = r0[owner] + t * (r1 - r0)[owner]
    m = math.pi * r * r * (length / n)[owner] / float(np.prod(sp))  # voxel fractions
    shape = np.array(dst.shape)
    i0 = np.floor(p).astype(np.int64)
    fr = p - i0
    inside = ((i0 >= 0) & (i0 + 1 < shape)).all(1)
    _extend_boxes(boxes, i0[inside], i0[inside] + 2)
    flat = dst.reshape(-1)
    for dz in (0, 1):
        for dy in (0, 1):
            for dx in (0, 1):
                ii = i0 + [dz, dy, dx]
                wgt = m * np.where(dz, fr[:, 0], 1 - fr[:, 0]) * np.where(dy, fr[:, 1], 1 - fr[:, 1]) \
                    * np.where(dx, fr[:, 2], 1 - fr[:, 2])
                ok = ((ii >= 0) & (ii < shape)).all(1) & (wgt > 1e-4)
                lin = (ii[ok, 0] * shape[1] + ii[ok, 1]) * shape[2] + ii[ok, 2]
                np.add.at(flat, lin, wgt[ok].astype(dst.dtype))

