"""The skeleton of the hand and wrist as tubes (long bones) and blobs (carpals, epiphyses, sesamoids)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from radtriage.synth.xr_hand.subject import _EPI_HEIGHT, _PHYSIS_GAP, _RAYS, CARPALS, FUSING_MONTHS, Subject, _group

@dataclass(frozen=True)
class _Tube:
    """A tubular bone; p0 is its epiphyseal end, u points along it (template mm)."""

    name: str
    p0: tuple[float, float]
    u: tuple[float, float]
    length: float
    radii: tuple[float, float, float]  # half-widths at p0, shaft, far end
    flares: tuple[float, float]  # flare lengths at p0 and far end
    depth: float  # depth / width of the cross-section
    cortex: float  # shaft cortical thickness
    epi_height: float  # epiphysis region at p0
    gap: float  # physis gap (0 when fused)
    nucleus: tuple[float, float, float] | None  # half-height, half-width, half-depth
    fused: bool
    scar: float  # physeal scar strength, 0..1
    trim: float  # unossified cartilage at the far end
    tilt: float = 0.0  # tan of the end tilt (radial inclination)


@dataclass(frozen=True)
class _Blob:
    """An ellipsoidal bone (carpal, sesamoid), axes in the image plane + depth."""

    name: str
    centre: tuple[float, float]
    a: float
    b: float
    angle: float  # degrees
    c: float  # half-depth
    rim: float


def _unit(deg: float) -> tuple[float, float]:
    """Unit vector at ``deg`` from +y (distal) toward +x (thumb)."""
    r = math.radians(deg)
    return (math.sin(r), math.cos(r))


def _stage(subject: Subject, name: str) -> tuple[float, float, str]:
    """(growth 0..1 from onset to capping, fusing progress 0..1, status) of a physis."""
    ba, onset, fuse = subject.bone_age_months, subject.onsets[name], subject.fusions[name]
    if ba < onset:
        return 0.0, 0.0, "absent"
    growth = float(np.clip((ba - onset) / max(fuse - 24.0 - onset, 12.0), 0, 1))
    q = float(np.clip((ba - (fuse - FUSING_MONTHS)) / FUSING_MONTHS, 0, 1))
    status = "fused" if ba >= fuse else ("fusing" if q > 0 else "open")
    return growth, q, status


def _tube(subject: Subject, name: str, p0, u, length, radii, flares, depth, epi=True, tilt=0.0) -> _Tube:
    ba = subject.bone_age_months
    maturity = float(np.clip(ba / 180.0, 0, 1))
    w = subject.width_scale
    radii = tuple(r * w for r in radii)
    group = _group(name)
    h = _EPI_HEIGHT[group]
    gap0 = _PHYSIS_GAP[group]
    growth, q, status = _stage(subject, name) if epi else (0, 0, "absent")
    nucleus, gap, scar = None, gap0 * 1.5, 0.0
    if status != "absent":
        grow = 1.0 + 1.2 * q
        nucleus = (0.5 * h * (0.45 + 0.55 * growth) * grow, radii[0] * (0.3 + 0.75 * growth) * grow,
                   radii[0] * depth * (0.3 + 0.7 * growth) * grow)
        gap = gap0 * (1.0 + 0.5 * (1 - growth)) * (1 - q)
    if status == "fused":
        scar = float(max(0.0, 1.0 - (ba - subject.fusions[name]) / 48.0))
    return _Tube(
        name=name, p0=p0, u=u, length=length, radii=radii, flares=flares, depth=depth,
        cortex=radii[1] * (0.30 + 0.18 * maturity), epi_height=h if epi else 0.0, gap=gap,
        nucleus=nucleus, fused=status == "fused", scar=scar, trim=1.5 * (1 - maturity), tilt=tilt,
    )


def _skeleton(subject: Subject) -> tuple[list[_Tube], list[_Blob], dict[str, Any]]:
    """Bones in template coordinates, and the landmarks truth reports."""
    ba = subject.bone_age_months
    tubes: list[_Tube] = []
    blobs: list[_Blob] = []
    marks: dict[str, Any] = {"centres": {}, "physes": {}}

    def physis_mark(t: _Tube) -> None:
        h = t.epi_height
        marks["physes"][t.name] = (t.p0[0] + t.u[0] * h, t.p0[1] + t.u[1] * h, t.u)
        marks["centres"][t.name] = (t.p0[0] + t.u[0] * h / 2, t.p0[1] + t.u[1] * h / 2)

    radius = _tube(subject, "radius", (4.0, 0.0), (0.0, -1.0), 260.0, (14.0, 8.0, 8.0), (38.0, 1.0), 0.7, tilt=0.4)
    ulna = _tube(subject, "ulna", (-17.5, -2.0), (0.02, -1.0), 260.0, (8.0, 5.5, 5.5), (25.0, 1.0), 1.0)
    tubes += [radius, ulna]
    physis_mark(radius)
    physis_mark(ulna)
    if ba > subject.onsets["ulna"] + 36:  # the ulnar styloid ossifies from the epiphysis
        styl = min(1.0, (ba - subject.onsets["ulna"] - 36) / 48)
        blobs.append(_Blob("ulnar_styloid", (-23.5, -4.0 + 2.0 * styl), 1.8 * styl + 0.4, 4.0 * styl + 0.4,
                           90, 1.6, 0.4))

    for name, (x, y, a, b, ang) in CARPALS.items():
        onset = subject.onsets[name]
        mature = subject.fusions["radius"] - 40.0
        marks["centres"][name] = (x, y)
        if ba < onset:
            continue
        g = float(np.clip((ba - onset) / (mature - onset), 0, 1)) ** 0.85
        frac = 0.2 + 0.8 * g
        m = math.sqrt(a * b)
        aa, bb = frac * ((1 - g) * m + g * a), frac * ((1 - g) * m + g * b)
        blobs.append(_Blob(name, (x, y), aa, bb, ang, 0.8 * m * frac, 0.5 + 0.4 * g))
        if name == "hamate" and g > 0.6:
            blobs.append(_Blob("hamate_hook", (x + 1.5, y + 1.0), 2.2, 3.0, 0, 5.0 * (g - 0.5), 0.8))

    for digit, (base, ang, lengths, widths, _soft) in _RAYS.items():
        k = subject.finger_scale[digit - 1]
        u_mc = _unit(ang)
        l_mc = lengths[0] * k
        head = (base[0] + u_mc[0] * l_mc, base[1] + u_mc[1] * l_mc)
        if digit == 1:
            mc = _tube(subject, "mc1", base, u_mc, l_mc, widths[0], (0.25 * l_mc, 0.25 * l_mc), 1.0)
        else:  # epiphysis at the head: start there and point back toward the base
            rb, rs, rh = widths[0]
            mc = _tube(subject, f"mc{digit}", head, (-u_mc[0], -u_mc[1]), l_mc, (rh, rs, rb),
                       (0.25 * l_mc, 0.2 * l_mc), 1.0)
        tubes.append(mc)
        physis_mark(mc)
        u_f = _unit((ang - 4.0 if digit == 1 else ang * 1.3) + subject.finger_spread[digit - 1])
        p = (head[0] + u_f[0] * 2.5, head[1] + u_f[1] * 2.5)
        for kind, length, w in zip(("pp", "mp", "dp"), lengths[1:], widths[1:]):
            if w is None:
                continue
            length = length * k
            t = _tube(subject, f"{kind}{digit}", p, u_f, length, w,
                      (0.3 * length, 0.35 * length if kind == "dp" else 0.25 * length), 0.75)
            tubes.append(t)
            physis_mark(t)
            p = (p[0] + u_f[0] * (length + 2.0), p[1] + u_f[1] * (length + 2.0))
        marks[f"tip{digit}"] = (p[0] + u_f[0] * 1.5, p[1] + u_f[1] * 1.5)
        if digit == 1:
            ses = (head[0] - 4 * u_mc[0] - 5.5 * u_mc[1], head[1] - 4 * u_mc[1] + 5.5 * u_mc[0])
            marks["centres"]["sesamoid"] = ses
            if ba >= subject.onsets["sesamoid"]:
                g = min(1.0, (ba - subject.onsets["sesamoid"]) / 48)
                blobs.append(_Blob("sesamoid", ses, 1.2 + 1.3 * g, 1.2 + 1.5 * g, 0, 1.2 + 1.3 * g, 0.4))
    return tubes, blobs, marks

