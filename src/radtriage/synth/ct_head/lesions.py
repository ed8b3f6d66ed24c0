"""Haemorrhages: what is drawn (subtype, site, size, density) and their shapes on a grid."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from radtriage.synth.ct_head.anatomy import _Anatomy
from radtriage.synth.ct_head.frame import F32, _basis, _clip01, _direction, _Grid, _ramp, _side_name, _surface_radius
from radtriage.synth.geometry import rotation

SUBTYPES = ("epidural", "intraparenchymal", "intraventricular", "subarachnoid", "subdural")
"""RSNA intracranial haemorrhage subtypes; label code in `CtHeadSample.labels` is index + 1."""
SUBTYPE_CODE = {name: i + 1 for i, name in enumerate(SUBTYPES)}
PRIMARY_WEIGHTS = {"intraparenchymal": 0.27, "subdural": 0.25, "subarachnoid": 0.22,
                   "intraventricular": 0.14, "epidural": 0.12}
SLICE_MIN_ML = 0.02  # a slice shows a haemorrhage when it holds at least this much blood


@dataclass(frozen=True, eq=False)
class _Bleed:
    subtype: str
    location: str
    side: str
    density: float
    geom: dict[str, Any] = field(default_factory=dict)


_IPH_SITES = (  # name, centre (x for the left side), weight, largest volume mL
    ("basal ganglia", (23.0, -4.0, -2.0), 0.35, 80.0),
    ("thalamus", (11.0, 10.0, 1.0), 0.15, 35.0),
    ("lobar", None, 0.30, 90.0),
    ("cerebellum", (24.0, 46.0, -44.0), 0.13, 30.0),
    ("pons", (0.0, 12.0, -38.0), 0.07, 8.0),
)


def _draw_iph(rng: np.random.Generator, egg: float) -> _Bleed:
    k = int(rng.choice(len(_IPH_SITES), p=[s[2] for s in _IPH_SITES]))
    name, centre, _, vmax = _IPH_SITES[k]
    side = float(rng.choice([-1, 1]))
    vol = float(np.clip(math.exp(rng.normal(math.log(12), 0.9)), 1.0, vmax))
    r = (3 * vol * 1000 / (4 * math.pi)) ** (1 / 3)
    e = rng.uniform(0.75, 1.3, 3)
    e /= np.prod(e) ** (1 / 3)
    semi = r * e
    if centre is None:
        lobe_az = {"frontal": (-85, -40), "temporal": (-30, 10), "parietal": (0, 45), "occipital": (50, 85)}
        lobe = str(rng.choice(list(lobe_az)))
        el = rng.uniform(-15, 10) if lobe == "temporal" else rng.uniform(5, 55)
        u = _direction(side, rng.uniform(*lobe_az[lobe]), el)
        depth = max(rng.uniform(14, 26), semi.max() + 6)
        c = u * (_surface_radius(u, egg) - depth)
        name = f"lobar {lobe}"
    else:
        c = np.array(centre) * np.array([side, 1, 1]) + rng.normal(0, 2.5, 3)
    if name == "pons":
        side = 0.0
    return _Bleed("intraparenchymal", name, _side_name(side) if side else "midline",
                  float(rng.uniform(55, 85)), dict(
                      centre=c, semi=semi, rot=rotation(*rng.uniform(-math.pi, math.pi, 3)),
                      oedema=float(rng.uniform(1.5, 6.0)), oedema_hu=float(rng.uniform(14, 22)),
                      lobes=rng.normal(0, 1, (4, 3)), lobe_amp=float(rng.uniform(0.04, 0.14)),
                      lobe_phase=rng.uniform(0, 2 * math.pi, 4), lobe_freq=rng.uniform(2, 5, 4),
                      shift=float(np.clip(0.45 * (r - 9), 0, 9)), side=side))


def _draw_ivh(rng: np.random.Generator, side: float | None = None) -> _Bleed:
    cast = rng.random() < 0.25
    if side is None:
        sides = (-1.0, 1.0) if rng.random() < 0.6 else (float(rng.choice([-1, 1])),)
    else:
        sides = (side,) if rng.random() < 0.5 else (-1.0, 1.0)
    side_name = "bilateral" if len(sides) == 2 else _side_name(sides[0])
    return _Bleed("intraventricular", "ventricular cast" if cast else "occipital horns", side_name,
                  float(rng.uniform(50, 80)), dict(
                      sides=sides, cast=cast, level=float(rng.uniform(-8, -1)),
                      fill=float(rng.uniform(0.7, 1.0))))


def _draw_extra_axial(rng: np.random.Generator, subtype: str) -> _Bleed:
    side = float(rng.choice([-1, 1]))
    if subtype == "subdural":
        u = _direction(side, rng.uniform(-45, 35), rng.uniform(-5, 45))
        theta = rng.uniform(35, 65)
        t = float(np.clip(math.exp(rng.normal(math.log(8), 0.45)), 3, 22))
        loc = "convexity"
        density = float(rng.uniform(50, 80))
        swirl = rng.random() < 0.2
    else:
        lobe = str(rng.choice(["temporal", "frontal", "parietal", "occipital"], p=[0.6, 0.2, 0.15, 0.05]))
        az, el = {"temporal": ((-25, 15), (-15, 10)), "frontal": ((-80, -55), (0, 30)),
                  "parietal": ((0, 40), (30, 55)), "occipital": ((60, 80), (-5, 15))}[lobe]
        u = _direction(side, rng.uniform(*az), rng.uniform(*el))
        theta = rng.uniform(14, 28)
        t = float(min(rng.uniform(8, 28), 0.55 * math.radians(theta) * 70))
        loc = lobe
        density = float(rng.uniform(60, 90))
        swirl = rng.random() < 0.3
    return _Bleed(subtype, loc, _side_name(side), density, dict(
        u=u, cos_max=math.cos(math.radians(theta)), t_max=t, side=side, swirl=swirl,
        swirl_at=rng.uniform(0.1, 0.6), swirl_hu=float(rng.uniform(20, 35)),
        fracture=subtype == "epidural" and rng.random() < 0.6,
        fracture_normal=np.cross(u, rng.normal(0, 1, 3)),
        scalp_swelling=subtype == "epidural" and rng.random() < 0.5,
        shift=float(np.clip(0.6 * (t - 6), 0, 12))))


def _draw_sah(rng: np.random.Generator, egg: float) -> _Bleed:
    pattern = str(rng.choice(["basal", "convexity", "perimesencephalic"], p=[0.5, 0.35, 0.15]))
    blobs: list[tuple[np.ndarray, float, float]] = []
    side = 0.0
    if pattern == "basal":
        lead = float(rng.choice([-1, 1]))
        blobs = [(np.array([0, -12, -22.0]), 12.0, 1.0),
                 (np.array([0, 6, -22.0]), 12.0, rng.uniform(0.5, 1.0)),
                 (np.array([0, -45, 2.0]), 14.0, rng.uniform(0.2, 1.0))]
        for sd in (-1, 1):
            w = 1.0 if sd == lead else rng.uniform(0.3, 1.0)
            blobs += [(np.array([sd * 30, -8, -12.0]), 13.0, w), (np.array([sd * 52, 0, -4.0]), 14.0, w * 0.8)]
        loc, side_name = "basal cisterns and Sylvian fissures", "bilateral"
    elif pattern == "convexity":
        side = float(rng.choice([-1, 1]))
        u = _direction(side, rng.uniform(-70, 70), rng.uniform(5, 60))
        c = u * (_surface_radius(u, egg) - 8)
        blobs = [(c, float(rng.uniform(14, 26)), 1.0)]
        loc, side_name = "convexity sulci", _side_name(side)
    else:
        blobs = [(np.array([0, 4, -26.0]), 9.0, 1.0)]
        loc, side_name = "perimesencephalic cisterns", "midline"
    return _Bleed("subarachnoid", loc, side_name, float(rng.uniform(45, 70)), dict(
        blobs=blobs, fill=float(rng.uniform(0.75, 1.0))))


def _draw_bleeds(rng: np.random.Generator, an: _Anatomy, positive: bool | None,
                 subtypes: Sequence[str] | None, p_positive: float) -> list[_Bleed]:
    draw = {"intraparenchymal": lambda: _draw_iph(rng, an.egg), "intraventricular": lambda: _draw_ivh(rng),
            "subdural": lambda: _draw_extra_axial(rng, "subdural"),
            "epidural": lambda: _draw_extra_axial(rng, "epidural"),
            "subarachnoid": lambda: _draw_sah(rng, an.egg)}
    if subtypes is not None:
        unknown = set(subtypes) - set(SUBTYPES)
        if unknown:
            raise ValueError(f"unknown subtype(s) {sorted(unknown)}; one of {', '.join(SUBTYPES)}")
        if positive is False and subtypes:
            raise ValueError("positive=False contradicts the subtypes asked for")
        return [draw[s]() for s in subtypes]
    is_positive = rng.random() < p_positive
    if positive is not None:
        is_positive = positive
    if not is_positive:
        return []
    names = list(PRIMARY_WEIGHTS)
    first = names[int(rng.choice(len(names), p=list(PRIMARY_WEIGHTS.values())))]
    bleeds = [draw[first]()]
    b = bleeds[0]
    if first == "intraparenchymal" and b.location in ("basal ganglia", "thalamus") and rng.random() < 0.35:
        bleeds.append(_draw_ivh(rng, side=b.geom["side"]))
    elif first in ("subdural", "epidural") and rng.random() < 0.25:  # traumatic SAH beside it
        u = b.geom["u"]
        c = u * (_surface_radius(u, an.egg) - 8)
        bleeds.append(_Bleed("subarachnoid", "convexity sulci", b.side, float(rng.uniform(45, 70)),
                             dict(blobs=[(c, 20.0, 1.0)], fill=float(rng.uniform(0.75, 1.0)))))
    return bleeds


def _collection_thickness(g: _Grid, b: _Bleed, an: _Anatomy, D: np.ndarray):
    """Box and thickness (mm) of a subdural crescent or epidural lens over the inner table."""
    u, cos_max, t_max = b.geom["u"], b.geom["cos_max"], b.geom["t_max"]
    theta = math.acos(cos_max)
    e = _basis(u)
    corners = []
    for k in range(17):
        phi = 2 * math.pi * k / 16
        rim = math.cos(phi) * e[:, 0] + math.sin(phi) * e[:, 1]
        p = u if k == 16 else math.cos(theta) * u + math.sin(theta) * rim
        r = _surface_radius(p, an.egg)
        corners += [p * (r + 14), p * max(r - t_max - 3, 0)]  # outward: the skull, for a fracture
    corners = np.array(corners)
    s = g.box(corners.min(0), corners.max(0))
    if s is None:
        return None, None
    X, Y, Z = g.coords(s)
    rho = np.sqrt(X * X + Y * Y + Z * Z) + F32(1e-3)
    q = (F32(1) - (X * F32(u[0]) + Y * F32(u[1]) + Z * F32(u[2])) / rho) * F32(1 / (1 - cos_max))
    prof = _clip01(F32(1) - q)
    prof = prof ** F32(0.75) if b.subtype == "subdural" else np.sqrt(prof)
    t = F32(t_max) * prof
    if b.subtype == "subdural":  # the falx stops it at the midline
        t *= _ramp((F32(b.geom["side"]) * X - F32(3)) * F32(1 / 3))
    return s, t * (D[s] > -2)


def _iph(g: _Grid, b: _Bleed, w: float):
    """Box, clot and oedema occupancy and clot density of an intraparenchymal haematoma."""
    geo = b.geom
    c, semi, rot = geo["centre"], geo["semi"], geo["rot"]
    ext = semi.max() * (1 + 2 * geo["lobe_amp"]) + geo["oedema"] + 2
    s = g.box(c - ext, c + ext)
    if s is None:
        return None, None, None, None
    X, Y, Z = g.coords(s, c)
    qx, qy, qz = (F32(rot[0, i]) * X + F32(rot[1, i]) * Y + F32(rot[2, i]) * Z for i in range(3))
    r = np.sqrt((qx / F32(semi[0])) ** 2 + (qy / F32(semi[1])) ** 2 + (qz / F32(semi[2])) ** 2) + F32(1e-4)
    lob = np.zeros_like(r)
    for v, f, ph in zip(geo["lobes"], geo["lobe_freq"], geo["lobe_phase"]):
        v = v / np.linalg.norm(v)
        proj = qx * F32(v[0] / semi[0]) + qy * F32(v[1] / semi[1]) + qz * F32(v[2] / semi[2])
        lob += np.cos(F32(f) * proj / r + F32(ph))
    r *= F32(1) + F32(geo["lobe_amp"] / 2) * lob
    d = (F32(1) - r) * F32(float(np.mean(semi)))
    wf = F32(w)
    clot = _ramp(d / wf)
    oedema = _ramp((d + F32(geo["oedema"])) / wf) * (F32(1) - clot)
    return s, clot, oedema, F32(b.density) + F32(2) * lob


def _ivh(g: _Grid, b: _Bleed, an: _Anatomy, vents, vent: np.ndarray, w: float) -> np.ndarray:
    """Blood in the ventricles: layering in the dependent (posterior, patient supine) horns, or a cast."""
    out = np.zeros(g.shape, F32)
    sides, cast = b.geom["sides"], b.geom["cast"]
    keep = ("atrium", "occipital", "body", "frontal", "third", "fourth") if cast else ("atrium", "occipital")
    for name, sd, s, a in vents:
        if name not in keep or (sd not in sides and sd != 0.0):
            continue
        ref = sides[0] if sd == 0.0 else sd
        y_atrium = float(g.patient((an.falx_x + ref * (13 + 3 * an.vent), 26.0, 8.0))[1])
        level = y_atrium + b.geom["level"] - (40.0 if cast else 0.0)
        py = g.py[s[1]].astype(F32)[None, :, None]
        dep = _ramp((py - F32(level)) / F32(w))
        np.maximum(out[s], a * dep * vent[s] * F32(b.geom["fill"]), out=out[s])
    return out
