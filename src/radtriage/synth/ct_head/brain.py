"""Brain structures that the renderer draws in one piece: ventricles, sulci, cerebellar folia."""

from __future__ import annotations

import numpy as np

from radtriage.synth.ct_head.anatomy import _Anatomy
from radtriage.synth.ct_head.frame import F32, _clip01, _ellipsoid, _Grid, _ramp, _trilinear
from radtriage.synth.geometry import rotation


def _ventricles(g: _Grid, an: _Anatomy, w: float, xb: np.ndarray, compress: float, lesion_side: float):
    """Ventricle compartments: list of (name, side, box, alpha)."""
    out = []
    for sd in (-1.0, 1.0):
        v = an.vent * (an.vent_lr if sd > 0 else 1.0)
        if sd == lesion_side:
            v *= 1.0 - compress
        f = an.falx_x
        parts = (
            ("frontal", (f + sd * (6 + 2 * v), -22.0, 8.0), (3.5 * v, 13.0, 8.0), -sd * 0.35),
            ("body", (f + sd * (5 + 2.5 * v), 2.0, 14.0), (3.0 * v, 20.0, 6.0), 0.0),
            ("atrium", (f + sd * (13 + 3 * v), 26.0, 8.0), (5.0 * v, 10.0, 8.0 * (0.8 + 0.2 * v)), 0.0),
            ("occipital", (f + sd * (16 + 2 * v), 40.0, 6.0), (2.5 * v, 12.0, 4.0 * v), sd * 0.35),
            ("temporal", (sd * 29.0, -8.0, -18.0), (1.6 * v ** 1.5, 13.0, 2.2 * v), sd * 0.2),
        )
        for name, c, semi, yaw in parts:
            s, a = _ellipsoid(g, c, semi, w, rot=rotation(yaw, 0.0, 0.0) if yaw else None, xb=xb)
            if s is not None:
                out.append((name, sd, s, a))
    for name, c, semi in (("third", (an.falx_x, -2.0, -6.0), (1.2 * an.vent ** 1.5, 13.0, 9.0)),
                          ("fourth", (0.0, 30.0, -40.0), (6.0 * an.vent ** 0.5, 4.0, 7.0))):
        s, a = _ellipsoid(g, c, semi, w, xb=xb if name == "third" else None)
        if s is not None:
            out.append((name, 0.0, s, a))
    return out


def _sulci(g: _Grid, an: _Anatomy, D_eff: np.ndarray, brain_in: np.ndarray, w: float,
           push: np.ndarray | None = None):
    """Sulcal CSF and cortical grey matter from a random gyral pattern.

    Sulci are the zero surfaces of smooth random fields over directions from
    the head centre (deep primary and shallow secondary sulci), bent with
    depth by three more fields so that they wind, their depth varying too.
    """
    sas = 0.8 + 2.2 * an.atrophy
    t_ctx = F32(2.7)
    sulc = np.zeros(g.shape, F32)
    ctx = np.zeros(g.shape, F32)
    idx = np.flatnonzero((brain_in > 0) & (D_eff < sas + 27))
    if idx.size == 0:
        return sulc, ctx
    X, Y, Z = (a.ravel()[idx] for a in (g.X, g.Y, g.Z))
    rho = np.sqrt(X * X + Y * Y + Z * Z) + F32(1e-3)
    u = (X / rho, Y / rho, Z / rho)
    d_rel = D_eff.ravel()[idx] - F32(sas)
    n, nd = an.gyral.shape[1], an.depth.shape[1]
    kd = F32((nd - 1) / 2.2)
    k = F32((n - 1) / 2.2)
    mod = _trilinear(an.depth, *((ui + F32(1.1)) * kd for ui in u))  # depth, and the bend vector
    bend = np.maximum(d_rel, F32(0)) * F32(0.006)
    uw = [ui + bend * mod[1 + i] for i, ui in enumerate(u)]
    norm = F32(1) / np.sqrt(uw[0] * uw[0] + uw[1] * uw[1] + uw[2] * uw[2])  # stay on the unit sphere
    G = _trilinear(an.gyral, *((ui * norm + F32(1.1)) * k for ui in uw))
    scale = rho * F32(2.2 / (n - 1) / an.gyral_g0)  # field units -> mm from its zero surface
    wf = F32(w)
    s_out, c_out = np.zeros(idx.size, F32), _ramp((t_ctx - d_rel) / wf)
    effaced = F32(1) if push is None else F32(1) - F32(0.8) * _clip01(push.ravel()[idx] * F32(1 / 5))
    deep = np.minimum(np.maximum(F32(16) + F32(5) * mod[0], F32(9)), F32(24))
    for ch, depth, width in ((0, deep, F32(1.0)), (1, deep * F32(0.45), F32(0.7))):
        dist = np.abs(G[ch]) * scale
        half = F32(0.3 + 0.9 * an.atrophy) * width * (F32(1) + F32(0.5) * _clip01(F32(1) - d_rel / depth)) * effaced
        np.maximum(s_out, _ramp((half - dist) / wf) * _ramp((depth - d_rel) / wf), out=s_out)
        np.maximum(c_out, _ramp((half + t_ctx - dist) / wf) * _ramp((depth + t_ctx - d_rel) / wf), out=c_out)
    sulc.ravel()[idx] = s_out
    ctx.ravel()[idx] = c_out
    return sulc, ctx


def _folia(g: _Grid, an: _Anatomy, cb: np.ndarray, w: float) -> np.ndarray:
    """Fine CSF clefts between the cerebellar folia."""
    out = np.zeros(g.shape, F32)
    idx = np.flatnonzero(cb > 0)
    if idx.size == 0:
        return out
    X, Y, Z = (a.ravel()[idx] for a in (g.X, g.Y, g.Z))
    step = F32(1.5)  # mm per cell; the field spans X -72.., Y -10.., Z -88..
    G = _trilinear(an.folia, (X + F32(72)) / step, (Y + F32(10)) / step, (Z + F32(88)) / step)[0]
    dist = np.abs(G) * F32(1.5 / an.folia_g0)
    out.ravel()[idx] = _ramp((F32(0.25 + 0.5 * an.atrophy) - dist) / F32(w)) * F32(0.8)
    return out
