"""Projecting the skeleton and soft tissue onto the detector: path lengths through bone and tissue."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from radtriage.synth.xr_hand.skeleton import _Blob, _Tube
from radtriage.synth.xr_hand.subject import _RAYS, MU_CANCELLOUS, MU_CORTEX, MU_SOFT, Subject

@dataclass(frozen=True)
class _View:
    """Template (mm) -> image (mm, x right, y down): P = origin + M p."""

    matrix: np.ndarray
    inverse: np.ndarray
    origin: np.ndarray
    spacing: float
    shape: tuple[int, int]
    size: float  # template -> real mm

    def to_px(self, p) -> tuple[float, float]:
        x, y = self.origin + self.matrix @ np.asarray(p, float)
        return float(y / self.spacing), float(x / self.spacing)

    def window(self, pts: np.ndarray) -> tuple[slice, slice, np.ndarray, np.ndarray] | None:
        """Pixel window around template points, and the template coordinates of its pixels."""
        img = self.origin[:, None] + self.matrix @ pts.T
        c0, c1 = np.floor(img[0].min() / self.spacing), np.ceil(img[0].max() / self.spacing) + 1
        r0, r1 = np.floor(img[1].min() / self.spacing), np.ceil(img[1].max() / self.spacing) + 1
        r0, c0 = max(int(r0), 0), max(int(c0), 0)
        r1, c1 = min(int(r1), self.shape[0]), min(int(c1), self.shape[1])
        if r1 <= r0 or c1 <= c0:
            return None
        ys = np.arange(r0, r1, dtype=np.float32)[:, None] * self.spacing - self.origin[1]
        xs = np.arange(c0, c1, dtype=np.float32)[None, :] * self.spacing - self.origin[0]
        inv = self.inverse
        return (slice(r0, r1), slice(c0, c1),
                inv[0, 0] * xs + inv[0, 1] * ys, inv[1, 0] * xs + inv[1, 1] * ys)


def _thick(r2: np.ndarray, depth: float) -> np.ndarray:
    return (2.0 * depth) * np.sqrt(np.maximum(r2, 0.0))


def _step(z: np.ndarray, px: float) -> np.ndarray:
    return np.clip(z / px + 0.5, 0.0, 1.0)


def _tube_attenuation(t: _Tube, view: _View, out: np.ndarray, medullary: np.ndarray, mineral: float):
    rmax = max(t.radii) * 1.1
    ux, uy = t.u
    nx, ny = -uy, ux
    ends = np.array([[-rmax, -rmax], [-rmax, rmax], [t.length + rmax, -rmax], [t.length + rmax, rmax]])
    pts = np.array(t.p0) + ends[:, :1] * np.array(t.u) + ends[:, 1:] * np.array((nx, ny))
    win = view.window(pts)
    if win is None:
        return
    rows, cols, x, y = win
    dx, dy = x - t.p0[0], y - t.p0[1]
    a = dx * ux + dy * uy
    d = dx * nx + dy * ny
    if t.tilt:
        a = a + t.tilt * d
    r0, rs, r1 = t.radii
    f0, f1 = t.flares
    ac = np.clip(a, 0.0, t.length)
    w0 = np.clip(1.0 - ac / f0, 0, 1) ** 2
    w1 = np.clip(1.0 - (t.length - ac) / f1, 0, 1) ** 2
    r = rs + (r0 - rs) * w0 + (r1 - rs) * w1
    ct = t.cortex + (0.6 - t.cortex) * np.maximum(w0, w1) ** 0.5
    ri = np.maximum(r - ct, 0.0)
    e = np.where(a < 0, -a, np.where(a > t.length, a - t.length, 0.0)) * 2.5
    d2 = d * d + e * e
    t_out = _thick(r * r - d2, t.depth)
    t_in = _thick(ri * ri - d2, t.depth)
    px = view.spacing / view.size
    far = _step(t.length - t.trim - a, px)
    if t.epi_height == 0 or t.fused:
        shaft, epi_out, epi_in = far, 0.0, 0.0
    else:
        h = t.epi_height
        shaft = _step(a - (h + t.gap / 2), px) * far
        epi_out = epi_in = 0.0
        if t.nucleus is not None:
            hn, wn, cn = t.nucleus
            region = _step(h - t.gap / 2 - a, px)
            q = 1.0 - ((a - h / 2) / hn) ** 2 - (d / wn) ** 2
            rim = 0.5
            qi = 1.0 - ((a - h / 2) / max(hn - rim, 0.2)) ** 2 - (d / max(wn - rim, 0.2)) ** 2
            epi_out = np.minimum(t_out, 2 * cn * np.sqrt(np.maximum(q, 0))) * region
            epi_in = np.minimum(t_in, 2 * max(cn - rim, 0.2) * np.sqrt(np.maximum(qi, 0))) * region
    outer = t_out * shaft + epi_out
    inner = t_in * shaft + epi_in
    trab = (MU_CANCELLOUS - MU_SOFT) * inner
    att = mineral * ((MU_CORTEX - MU_SOFT) * (outer - inner) + trab)
    if t.scar > 0:
        band = np.exp(-0.5 * ((a - t.epi_height) / 0.35) ** 2)
        att = att + mineral * 0.35 * t.scar * (MU_CORTEX - MU_CANCELLOUS) * band * t_in * far
    out[rows, cols] += att * view.size
    medullary[rows, cols] += trab * view.size
    return rows, cols


def _blob_attenuation(b: _Blob, view: _View, out: np.ndarray, medullary: np.ndarray, mineral: float):
    m = max(b.a, b.b) * 1.05
    pts = np.array(b.centre) + np.array([[-m, -m], [-m, m], [m, -m], [m, m]])
    win = view.window(pts)
    if win is None:
        return
    rows, cols, x, y = win
    ca, sa = math.cos(math.radians(b.angle)), math.sin(math.radians(b.angle))
    dx, dy = x - b.centre[0], y - b.centre[1]
    u, v = dx * ca + dy * sa, -dx * sa + dy * ca
    t_out = _thick(1.0 - (u / b.a) ** 2 - (v / b.b) ** 2, b.c)
    ai, bi, ci = max(b.a - b.rim, 0.3), max(b.b - b.rim, 0.3), max(b.c - b.rim, 0.3)
    t_in = _thick(1.0 - (u / ai) ** 2 - (v / bi) ** 2, ci)
    trab = (MU_CANCELLOUS - MU_SOFT) * t_in
    out[rows, cols] += mineral * ((MU_CORTEX - MU_SOFT) * (t_out - t_in) + trab) * view.size
    medullary[rows, cols] += trab * view.size
    return rows, cols


def _soft_tissue(subject: Subject, tubes: list[_Tube], view: _View) -> np.ndarray:
    """Soft-tissue path length (real mm), computed on a coarse grid and interpolated."""
    f = max(1, int(round(0.8 / view.spacing)))
    coarse = _View(view.matrix, view.inverse, view.origin, view.spacing * f,
                   (-(-view.shape[0] // f), -(-view.shape[1] // f)), view.size)
    thick = np.zeros(coarse.shape, np.float32)
    w = subject.width_scale

    def capsule(p0, p1, r0, r1, depth):
        p0, p1 = np.asarray(p0, float), np.asarray(p1, float)
        rm = max(r0, r1)
        pts = np.array([p0 - rm, p0 + rm, p1 - rm, p1 + rm, [p0[0] - rm, p0[1] + rm], [p1[0] + rm, p1[1] - rm]])
        win = coarse.window(pts)
        if win is None:
            return
        rows, cols, x, y = win
        seg = p1 - p0
        length2 = float(seg @ seg)
        tt = np.clip(((x - p0[0]) * seg[0] + (y - p0[1]) * seg[1]) / length2, 0, 1)
        d2 = (x - p0[0] - tt * seg[0]) ** 2 + (y - p0[1] - tt * seg[1]) ** 2
        r = r0 + (r1 - r0) * tt
        np.maximum(thick[rows, cols], _thick(r * r - d2, depth), out=thick[rows, cols])

    def ellipsoid(c, a, b, ang, depth, power=2):
        m = max(a, b)
        win = coarse.window(np.array(c) + np.array([[-m, -m], [-m, m], [m, -m], [m, m]]))
        if win is None:
            return
        rows, cols, x, y = win
        ca, sa = math.cos(math.radians(ang)), math.sin(math.radians(ang))
        u, v = (x - c[0]) * ca + (y - c[1]) * sa, -(x - c[0]) * sa + (y - c[1]) * ca
        q = 1 - np.abs(u / a) ** power - np.abs(v / b) ** power
        np.maximum(thick[rows, cols], _thick(q, depth), out=thick[rows, cols])

    capsule((-3.0, 40.0), (-3.0, -320.0), 30 * w, 36 * w, 0.6)
    ellipsoid((-3.0, 66.0), 40 * w, 42.0, 0, 14.0, power=4)
    ellipsoid((30.0, 47.0), 30.0, 15 * w, 52, 13.0)
    ellipsoid((-25.0, 55.0), 11 * w, 32.0, -4, 11.0)
    by_digit: dict[int, list[_Tube]] = {}
    for t in tubes:
        if t.name[:2] in ("pp", "mp", "dp") or t.name == "mc1":
            by_digit.setdefault(int(t.name[-1]), []).append(t)
    for digit, bones in by_digit.items():
        r = _RAYS[digit][4] * w
        first, last = bones[0], bones[-1]
        start = np.array(first.p0) - np.array(first.u) * 8.0
        end = np.array(last.p0) + np.array(last.u) * (last.length + 3.5)
        capsule(start, end - np.array(last.u) * r * 0.8, r, r * 0.82, 0.85)
    thick = ndimage.gaussian_filter(thick, 2.5 * view.size / coarse.spacing + 0.5) * view.size
    if f == 1:
        return thick
    rows, cols = np.flatnonzero(thick.max(1) > 1e-3), np.flatnonzero(thick.max(0) > 1e-3)
    full = np.zeros(view.shape, np.float32)
    if rows.size:
        r0, r1, c0, c1 = max(rows[0] - 1, 0), rows[-1] + 2, max(cols[0] - 1, 0), cols[-1] + 2
        part = ndimage.zoom(thick[r0:r1, c0:c1], f, order=1, grid_mode=True, mode="nearest")
        dest = full[r0 * f: r1 * f, c0 * f: c1 * f]
        dest[...] = part[: dest.shape[0], : dest.shape[1]]
    return full

