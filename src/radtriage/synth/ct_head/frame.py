"""The standard head frame, numeric helpers, the sample grid and soft-edged shapes."""

from __future__ import annotations

import math
from collections.abc import Sequence

from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from radtriage.synth.ct_head.acquisition import _Acquisition

# Standard head (mm): inner-table half-axes; per study scaled by (sx, sy, sz).
A_IN, B_IN, C_UP, C_DN = 68.0, 86.0, 70.0, 88.0
F32 = np.float32


def _clip01(x: np.ndarray) -> np.ndarray:
    """Clamp a temporary array to [0, 1] in place (much faster than np.clip)."""
    np.maximum(x, F32(0), out=x)
    np.minimum(x, F32(1), out=x)
    return x


def _ramp(x: np.ndarray) -> np.ndarray:
    """Soft inside-ness of a signed distance in voxel widths (a box-filtered edge)."""
    return _clip01(x + F32(0.5))


def _mean_gradient(g: np.ndarray) -> float:
    return float(np.mean(np.sqrt(sum(d * d for d in np.gradient(g)))))


def _trilinear(grid: np.ndarray, fi: np.ndarray, fj: np.ndarray, fk: np.ndarray) -> list[np.ndarray]:
    """Sample each channel of ``grid`` (channels, n0, n1, n2) at fractional indices (1-D arrays), clamped."""
    n0, n1, n2 = grid.shape[1:]
    ids, ts = [], []
    for f, n in ((fi, n0), (fj, n1), (fk, n2)):
        f = np.minimum(np.maximum(f, F32(0)), F32(n - 1.001))
        i = f.astype(np.intp)
        ids.append(i)
        ts.append(f - i)
    (i, j, k), (ti, tj, tk) = ids, ts
    s0, s1 = n1 * n2, n2
    b = (i * n1 + j) * n2 + k
    corners = [b, b + 1, b + s1, b + s1 + 1, b + s0, b + s0 + 1, b + s0 + s1, b + s0 + s1 + 1]
    out = []
    for channel in grid:
        flat = channel.ravel()
        v = [flat[c] for c in corners]
        c00 = v[0] + (v[1] - v[0]) * tk
        c01 = v[2] + (v[3] - v[2]) * tk
        c10 = v[4] + (v[5] - v[4]) * tk
        c11 = v[6] + (v[7] - v[6]) * tk
        c0 = c00 + (c01 - c00) * tj
        c1 = c10 + (c11 - c10) * tj
        out.append(c0 + (c1 - c0) * ti)
    return out


def _gauss_taps(sigma: float) -> np.ndarray:
    r = max(1, int(math.ceil(2.5 * sigma)))
    t = np.exp(-0.5 * (np.arange(-r, r + 1) / max(sigma, 1e-3)) ** 2)
    return (t / t.sum()).astype(F32)


def _blur_yx(a: np.ndarray, sigma: float) -> np.ndarray:
    """Separable Gaussian blur over the last two axes (edges replicated)."""
    if sigma < 0.2:
        return a
    taps = _gauss_taps(sigma)
    r = len(taps) // 2
    for axis in (-1, -2):
        pad = [(0, 0)] * a.ndim
        pad[axis] = (r, r)
        p = np.pad(a, pad, mode="edge")
        n = a.shape[axis]
        out = np.zeros_like(a)
        for t, w in enumerate(taps):
            out += w * _slice(p, axis, t, t + n)
        a = out
    return a


def _slice(a: np.ndarray, axis: int, lo: int, hi: int) -> np.ndarray:
    idx = [slice(None)] * a.ndim
    idx[axis] = slice(lo, hi)
    return a[tuple(idx)]


def _upsample2(a: np.ndarray) -> np.ndarray:
    """Linear 2x upsampling over the last two axes (coarse pixel i covers fine pixels 2i, 2i+1)."""
    for axis in (-1, -2):
        def at(s: slice, axis: int = axis) -> tuple:
            return (Ellipsis, s) if axis == -1 else (Ellipsis, s, slice(None))

        shape = list(a.shape)
        shape[axis] *= 2
        out = np.empty(shape, F32)
        q = F32(0.25) * a
        ev, od = out[at(slice(0, None, 2))], out[at(slice(1, None, 2))]
        np.multiply(a, F32(0.75), out=ev)
        od[...] = ev
        ev[at(slice(1, None))] += q[at(slice(None, -1))]
        ev[at(slice(0, 1))] += q[at(slice(0, 1))]
        od[at(slice(None, -1))] += q[at(slice(1, None))]
        od[at(slice(-1, None))] += q[at(slice(-1, None))]
        a = out
    return a


def _basis(n: np.ndarray) -> np.ndarray:
    """A rotation whose third column is the unit vector ``n``."""
    n = n / np.linalg.norm(n)
    a = np.array([1.0, 0, 0]) if abs(n[0]) < 0.9 else np.array([0, 1.0, 0])
    e1 = np.cross(n, a)
    e1 /= np.linalg.norm(e1)
    return np.stack([e1, np.cross(n, e1), n], axis=1)


def _direction(side: float, azimuth_deg: float, elevation_deg: float) -> np.ndarray:
    """Unit vector: lateral to ``side`` (+1 left), azimuth toward posterior, elevation up."""
    az, el = math.radians(azimuth_deg), math.radians(elevation_deg)
    return np.array([side * math.cos(el) * math.cos(az), math.cos(el) * math.sin(az), math.sin(el)])


def _surface_radius(u: np.ndarray, egg: float) -> float:
    """Distance from the head centre to the inner table along unit vector ``u``."""
    lo, hi = 1.0, 200.0
    for _ in range(40):
        m = 0.5 * (lo + hi)
        x, y, z = m * u
        a = A_IN * (1 + egg * y / B_IN)
        c = C_UP if z > 0 else C_DN
        if (x / a) ** 2 + (y / B_IN) ** 2 + (z / c) ** 2 < 1:
            lo = m
        else:
            hi = m
    return lo


def _side_name(side: float) -> str:
    return "left" if side > 0 else "right"

class _Grid:
    """Sample points (patient mm) and their standard-head coordinates X, Y, Z (z, y, x arrays)."""

    def __init__(self, px: np.ndarray, py: np.ndarray, pz: np.ndarray, steps: tuple[float, float, float],
                 acq: _Acquisition, scale: tuple[float, float, float]):
        self.px, self.py, self.pz, self.steps = px, py, pz, steps
        self.c, self.rot, self.scale = acq.centre, acq.rot, np.array(scale)
        m = acq.rot.T / self.scale[:, None]  # patient offset -> standard coordinates
        dx = (px - self.c[0]).astype(F32)[None, None, :]
        dy = (py - self.c[1]).astype(F32)[None, :, None]
        dz = (pz - self.c[2]).astype(F32)[:, None, None]
        self.X, self.Y, self.Z = (F32(m[i, 0]) * dx + F32(m[i, 1]) * dy + F32(m[i, 2]) * dz for i in range(3))
        self.shape = self.X.shape

    def patient(self, h: Sequence[float]) -> np.ndarray:
        return self.c + self.rot @ (self.scale * np.asarray(h, float))

    def box(self, lo: Sequence[float], hi: Sequence[float]) -> tuple[slice, slice, slice] | None:
        """The index box holding the standard-coordinate box [lo, hi]."""
        lo, hi = np.asarray(lo, float), np.asarray(hi, float)
        mid = self.c + self.rot @ (self.scale * (lo + hi) / 2)
        half = np.abs(self.rot) @ (self.scale * (hi - lo) / 2)
        out = []
        for axis, v, step in ((2, self.pz, self.steps[0]), (1, self.py, self.steps[1]), (0, self.px, self.steps[2])):
            a = max(int(math.floor((mid[axis] - half[axis] - v[0]) / step)), 0)
            b = min(int(math.ceil((mid[axis] + half[axis] - v[0]) / step)) + 1, len(v))
            if a >= b:
                return None
            out.append(slice(a, b))
        return tuple(out)  # type: ignore[return-value]

    def coords(self, s: tuple[slice, slice, slice], centre: Sequence[float] = (0, 0, 0)):
        return self.X[s] - F32(centre[0]), self.Y[s] - F32(centre[1]), self.Z[s] - F32(centre[2])


def _paint(img: np.ndarray, s, a: np.ndarray, v) -> None:
    sub = img[s]
    sub += a * (v - sub)


def _ellipsoid(g: _Grid, c, semi, w: float, rot: np.ndarray | None = None, pad: float = 1.5,
               xb: np.ndarray | None = None):
    """Soft occupancy of an ellipsoid on its index box: (box, alpha) or (None, None).

    ``rot`` turns the ellipsoid's axes (columns) into standard axes; ``xb``
    replaces X (the brain's own coordinate when the midline is shifted).
    """
    c = np.asarray(c, float)
    semi = np.asarray(semi, float)
    ext = (np.full(3, semi.max()) if rot is not None else semi) + pad
    if xb is not None:
        ext = ext + np.array([12.0, 0, 0])
    s = g.box(c - ext, c + ext)
    if s is None:
        return None, None
    X, Y, Z = g.coords(s, c)
    if xb is not None:
        X = xb[s] - F32(c[0])
    if rot is not None:
        X, Y, Z = (F32(rot[0, i]) * X + F32(rot[1, i]) * Y + F32(rot[2, i]) * Z for i in range(3))
    ia, ib, ic = (F32(1 / v) for v in semi)
    qa, qb, qc = X * ia, Y * ib, Z * ic
    r2 = qa * qa + qb * qb + qc * qc
    grad = F32(2) * np.sqrt((qa * ia) ** 2 + (qb * ib) ** 2 + (qc * ic) ** 2) + F32(1e-4)
    return s, _ramp((F32(1) - r2) / (grad * F32(w)))


def _paint_ellipsoid(img, g, c, semi, w, value, rot=None, xb=None, weight=None):
    s, a = _ellipsoid(g, c, semi, w, rot=rot, xb=xb)
    if s is not None:
        _paint(img, s, a if weight is None else a * weight[s], value)
    return s, a
