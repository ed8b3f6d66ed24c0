"""Rendering: vessels as partial-volume capsule segments, tissue from the look-up, blobs, noise, in slabs."""

from __future__ import annotations

import bisect
import math
from dataclasses import dataclass

import numpy as np
from scipy import ndimage, special

from radtriage.synth.cta_head.anatomy import (
    _CHUNK, _D0, _D1, _DD, _DH, _DQ, _FL0, _FLD, _FLN, _H0, _H1, _QMAX, HU_AIR, Grid, _Blob, _floor, _Head,
)
from radtriage.synth.cta_head.vessels import _Vessel

from radtriage.synth.noise import binomial_noise as _noise


# --------------------------------------------------------------------------- rendering


@dataclass
class _Segment:
    a: np.ndarray
    ab: np.ndarray
    l2: float
    ra: float
    dr: float
    sleeve: float
    hu: float
    pv: float  # peak partial-volume factor for this calibre
    box: tuple[int, int, int, int, int, int]


def _breaks(v: _Vessel, tol: float = 0.1, h_min: float = 1.0, h_max: float = 6.0) -> np.ndarray:
    """Arc lengths cutting a vessel into chords that stay within ``tol`` mm of the curve."""
    seg = np.diff(v.pts, axis=0)
    tang = seg / np.maximum(np.linalg.norm(seg, axis=1, keepdims=True), 1e-9)
    turn = np.arccos(np.clip((tang[1:] * tang[:-1]).sum(axis=1), -1.0, 1.0))
    kappa = np.concatenate([[0.0], turn / np.maximum(np.diff(v.s)[1:], 1e-9), [0.0]])
    allowed = np.clip(np.sqrt(8 * tol / np.maximum(kappa, 1e-9)), h_min, h_max)
    window = int(h_max / max(float(np.diff(v.s).mean()), 1e-3)) + 1
    allowed = ndimage.minimum_filter1d(allowed, window, origin=-(window // 2), mode="nearest").tolist()
    arc = v.s.tolist()
    out, i = [0.0], 0
    while arc[i] < v.length - 1e-6:
        nxt = arc[i] + allowed[i]
        i = min(max(bisect.bisect_right(arc, nxt) - 1, i + 1), len(arc) - 1)
        out.append(arc[i])
    if v.clot is not None:
        out += [c for c in v.clot if 0 < c < v.length]
    return np.unique(np.round(np.asarray(out), 6))


def _segments(vessels: list[_Vessel], head: _Head, grid: Grid, sigma: float, hu_of) -> list[_Segment]:
    """Cut every vessel into straight pieces (split at the thrombus ends) that touch the grid."""
    out = []
    shape = np.array(grid.shape)
    for v in vessels:
        s = _breaks(v)
        pts = head.to_world(np.stack([np.interp(s, v.s, v.pts[:, i]) for i in range(3)], axis=1))
        r, sl = np.interp(s, v.s, v.r), np.interp(s, v.s, v.sl)
        a, b = pts[:-1], pts[1:]
        pad = (np.maximum(r[:-1], r[1:]) + np.maximum(sl[:-1], sl[1:]) + 2.8 * sigma)[:, None]
        lo = np.maximum(np.ceil(grid.voxel(np.minimum(a, b) - pad)), 0).astype(int)
        hi = np.minimum(np.floor(grid.voxel(np.maximum(a, b) + pad)) + 1, shape).astype(int)
        for n in np.nonzero((lo < hi).all(axis=1))[0]:
            ra, rb = float(r[n]), float(r[n + 1])
            rm = 0.5 * (ra + rb)
            pv = (1.0 - math.exp(-(rm**2) / (2 * sigma**2))) / max(float(special.ndtr(rm / sigma)), 1e-6)
            ab = b[n] - a[n]
            box = (lo[n, 0], hi[n, 0], lo[n, 1], hi[n, 1], lo[n, 2], hi[n, 2])
            out.append(_Segment(a[n].astype(np.float32), ab.astype(np.float32), float(ab @ ab), ra, rb - ra,
                                float(0.5 * (sl[n] + sl[n + 1])), hu_of(v, 0.5 * (s[n] + s[n + 1])), pv,
                                tuple(int(x) for x in box)))
    return out


def _lut(head: _Head, sigma: float) -> np.ndarray:
    """Tissue value over (rho^2, height above floor), blurred by the point spread."""
    d = np.arange(_D0, _D1, _DD)[:, None]
    hgt = np.arange(_H0, _H1 + _DH / 2, _DH)[None, :]
    hu = head.hu
    dist = np.maximum(d, -hgt)  # signed distance to the cavity wall
    brain = np.where(dist > -head.t_sas, hu["csf"], np.where(dist > -head.t_sas - head.t_cortex, hu["gm"], hu["wm"]))
    x = d / head.t_skull
    vault = hu["cortical"] - (hu["cortical"] - hu["diploe"]) * np.exp(-(((x - 0.5) / 0.22) ** 2))
    bone = np.where(d >= 0, vault, hu["base"])
    outside = np.where(d < head.t_skull,
                       np.where((d >= 0) | (hgt >= -head.t_base), bone, hu["soft"]),
                       np.where(d < head.t_skull + head.t_scalp, hu["scalp"], HU_AIR))
    table = np.where(dist < 0, brain, outside).astype(np.float32)
    table = ndimage.gaussian_filter(table, sigma / _DD, mode="nearest")
    q = np.arange(0.0, _QMAX, _DQ)
    rows = np.clip(np.rint(((np.sqrt(q) - 1.0) * head.reff - _D0) / _DD), 0, table.shape[0] - 1).astype(int)
    return np.ascontiguousarray(table[rows])


def _paint_blob(out: np.ndarray, head: _Head, b: _Blob, grid: Grid, axes, k0: int, floor_map, sigma: float):
    R = head.rot if b.axes is None else head.rot @ np.asarray(b.axes).T  # columns: blob axes in world
    half = np.sqrt(((R * np.asarray(b.radii)) ** 2).sum(axis=1)) + 2 * sigma
    c = head.to_world(b.centre)
    kz0, kz1, j0, j1, i0, i1 = grid.index_range(c - half, c + half)
    kz0, kz1 = max(kz0, k0), min(kz1, k0 + out.shape[0])
    if kz0 >= kz1 or j0 >= j1 or i0 >= i1:
        return
    zs, ys, xs = axes[0][kz0:kz1], axes[1][j0:j1], axes[2][i0:i1]
    dz = zs - np.float32(c[2])
    dy, dx = ys - np.float32(c[1]), xs - np.float32(c[0])
    rho2 = grad2 = None
    for n in range(3):
        col = R[:, n] / b.radii[n]
        e = (float(col[0]) * dx[None, :] + float(col[1]) * dy[:, None])[None] + (float(col[2]) * dz)[:, None, None]
        e2 = e * e
        rho2 = e2.copy() if rho2 is None else rho2 + e2
        e2 *= np.float32(1.0 / b.radii[n] ** 2)
        grad2 = e2 if grad2 is None else grad2 + e2
    # first-order distance to the surface: (rho^2 - 1) / |grad rho^2|
    dist = (rho2 - 1.0) / (2.0 * np.sqrt(grad2) + 1e-6)
    alpha = np.clip(0.5 - dist * np.float32(1.0 / (2.5 * sigma)), 0.0, 1.0)
    if b.region != "any":
        hb = _height(head, floor_map, zs, ys, xs)
        if b.region == "cavity":
            alpha *= np.clip(0.5 + hb / (2.5 * sigma), 0.0, 1.0)
        else:
            alpha *= np.clip(0.5 + (-hb - 1.5) / (2.5 * sigma), 0.0, 1.0)
    view = out[kz0 - k0:kz1 - k0, j0:j1, i0:i1]
    if b.mode == "max":
        np.maximum(view, HU_AIR + alpha * (b.value - HU_AIR), out=view)
    else:
        view += alpha * (np.float32(b.value) - view)


def _height(head: _Head, floor_map: np.ndarray, zs, ys, xs) -> np.ndarray:
    """Height above the skull-base floor (anatomical w minus floor(u, v)) on a grid box."""
    iu = head.lin(0, 1.0 / _FLD, -_FL0 + 0.5 * _FLD, zs, ys, xs)
    iv = head.lin(1, 1.0 / _FLD, -_FL0 + 0.5 * _FLD, zs, ys, xs)
    np.clip(iu, 0, _FLN - 1, out=iu)
    np.clip(iv, 0, _FLN - 1, out=iv)
    flat = iu.astype(np.int32)
    flat *= _FLN
    flat += iv.astype(np.int32)
    w = head.lin(2, 1.0, 0.0, zs, ys, xs)
    w -= floor_map.take(flat)
    return w


def _tissue(head: _Head, lut: np.ndarray, floor_map: np.ndarray, zs, ys, xs) -> np.ndarray:
    """Head tissue on a grid box from the look-up table: (rho^2, height above the floor)."""
    nh = lut.shape[1]
    # rho^2 of the inner-table ellipsoid, asymmetric in w
    U = head.lin(0, 1.0 / head.A, 0.0, zs, ys, xs)
    V = head.lin(1, 1.0 / head.B, -head.v0, zs, ys, xs)
    W = head.lin(2, 1.0, -head.w0, zs, ys, xs)
    W *= np.where(W > 0, np.float32(1.0 / head.Cu), np.float32(1.0 / head.Cl))
    U *= U
    V *= V
    W *= W
    U += V
    U += W
    del V, W
    U *= np.float32(1.0 / _DQ)
    np.minimum(U, lut.shape[0] - 1, out=U)
    iq = U.astype(np.int32)
    del U
    corners = np.array([[x, y, z] for x in (xs[0], xs[-1]) for y in (ys[0], ys[-1]) for z in (zs[0], zs[-1])], float)
    w_min = float(((corners - head.centre) @ head.rot[:, 2]).min())
    if w_min - float(floor_map.max()) >= _H1:  # far above the skull base
        return lut[:, -1].take(iq)
    hb = _height(head, floor_map, zs, ys, xs)
    hb -= np.float32(_H0 - 0.5 * _DH)
    hb *= np.float32(1.0 / _DH)
    np.clip(hb, 0, nh - 1, out=hb)
    iq *= nh
    iq += hb.astype(np.int32)
    del hb
    return lut.take(iq)


def _render(head: _Head, grid: Grid, sigma: float, segments: list[_Segment] | None,
            noise: tuple[np.random.Generator, np.ndarray] | None, extra: list[_Blob] = ()) -> np.ndarray:
    """The volume in HU (int16): tissue, blobs, vessels with their cisterns, noise."""
    lut = _lut(head, sigma)
    uu = np.arange(_FLN) * _FLD + _FL0
    floor_map = _floor(head.floor, uu[:, None], uu[None, :]).astype(np.float32)
    zs_all, ys, xs = axes = grid.axes()
    nz = grid.shape[0]
    # the head's box in the axial plane (outer surface of the scalp, with margin)
    m = head.t_skull + head.t_scalp + 4 * sigma + 2.0
    half = np.sqrt(((head.rot * np.array([head.A + m, head.B + m, max(head.Cu, head.Cl) + m])) ** 2).sum(axis=1))
    c = head.to_world([0.0, head.v0, head.w0])
    _, _, j0, j1, i0, i1 = grid.index_range(c - half, c + half)
    result = np.empty(grid.shape, np.int16)
    csf = np.float32(head.hu["csf"])
    seg_k0 = np.array([s.box[0] for s in segments or []], int)
    seg_k1 = np.array([s.box[1] for s in segments or []], int)
    for k0 in range(0, nz, _CHUNK):
        k1 = min(nz, k0 + _CHUNK)
        zs = zs_all[k0:k1]
        out = np.full((k1 - k0, *grid.shape[1:]), HU_AIR, np.float32)
        if j0 < j1 and i0 < i1:
            out[:, j0:j1, i0:i1] = _tissue(head, lut, floor_map, zs, ys[j0:j1], xs[i0:i1])
        for b in (*head.blobs, *extra):
            _paint_blob(out, head, b, grid, axes, k0, floor_map, sigma)
        if segments:
            _draw_vessels(out, segments, seg_k0, seg_k1, k0, k1, axes, sigma, csf)
        if noise is not None:
            rng, sd = noise
            a = _noise(rng, out.shape)
            a *= sd[k0:k1].astype(np.float32)[:, None, None]
            out += a
            del a
        np.rint(out, out=out)
        np.clip(out, -1024, 3071, out=out)
        result[k0:k1] = out
    return result


def _draw_vessels(out, segments, seg_k0, seg_k1, k0, k1, axes, sigma, csf):
    zs, ys, xs = axes
    shape = out.shape
    acc = np.zeros(shape, np.float32)  # vessel weight (partial volume fraction)
    val = np.zeros(shape, np.float32)  # its value
    slv = np.zeros(shape, np.float32)  # CSF sleeve weight
    inv = np.float32(1.0 / sigma)
    for n in np.nonzero((seg_k0 < k1) & (seg_k1 > k0))[0]:
        g = segments[n]
        a0, a1, j0, j1, i0, i1 = g.box
        a0, a1 = max(a0, k0), min(a1, k1)
        qz, qy, qx = zs[a0:a1] - g.a[2], ys[j0:j1] - g.a[1], xs[i0:i1] - g.a[0]
        dot = (qx * g.ab[0])[None, None, :] + (qy * g.ab[1])[None, :, None] + (qz * g.ab[2])[:, None, None]
        n2 = (qx * qx)[None, None, :] + (qy * qy)[None, :, None] + (qz * qz)[:, None, None]
        if g.l2 > 1e-9:
            t = dot * np.float32(1.0 / g.l2)
            np.clip(t, 0, 1, out=t)
            d2 = n2 - t * (2 * dot - t * np.float32(g.l2))
        else:
            t = np.zeros_like(dot)
            d2 = n2
        np.maximum(d2, 0, out=d2)
        dist = np.sqrt(d2)
        m = np.float32(g.ra) + np.float32(g.dr) * t - dist
        w = special.ndtr(m * inv) * np.float32(g.pv)
        sub = (slice(a0 - k0, a1 - k0), slice(j0, j1), slice(i0, i1))
        av, vv = acc[sub], val[sub]
        upd = w > av
        np.putmask(vv, upd, np.float32(g.hu))
        np.maximum(av, w, out=av)
        if g.sleeve > 0:
            sv = slv[sub]
            np.maximum(sv, special.ndtr((m + np.float32(g.sleeve)) * inv), out=sv)
    idx = np.flatnonzero((acc > 1e-3) | (slv > 1e-3))
    flat = out.reshape(-1)
    o = flat[idx]
    s = slv.reshape(-1)[idx]
    o += s * (csf - o)
    a = acc.reshape(-1)[idx]
    o += a * (val.reshape(-1)[idx] - o)
    flat[idx] = o

