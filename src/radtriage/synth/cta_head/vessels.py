"""Vessels: arteries (circle of Willis and branches, with variants), veins, and the occlusion of one."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from scipy.interpolate import make_interp_spline

from radtriage.synth.cta_head.anatomy import SIGN, _Head


# --------------------------------------------------------------------------- vessels


class _Vessel:
    """A tube along a cubic spline through control points (anatomical frame)."""

    def __init__(self, name: str, ctrl, radius, sleeve, *, parent: str | None = None, kind: str = "artery",
                 gain: float = 1.0, cortical: bool = False):
        ctrl = np.asarray(ctrl, float)
        t = np.concatenate([[0.0], np.cumsum(np.linalg.norm(np.diff(ctrl, axis=0), axis=1))])
        spline = make_interp_spline(t, ctrl, k=min(3, len(ctrl) - 1))
        tt = np.linspace(0.0, t[-1], max(int(t[-1] / 0.2), 2) + 1)
        self.pts = spline(tt)
        self.s = np.concatenate([[0.0], np.cumsum(np.linalg.norm(np.diff(self.pts, axis=0), axis=1))])
        self.r = np.interp(tt, t, np.broadcast_to(np.asarray(radius, float), t.shape))
        self.sl = np.interp(tt, t, np.broadcast_to(np.asarray(sleeve, float), t.shape))
        self.name, self.parent, self.kind, self.gain, self.cortical = name, parent, kind, gain, cortical
        self.length = float(self.s[-1])
        self.attach = 0.0
        self.clot: tuple[float, float] | None = None
        self.f_after = 1.0  # enhancement beyond the clot
        self.f_all = 1.0  # enhancement of the whole vessel (downstream of an occlusion)
        self.value = 0.0  # HU of a calcification (kind "calc")

    def at(self, s: float) -> np.ndarray:
        return np.array([np.interp(s, self.s, self.pts[:, i]) for i in range(3)])

    def nearest(self, p) -> float:
        return float(self.s[np.argmin(np.linalg.norm(self.pts - np.asarray(p, float), axis=1))])

    def factor(self, s: float) -> float:
        """Fraction of the normal enhancement at arc length s (-1: thrombus)."""
        if self.clot is not None:
            if self.clot[0] <= s < self.clot[1]:
                return -1.0
            if s >= self.clot[1]:
                return self.f_all * self.f_after
        return self.f_all


def _jitter(rng: np.random.Generator, pts, sd: float, keep_first: bool = True) -> np.ndarray:
    pts = np.array(pts, float)
    noise = rng.normal(0.0, sd, pts.shape)
    if keep_first:
        noise[0] = 0.0
    return pts + noise


def _inside(h: _Head, p: np.ndarray, limit: float = 0.9) -> np.ndarray:
    """Pull points back inside the cranial cavity (rho <= limit)."""
    c = np.array([0.0, h.v0, h.w0])
    d = p - c
    C = np.where(d[:, 2] > 0, h.Cu, h.Cl)
    rho = np.sqrt((d[:, 0] / h.A) ** 2 + (d[:, 1] / h.B) ** 2 + (d[:, 2] / C) ** 2)
    scale = np.where(rho > limit, limit / np.maximum(rho, 1e-6), 1.0)
    return c + d * scale[:, None]



class _Tree:
    """The arterial tree being drawn: its vessels by name, overall calibre and size, and how to add to it."""

    def __init__(self, rng: np.random.Generator, h: _Head):
        self.rng, self.h = rng, h
        self.k = rng.uniform(0.92, 1.08)  # overall calibre
        self.sc = rng.uniform(0.92, 1.08)  # overall size of the arterial tree
        self.sle = 1.0 + 0.6 * h.atrophy
        self.vs: dict[str, _Vessel] = {}

    def add(self, v: _Vessel, attach_at=None):
        if v.parent is not None:
            parent = self.vs[v.parent]
            v.attach = parent.length if attach_at is None else parent.nearest(attach_at)
        self.vs[v.name] = v
        return v

    def branch_start(self, parent: str, p) -> np.ndarray:
        par = self.vs[parent]
        return par.at(par.nearest(p))

    def mirror(self, pts, s):
        pts = np.array(pts, float) * self.sc
        pts[:, 0] *= s
        return pts


def _arteries(rng: np.random.Generator, h: _Head) -> dict[str, _Vessel]:
    """The circle of Willis and its branches, both sides, with common variants."""
    t = _Tree(rng, h)
    _vertebrobasilar(t)
    pcom_r = _posterior_cerebral(t)
    for side, s in SIGN.items():  # internal carotid arteries and the anterior circulation
        _carotid(t, side, s, pcom_r[side])
    _anterior_cerebral(t)
    return t.vs


def _vertebrobasilar(t: _Tree) -> None:
    """Vertebral arteries (one dominant), basilar, PICA, AICA, SCA."""
    rng, vs, k, sc, sle, add, branch_start, mirror = t.rng, t.vs, t.k, t.sc, t.sle, t.add, t.branch_start, t.mirror
    # vertebrobasilar system
    dom = rng.choice([-1.0, 1.0])
    vert_r = {dom: rng.uniform(1.5, 1.8), -dom: rng.uniform(1.1, 1.6)}
    bow = rng.normal(0.0, 2.0)
    basilar = np.array([[0, 30, -37], [bow * 0.6, 24, -26], [bow, 18, -14], [bow * 0.4, 14, -6], [0, 12, -1]]) * sc
    add(_Vessel("basilar", _jitter(rng, basilar, 0.6, False), np.array([1.8, 1.75, 1.7, 1.65, 1.6]) * k,
                [0.5, 2.5 * sle, 3 * sle, 3 * sle, 2.5 * sle], gain=rng.uniform(0.95, 1.03)))
    vbj = vs["basilar"].pts[0]
    for side, s in SIGN.items():
        sfx = "_" + side[0]
        pts = mirror([[12, 40, -70], [10, 38, -58], [5, 34, -46], [0, 30, -37]], s)
        pts[-1] = vbj
        add(_Vessel("vert" + sfx, _jitter(rng, pts[::-1], 1.0)[::-1], vert_r[s] * k, 0.0))
        p0 = branch_start("vert" + sfx, mirror([[7, 35, -50]], s)[0])
        add(_Vessel("pica" + sfx, _jitter(rng, [p0, *mirror([[14, 42, -47], [12, 52, -38]], s)], 1.5),
                    0.55 * k, 0.8, parent="vert" + sfx, cortical=True), p0)
        for nm, start, rest, r in (
            ("aica", [0, 22, -22], [[10, 26, -25], [20, 30, -24]], 0.5),
            ("sca", [0, 14, -6], [[6, 14, -7], [13, 20, -7], [17, 30, -10], [15, 42, -13]], 0.65),
        ):
            p0 = branch_start("basilar", mirror([start], s)[0])
            add(_Vessel(nm + sfx, _jitter(rng, [p0, *mirror(rest, s)], 1.0), r * k, 1.2 * sle,
                        parent="basilar", cortical=True), p0)


def _posterior_cerebral(t: _Tree) -> dict[str, float]:
    """P1 and P2 segments (a fetal PCA takes a thin P1); the PCOM calibre of each side (0: absent)."""
    rng, h, vs, k, sle, add, mirror = t.rng, t.h, t.vs, t.k, t.sle, t.add, t.mirror
    tip = vs["basilar"].pts[-1]
    fetal = {side: rng.random() < 0.15 for side in SIGN}
    pcom_r = {side: (0.0 if rng.random() < 0.3 else rng.uniform(0.4, 0.9)) for side in SIGN}
    for side in SIGN:
        if fetal[side]:
            pcom_r[side] = rng.uniform(1.0, 1.3)
    for side, s in SIGN.items():
        sfx = "_" + side[0]
        p1_r = (0.55 if fetal[side] else 1.0) * k
        pts = mirror([[0, 12, -1], [4, 11, -1.5], [8, 10, -1]], s)
        pts[0] = tip
        add(_Vessel("p1" + sfx, _jitter(rng, pts, 0.5), p1_r, 2.0 * sle, parent="basilar"))
        pts = mirror([[8, 10, -1], [14, 15, 1], [19, 24, 3], [22, 36, 5], [20, 50, 7], [16, 64, 8]], s)
        pts[0] = vs["p1" + sfx].pts[-1]
        pts[1:] = _inside(h, pts[1:])
        add(_Vessel("p2" + sfx, _jitter(rng, pts, 1.2), np.linspace(1.0, 0.75, 6) * k,
                    np.linspace(2.0, 1.0, 6) * sle, parent="p1" + sfx))
    return pcom_r


def _carotid(t: _Tree, side: str, s: float, pcom_r: float) -> None:
    """One internal carotid artery and its anterior circulation: ophthalmic, PCOM, M1 with its branches, A1, M2, M3."""
    rng, h, vs, k, sle, add, branch_start, mirror = t.rng, t.h, t.vs, t.k, t.sle, t.add, t.branch_start, t.mirror
    sfx = "_" + side[0]
    ica = mirror([[24, 14, -62], [25, 12, -45], [24, 8, -36], [19, -2, -32], [16, -6, -27], [15, -8, -20],
                  [16, -16, -15], [14, -17, -9], [13, -11, -4], [13, -6, 0], [14, -3, 4]], s)
    ica = _jitter(rng, ica, 0.8, False)
    add(_Vessel("ica" + sfx, ica, np.array([2.5, 2.5, 2.4, 2.4, 2.3, 2.3, 2.2, 2.1, 2.05, 2.0, 1.95]) * k,
                [0, 0, 0, 0, 0, 0, 0, 0.3, 1.5 * sle, 2 * sle, 2 * sle], gain=rng.uniform(0.97, 1.03)))
    term = vs["ica" + sfx].pts[-1]
    p0 = branch_start("ica" + sfx, mirror([[13.5, -14, -6]], s)[0])
    add(_Vessel("ophth" + sfx, _jitter(rng, [p0, *mirror([[17, -24, -9], [22, -36, -12], [27, -50, -14],
                                                          [30, -62, -16]], s)], 1.0),
                np.linspace(0.7, 0.5, 5) * k, 0.0, parent="ica" + sfx), p0)
    if pcom_r > 0:
        p0 = branch_start("ica" + sfx, mirror([[13, -6, 0]], s)[0])
        end = vs["p1" + sfx].pts[-1]
        add(_Vessel("pcom" + sfx, [p0, *mirror([[11, 0, -1]], s) + rng.normal(0, 1, 3), end],
                    pcom_r * k, 1.0 * sle, parent="ica" + sfx), p0)
    m1_len = rng.uniform(0.8, 1.2)
    m1 = mirror([[14, -3, 4], [20, -4, 5], [27, -3, 5], [33, -1, 4], [37, 1, 4]], s)
    m1[1:, 0] = term[0] + (m1[1:, 0] - m1[0, 0]) * m1_len
    m1[0] = term
    add(_Vessel("m1" + sfx, _jitter(rng, m1, 0.8), np.array([1.5, 1.5, 1.45, 1.4, 1.3]) * k * rng.uniform(0.9, 1.1),
                2.5 * sle, parent="ica" + sfx, gain=rng.uniform(0.97, 1.03)))
    bif = vs["m1" + sfx].pts[-1]
    a1_r = (rng.uniform(0.45, 0.6) if rng.random() < 0.1 else rng.uniform(0.9, 1.1)) * k
    a1 = mirror([[14, -3, 4], [9, -10, 6], [4, -17, 7], [1.2, -19, 7]], s)
    a1[0] = term
    add(_Vessel("a1" + sfx, _jitter(rng, a1, 0.7), a1_r, 1.5 * sle, parent="ica" + sfx))
    p0 = branch_start("m1" + sfx, mirror([[21, -4, 5]], s)[0])
    add(_Vessel("ata" + sfx, _jitter(rng, [p0, *mirror([[28, -8, -2], [36, -10, -9], [45, -8, -15]], s)], 1.2),
                np.linspace(0.65, 0.5, 4) * k, 1.0 * sle, parent="m1" + sfx, cortical=True), p0)
    for n_lsa in range(2):
        p0 = vs["m1" + sfx].at(rng.uniform(0.2, 0.6) * vs["m1" + sfx].length)
        rest = p0 + np.array([[0, 2, 6], [s * 1, 4, 14]]) + rng.normal(0, 1.0, (2, 3))
        add(_Vessel(f"lsa{n_lsa}" + sfx, [p0, *rest], 0.4 * k, 0.0, parent="m1" + sfx), p0)
    for div, rest in (("superior", [[40, 0, 9], [43, 3, 17], [44, 8, 27], [46, 15, 36], [50, 24, 44]]),
                      ("inferior", [[40, 3, 1], [43, 9, 3], [45, 17, 9], [48, 27, 16], [52, 36, 22]])):
        pts = np.vstack([bif, _inside(h, mirror(rest, s))])
        name = f"m2{div[0]}" + sfx
        add(_Vessel(name, _jitter(rng, pts, 1.2), np.linspace(1.05, 0.8, 6) * k * rng.uniform(0.9, 1.1),
                    np.linspace(2.0, 1.5, 6) * sle, parent="m1" + sfx))
        for n_m3 in range(int(rng.integers(2, 4))):
            m2 = vs[name]
            p0 = m2.at(rng.uniform(0.35, 0.95) * m2.length)
            rest3 = p0 + np.array([[s * 8, rng.normal(0, 4), rng.uniform(2, 8)],
                                   [s * 16, rng.normal(0, 8), rng.uniform(4, 14)]])
            add(_Vessel(f"m3{div[0]}{n_m3}" + sfx, [p0, *_inside(h, rest3)], np.array([0.65, 0.6, 0.5]) * k,
                        0.8 * sle, parent=name, cortical=True), p0)


def _anterior_cerebral(t: _Tree) -> None:
    """The anterior communicating artery and both A2 segments."""
    rng, vs, k, sle, add, mirror = t.rng, t.vs, t.k, t.sle, t.add, t.mirror
    acomm = np.array([vs["a1_l"].pts[-1], vs["a1_r"].pts[-1]])
    add(_Vessel("acomm", [acomm[0], acomm.mean(0) + rng.normal(0, 0.5, 3), acomm[1]], 0.7 * k, 1.0 * sle))
    for side, s in SIGN.items():
        sfx = "_" + side[0]
        pts = mirror([[1.2, -19, 7], [1.8, -25, 14], [2, -33, 25], [2, -35, 38], [2, -26, 50], [2, -10, 57],
                      [2, 10, 58]], s)
        pts[0] = vs["a1" + sfx].pts[-1]
        add(_Vessel("a2" + sfx, _jitter(rng, pts, 1.0), np.linspace(0.95, 0.7, 7) * k, 1.2 * sle, parent="acomm"))


def _surface_point(h: _Head, direction, inset: float) -> np.ndarray:
    """The point of the inner table along a direction from the cranial centre, moved ``inset`` mm inward."""
    d = np.asarray(direction, float) / np.linalg.norm(direction)
    C = h.Cu if d[2] > 0 else h.Cl
    t = 1.0 / math.sqrt((d[0] / h.A) ** 2 + (d[1] / h.B) ** 2 + (d[2] / C) ** 2)
    return np.array([0.0, h.v0, h.w0]) + d * (t - inset)


def _veins(rng: np.random.Generator, h: _Head) -> dict[str, _Vessel]:
    vs: dict[str, _Vessel] = {}
    r_sss = rng.uniform(3.0, 4.0)
    angles = np.radians(np.linspace(15, 200, 12))
    sss = np.array([_surface_point(h, (0, -math.cos(a), math.sin(a)), r_sss + 0.8) for a in angles])
    vs["sss"] = _Vessel("sss", sss, np.linspace(r_sss * 0.6, r_sss, len(sss)), 0.0, kind="vein")
    torc = sss[-1]
    w_t = torc[2] - 2.0
    dom = rng.choice([-1.0, 1.0])
    for side, s in SIGN.items():
        r = rng.uniform(3.2, 4.2) if s == dom else rng.uniform(2.0, 3.6)
        ts = [torc]
        for b in np.radians([15, 30, 45, 58]):
            p = _surface_point(h, (s * math.sin(b), math.cos(b), (w_t - h.w0) / 100.0), r + 0.8)
            ts.append(np.array([p[0], p[1], w_t]))
        e = ts[-1]
        ts += [e + np.array([-s * 2, -3, -8]), e + np.array([-s * 9, -8, -18]), np.array([s * 35, 22, -45])]
        vs["ts_" + side[0]] = _Vessel("ts_" + side[0], _jitter(rng, ts, 0.8), r, 0.0, kind="vein")
    galen = np.array([0, 38, 17]) + rng.normal(0, 1.5, 3)
    vs["straight"] = _Vessel("straight", [torc, (torc + galen) / 2 + np.array([0, 4, -4]), galen],
                             rng.uniform(1.8, 2.6), 0.0, kind="vein")
    for side, s in SIGN.items():
        pts = [galen, galen + np.array([s * 2.5, -10, 3]), galen + np.array([s * 3, -26, 5])]
        vs["icv_" + side[0]] = _Vessel("icv_" + side[0], _jitter(rng, pts, 0.6), 0.9, 0.0, kind="vein")
    return vs


# --------------------------------------------------------------------------- occlusion


def _downstream(vs: dict[str, _Vessel], name: str, from_s: float, f_prox: float, f_col: float,
                skip: tuple[str, ...] = ()) -> list[str]:
    """Set the enhancement of every vessel fed through ``name`` beyond arc length ``from_s``."""
    hit = []
    for child in vs.values():
        if child.parent == name and child.attach >= from_s - 1e-6 and child.name not in skip:
            child.f_all = f_col if child.cortical else f_prox
            hit.append(child.name)
            hit += _downstream(vs, child.name, 0.0, f_prox, f_col)
    return hit


def _occlude(vs: dict[str, _Vessel], side: str, segment: str, division: str, u: np.ndarray,
             f_prox: float, f_col: float, a1_fill: float) -> dict[str, Any]:
    """Place the thrombus. ``u``: four uniforms (position, length, spare, spare)."""
    sfx = "_" + side[0]
    if segment == "ica_t":
        ica, m1 = vs["ica" + sfx], vs["m1" + sfx]
        lo = (vs["pcom" + sfx].attach + 1.0) if ("pcom" + sfx) in vs else ica.length - 6.0
        s_occ = max(ica.length - 0.5 - 3.5 * u[0], min(lo, ica.length - 0.5))
        clot_len = 8.0 + 12.0 * u[1]
        ica.clot = (s_occ, ica.length + 1.0)
        rem = float(np.clip(clot_len - (ica.length - s_occ), 2.0, m1.length - 2.0))
        m1.clot, m1.f_after = (0.0, rem), f_prox
        a1 = vs["a1" + sfx]
        a1.f_all = a1_fill
        hit = ["ica" + sfx, "m1" + sfx, "a1" + sfx]
        hit += _downstream(vs, "m1" + sfx, 0.0, f_prox, f_col)
        vessel, clot_len = ica, (ica.length - s_occ) + rem
        clot_path = [(ica, s_occ, ica.length), (m1, 0.0, rem)]
    else:
        vessel = vs["m1" + sfx] if segment == "m1" else vs[f"m2{division[0]}" + sfx]
        L = vessel.length
        if segment == "m1":
            s_occ = min(max(3.5, 0.15 * L) + (0.75 * L - max(3.5, 0.15 * L)) * u[0], L - 3.0)
            clot_len = 5.0 + 10.0 * u[1]
        else:
            s_occ = 3.5 + (min(10.0, 0.5 * L) - 3.5) * u[0]
            clot_len = 4.0 + 6.0 * u[1]
        end = min(s_occ + clot_len, L - 0.5)
        vessel.clot, vessel.f_after = (s_occ, end), f_prox
        hit = [vessel.name] + _downstream(vs, vessel.name, s_occ, f_prox, f_col)
        clot_len = end - s_occ
        clot_path = [(vessel, s_occ, end)]
    # a point inside the thrombus, 1.5 mm beyond its proximal end (or its middle if shorter)
    into = min(1.5, 0.5 * clot_len)
    v0, a, b = clot_path[0]
    clot_point = v0.at(a + into) if a + into <= b else clot_path[1][0].at(clot_path[1][1] + into - (b - a))
    return {
        "vessel": vessel, "s_occ": s_occ, "clot_len": clot_len, "clot_point": clot_point,
        "patent_point": vessel.at(max(s_occ - 3.0, 0.0)), "clot_end": clot_path[-1][0].at(clot_path[-1][2]),
        "affected": sorted(set(hit)),
    }

