"""Normal heads and their mimics: bright things in a normal head that are not blood, post-operative heads, children.

Each mimic has a probability (per study, drawn from its own stream in scanner
mode, or forced by name) and a density range. Typical values (Osborn's
*Brain*; Kiroglu et al., "Cerebral lateral ventricular choroid plexus
calcifications", 2010; standard CT physics texts):

- physiological calcification (pineal, choroid plexus, habenula, basal
  ganglia, dentate nuclei, falx, carotid siphon): 100-1000 HU;
- dura (falx, tentorium) seen dense: 50-80 HU, a thin sheet;
- dense dural venous sinuses (high haematocrit, dehydration): 50-70 HU
  (normal venous blood 40-55 HU); acute blood is 50-90 HU, so each of these
  overlaps it;
- atrophy: sulci, fissures and ventricles wide (the brain's CSF spaces, 0-15 HU);
- children: open sutures (fibrous, 30-45 HU, 1-2 mm gaps in the vault),
  a thinner skull, no atrophy, few calcifications;
- post-operative: a ventricular shunt catheter (barium-impregnated
  silicone, 300-900 HU) through a burr hole with a titanium valve in the
  scalp; an aneurysm clip (cobalt-chrome) at the circle of Willis;
- teeth (enamel and dentine 1500-3000 HU, shown clipped) with amalgam
  fillings in the lowest slices.

Metal (valves, clips, fillings) is returned as occupancy, not painted:
the scanner mode projects it with its own attenuation (streaks, dark
bands); the phantom mode paints it at 3071 HU.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from radtriage.synth.ct_head.anatomy import _Anatomy
from radtriage.synth.ct_head.frame import F32, _ellipsoid, _paint, _paint_ellipsoid, _ramp, _surface_radius

# name -> (what, HU range); probabilities in `_probability`
CATALOGUE: dict[str, tuple[str, tuple[float, float]]] = {
    "pineal_calcification": ("anatomy", (150.0, 600.0)),
    "choroid_plexus_calcification": ("anatomy", (120.0, 500.0)),
    "basal_ganglia_calcification": ("anatomy", (100.0, 300.0)),
    "dentate_calcification": ("anatomy", (100.0, 250.0)),
    "falx_calcification": ("anatomy", (300.0, 900.0)),
    "carotid_calcification": ("anatomy", (200.0, 800.0)),
    "dense_falx": ("anatomy", (60.0, 80.0)),
    "dense_tentorium": ("anatomy", (55.0, 75.0)),
    "dense_sinuses": ("anatomy", (55.0, 70.0)),
    "atrophy": ("anatomy", (0.0, 15.0)),
    "open_sutures": ("child", (30.0, 45.0)),
    "shunt_catheter": ("post-operative", (300.0, 900.0)),
    "aneurysm_clip": ("post-operative", (3071.0, 3071.0)),
    "teeth_and_fillings": ("teeth", (1500.0, 3071.0)),
}
MIMICS = tuple(CATALOGUE)
METAL_HU = 3071.0


@dataclass(frozen=True)
class _Mimic:
    name: str
    hu: float
    centre: tuple[float, float, float] | None = None  # standard mm, where there is one point to look at
    params: tuple[tuple[str, Any], ...] = ()

    def get(self, key: str) -> Any:
        return dict(self.params)[key]


def _probability(name: str, age: float) -> float:
    old = min(max((age - 20) / 60, 0.0), 1.0)
    child = age < 16
    return {
        "pineal_calcification": 0.03 if child else 0.3 + 0.45 * old,
        "choroid_plexus_calcification": 0.02 if child else 0.25 + 0.55 * old,
        "basal_ganglia_calcification": 0.0 if child else 0.03 + 0.12 * old,
        "dentate_calcification": 0.0 if child else 0.02 + 0.06 * old,
        "falx_calcification": 0.0 if child else 0.05 + 0.35 * old,
        "carotid_calcification": 0.0 if child else 0.5 * old,
        "dense_falx": 0.35, "dense_tentorium": 0.35, "dense_sinuses": 0.2 if not child else 0.35,
        "atrophy": 0.0 if age < 50 else 0.15 + 0.3 * old,
        "open_sutures": 1.0 if child else 0.0,
        "shunt_catheter": 0.03, "aneurysm_clip": 0.025, "teeth_and_fillings": 0.3,
    }[name]


def draw_child(rng: np.random.Generator) -> float | None:
    """A child's age (years) for about one scanner-mode study in twelve, else None."""
    return float(rng.uniform(1.0, 16.0)) if rng.random() < 0.08 else None


def as_child(an: _Anatomy) -> _Anatomy:
    """A child's head: smaller, a thin skull, no atrophy, small ventricles, no calcification."""
    f = 0.83 + 0.011 * an.age
    return replace(an, scale=tuple(v * f for v in an.scale), skull_t=2.0 + 0.25 * an.age, atrophy=0.0,
                   vent=0.75, leuko=0.0, lacunes=(), calcs=(), frontal_sinus=0.0 if an.age < 8 else an.frontal_sinus)


def draw_mimics(rng: np.random.Generator, an: _Anatomy, forced: tuple[str, ...] | None) -> _Anatomy:
    """The head with its mimics (those drawn, or exactly ``forced``); they replace the old calcifications."""
    unknown = set(forced or ()) - set(MIMICS)
    if unknown:
        raise ValueError(f"unknown mimics {sorted(unknown)}; known: {', '.join(MIMICS)}")
    out: list[_Mimic] = []
    for name in MIMICS:  # every draw is made, so forcing one leaves the others' values as they were
        p = rng.random()
        lo, hi = CATALOGUE[name][1]
        hu = float(rng.uniform(lo, hi))
        r = float(rng.uniform(2.0, 3.5))
        y = float(rng.uniform(-35, 25))
        side = float(rng.choice([-1.0, 1.0]))
        on = name in forced if forced is not None else p < _probability(name, an.age)
        if not on:
            continue
        if name == "pineal_calcification":
            out.append(_Mimic(name, hu, (an.falx_x, 24.0, -4.0), (("r", r),)))
        elif name == "choroid_plexus_calcification":
            x = 13 + 3 * an.vent
            out.append(_Mimic(name, hu, (an.falx_x + side * x, 27.0, 8.0), (("r", r), ("x", x))))
        elif name == "basal_ganglia_calcification":
            out.append(_Mimic(name, hu, (side * 18.0, -2.0, -4.0), (("r", r),)))
        elif name == "dentate_calcification":
            out.append(_Mimic(name, hu, (side * 14.0, 44.0, -36.0), (("r", r),)))
        elif name == "falx_calcification":
            z = float(np.clip(40 + 0.2 * y, 28, 50))
            out.append(_Mimic(name, hu, (an.falx_x, y, z), (("r", r),)))
        elif name == "carotid_calcification":
            out.append(_Mimic(name, hu, (side * 17.0, -14.0, -34.0), (("r", r),)))
        elif name == "dense_sinuses":
            an = replace(an, venous=hu)
            out.append(_Mimic(name, hu))
        elif name == "atrophy":
            an = replace(an, atrophy=max(an.atrophy, 0.95 + 0.25 * (r - 2) / 1.5), vent=max(an.vent, 1.3 + r / 5))
            out.append(_Mimic(name, hu))
        elif name == "shunt_catheter":
            out.append(_Mimic(name, hu, (an.falx_x + side * 9.0, -20.0, 8.0), (("side", side),)))
        elif name == "aneurysm_clip":
            out.append(_Mimic(name, METAL_HU, (side * 24.0, -8.0, -14.0), (("material", "cocr"),)))
        elif name == "teeth_and_fillings":
            fillings = tuple(sorted({int(v) for v in rng.integers(0, 10, size=int(rng.integers(1, 5)))}))
            out.append(_Mimic(name, hu, (0.0, -82.0, -88.0), (("fillings", fillings),)))
        else:
            out.append(_Mimic(name, hu))
    return replace(an, mimics=tuple(out), calcs=())


def mimic_truth(an: _Anatomy, acq, scanner: bool, metal: dict[str, np.ndarray]) -> list[dict[str, Any]]:
    """truth.json's "mimics": each painted mimic (with its HU and, for a point, where), and the scanner's."""
    out: list[dict[str, Any]] = []
    for m in an.mimics:
        entry: dict[str, Any] = {"name": m.name, "source": CATALOGUE[m.name][0], "hu": round(m.hu, 1)}
        if m.centre is not None:
            p = acq.centre + acq.rot @ (np.array(an.scale) * np.array(m.centre))
            v = ((p[2] - acq.origin[2]) / acq.thickness, (p[1] - acq.origin[1]) / acq.pixel,
                 (p[0] - acq.origin[0]) / acq.pixel)
            entry["centre_mm"] = [round(float(c), 2) for c in p]
            entry["centre_voxel"] = [int(round(c)) for c in v]
        out.append(entry)
    if scanner:
        out.append({"name": "beam_hardening", "source": "acquisition"})  # bands between the petrous bones
        out.append({"name": "partial_volume", "source": "acquisition"})  # skull base and inner table
        if any(float(v.max()) > 0.05 for v in metal.values()):
            out.append({"name": "metal_streaks", "source": "acquisition", "metal": sorted(metal)})
    return out


def paint_mimics(cx, z_cc: np.ndarray) -> None:
    """Paint the head's mimics onto the canvas (after the sinuses and falx, before any haemorrhage)."""
    for m in cx.an.mimics:
        _PAINT.get(m.name, _paint_point)(cx, m, z_cc)


def _paint_point(cx, m: _Mimic, z_cc) -> None:
    if m.centre is None:
        return
    r = m.get("r")
    semi = {"choroid_plexus_calcification": (r, 1.3 * r, r), "carotid_calcification": (r * 0.8, r * 2, r * 0.8),
            "falx_calcification": (1.0, 2.5 * r, 1.5 * r)}.get(m.name, (r, r, r))
    xb = None if m.name == "carotid_calcification" else cx.xb  # brain structures follow a shifted midline
    _paint_ellipsoid(cx.img, cx.g, m.centre, semi, cx.w, m.hu, xb=xb)


def _dense_falx(cx, m: _Mimic, z_cc) -> None:
    g, D, wf = cx.g, cx.D, cx.wf
    s = g.box((-8, -100, -45), (8, 100, 90))
    if s is not None:
        falx = _ramp((F32(0.8) - np.abs(cx.xm[s])) / wf) * _ramp((g.Z[s] - z_cc[s] - F32(8)) / wf)
        falx *= _ramp((D[s] - F32(1)) / wf)
        _paint(cx.img, s, falx * cx.cav[s], m.hu)


def _dense_tentorium(cx, m: _Mimic, z_cc) -> None:
    if cx.zmin >= -8:
        return
    g, wf = cx.g, cx.wf
    s = g.box((-75, -5, -60), (75, 100, -5))
    if s is None:
        return
    X, Y, Z = g.X[s], g.Y[s], g.Z[s]
    dz = F32(-14) - F32(0.3) * np.maximum(Y - F32(8), F32(0)) - F32(0.005) * X * X - Z
    y_front = np.maximum(F32(0.6) * (np.abs(X) - F32(14)), F32(-2))
    sheet = _ramp((F32(0.8) - np.abs(dz)) / wf) * _ramp((Y - y_front) * F32(0.5)) * _ramp((cx.D[s] - F32(1)) / wf)
    _paint(cx.img, s, sheet * cx.cav[s], m.hu)


def _open_sutures(cx, m: _Mimic, z_cc) -> None:
    """Coronal, sagittal and lambdoid sutures: fibrous gaps across the vault."""
    g, D, wf, ts = cx.g, cx.D, cx.wf, cx.t_skull
    X, Y, Z = g.X, g.Y, g.Z
    bone = _ramp(-D / wf) * _ramp((D + ts) / wf) * _ramp((Z + F32(5)) * F32(0.25))
    half = F32(0.5 + 0.05 * (16 - cx.an.age))
    planes = (np.abs(X - F32(cx.an.falx_x)) * _ramp((Y + F32(10)) * F32(0.5)),  # sagittal, behind the coronal
              np.abs(Y + F32(10) - F32(0.25) * Z),  # coronal
              np.abs(Y - F32(55) + F32(0.6) * Z))  # lambdoid
    gap = np.zeros(g.shape, F32)
    for dist in planes:
        np.maximum(gap, _ramp((half - dist) / wf), out=gap)
    _paint(cx.img, ..., gap * bone, m.hu)


def _metal(cx, material: str) -> np.ndarray:
    key = ("metal", material)
    if key not in cx.lesions:
        cx.lesions[key] = np.zeros(cx.g.shape, F32)
    return cx.lesions[key]


def _shunt(cx, m: _Mimic, z_cc) -> None:
    """A ventricular catheter from a parietal burr hole to the frontal horn, its valve in the scalp."""
    g, an, w, wf = cx.g, cx.an, cx.w, cx.wf
    side = m.get("side")
    u = np.array([side * 0.45, 0.35, 0.82])
    u /= np.linalg.norm(u)
    entry = u * _surface_radius(u, an.egg)
    tip = np.array(m.centre)
    axis = tip - entry
    length = float(np.linalg.norm(axis))
    axis /= length
    s = g.box(np.minimum(entry, tip) - 12, np.maximum(entry, tip) + 12)
    if s is None:
        return
    X, Y, Z = g.coords(s, entry)
    along = X * F32(axis[0]) + Y * F32(axis[1]) + Z * F32(axis[2])
    rx, ry, rz = X - along * F32(axis[0]), Y - along * F32(axis[1]), Z - along * F32(axis[2])
    dist = np.sqrt(rx * rx + ry * ry + rz * rz)
    seg = _ramp((along + F32(an.skull_t + an.scalp_t)) / wf) * _ramp((F32(length) - along) / wf)
    hole = _ramp((F32(6) - dist) / wf) * _ramp(-cx.D[s] / wf) * _ramp((cx.D[s] + cx.t_skull[s]) / wf)
    _paint(cx.img, s, hole, 25.0)  # the burr hole: soft tissue through the vault
    _paint(cx.img, s, _ramp((F32(1.4) - dist) / wf) * seg, m.hu)  # the catheter wall
    _paint(cx.img, s, _ramp((F32(0.6) - dist) / wf) * seg, 5.0)  # its lumen
    valve = entry + u * (an.skull_t + an.scalp_t * 0.6) + np.array([0, 18.0, -6.0])
    s, a = _ellipsoid(g, valve, (4.0, 6.0, 1.5), w)
    if s is not None:
        np.maximum(_metal(cx, "titanium")[s], a * F32(0.35), out=_metal(cx, "titanium")[s])


def _clip(cx, m: _Mimic, z_cc) -> None:
    s, a = _ellipsoid(cx.g, m.centre, (1.3, 4.5, 1.3), cx.w, rot=None)
    if s is not None:
        np.maximum(_metal(cx, "cocr")[s], a, out=_metal(cx, "cocr")[s])


def _teeth(cx, m: _Mimic, z_cc) -> None:
    """The upper teeth on an arch, amalgam in some molars."""
    if cx.zmin > -80:
        return
    fillings = set(m.get("fillings"))
    for i, x in enumerate(np.linspace(-24, 24, 10)):
        c = (float(x), -82.0 + 0.06 * float(x) ** 2, -88.0)
        big = abs(x) > 12
        semi = (4.5, 5.0, 5.0) if big else (3.0, 2.5, 5.0)
        _paint_ellipsoid(cx.img, cx.g, c, semi, cx.w, m.hu)
        if i in fillings and big:
            s, a = _ellipsoid(cx.g, (c[0], c[1], c[2] - 2.5), (2.0, 2.5, 1.5), cx.w)
            if s is not None:
                np.maximum(_metal(cx, "amalgam")[s], a, out=_metal(cx, "amalgam")[s])


_PAINT = {"dense_falx": _dense_falx, "dense_tentorium": _dense_tentorium, "open_sutures": _open_sutures,
          "shunt_catheter": _shunt, "aneurysm_clip": _clip, "teeth_and_fillings": _teeth,
          "dense_sinuses": lambda *a: None, "atrophy": lambda *a: None}
