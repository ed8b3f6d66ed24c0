"""Normal variants of the growing hand: pseudo-epiphyses, cone epiphyses, accessory ossicles.

Drawn per child in detector mode (`PROBABILITIES`, rough prevalences in
children: pseudo-epiphyses of the second metacarpal base are common, cone
epiphyses and accessory ossicles rare) or forced; recorded in truth.
"""

from __future__ import annotations

import math

import numpy as np

from radtriage.synth.xr_hand.projection import _View
from radtriage.synth.xr_hand.skeleton import _Blob, _stage, _Tube
from radtriage.synth.xr_hand.subject import Subject

PROBABILITIES: dict[str, float] = {
    "pseudo_epiphysis_mc2": 0.25, "pseudo_epiphysis_mc1": 0.08, "cone_epiphysis_mp5": 0.05,
    "cone_epiphysis_pp3": 0.03, "os_centrale": 0.02, "os_triangulare": 0.02, "os_styloideum": 0.02,
}
VARIANTS = tuple(PROBABILITIES)
# where an accessory ossicle lies (template mm) and its semi-axes
_OSSICLES = {"os_centrale": ((7.0, 20.5), 2.4, 1.8), "os_triangulare": ((-19.0, 5.0), 2.2, 1.8),
             "os_styloideum": ((5.5, 37.5), 2.6, 2.0)}
_PSEUDO_AGE = (24.0, 150.0)  # bone age (months) over which a pseudo-epiphysis shows as a cleft


def draw_variants(rng: np.random.Generator, forced: tuple[str, ...] | None = None) -> frozenset[str]:
    draws = rng.random(len(VARIANTS))
    if forced is None:
        return frozenset(v for v, u in zip(VARIANTS, draws) if u < PROBABILITIES[v])
    unknown = set(forced) - set(VARIANTS)
    if unknown:
        raise ValueError(f"unknown variants {sorted(unknown)}; known: {', '.join(VARIANTS)}")
    return frozenset(forced)


def visible(variants: frozenset[str], subject: Subject) -> dict[str, bool]:
    """Whether each drawn variant shows at this bone age (a cone needs an open physis, an ossicle a mature
    carpus, a pseudo-epiphysis the years before it merges)."""
    ba = subject.bone_age_months
    out = {}
    for v in sorted(variants):
        if v.startswith("pseudo"):
            out[v] = _PSEUDO_AGE[0] <= ba <= _PSEUDO_AGE[1]
        elif v.startswith("cone"):
            out[v] = _stage(subject, v.split("_")[-1])[2] in ("open", "fusing")
        else:
            out[v] = ba >= 84.0
    return out


def blobs(variants: frozenset[str], subject: Subject, tubes: list[_Tube]) -> list[_Blob]:
    """Cone epiphyses (a peg of the epiphysis into the metaphysis) and accessory ossicles, as blobs."""
    shown = visible(variants, subject)
    by_name = {t.name: t for t in tubes}
    out = []
    for v, on in shown.items():
        if not on:
            continue
        if v.startswith("cone"):
            t = by_name[v.split("_")[-1]]
            a = t.epi_height + t.gap / 2 + 0.8
            centre = (t.p0[0] + t.u[0] * a, t.p0[1] + t.u[1] * a)
            angle = math.degrees(math.atan2(t.u[1], t.u[0]))
            out.append(_Blob(v, centre, 1.8, 0.35 * t.radii[0], angle, 0.6 * t.radii[0], 0.4))
        elif v in _OSSICLES:
            centre, a, b = _OSSICLES[v]
            out.append(_Blob(v, centre, a, b, 20.0, 0.9 * b, 0.5))
    return out


def clefts(variants: frozenset[str], subject: Subject, tubes: list[_Tube], geo: _View, bone: np.ndarray) -> None:
    """Pseudo-epiphyses: a lucent cleft across most of the non-epiphyseal end of a metacarpal (in place)."""
    shown = visible(variants, subject)
    by_name = {t.name: t for t in tubes}
    for v, on in shown.items():
        if not (on and v.startswith("pseudo")):
            continue
        t = by_name[v.split("_")[-1]]
        a_c = t.length * 0.92
        r = t.radii[2]
        ux, uy = t.u
        nx, ny = -uy, ux
        c = np.array(t.p0) + a_c * np.array(t.u)
        win = geo.window(np.array([c + s * 2 * r * np.array((nx, ny)) + q * 2.0 * np.array(t.u)
                                   for s in (-1, 1) for q in (-1, 1)]))
        if win is None:
            continue
        rows, cols, x, y = win
        a = (x - c[0]) * ux + (y - c[1]) * uy
        d = (x - c[0]) * nx + (y - c[1]) * ny
        band = np.exp(-0.5 * (a / 0.35) ** 2) * (np.abs(d) < 0.7 * r)
        bone[rows, cols] *= 1 - 0.75 * band


def centres_px(variants: frozenset[str], subject: Subject, tubes: list[_Tube], geo: _View) -> dict[str, dict]:
    """Truth: each drawn variant, whether it shows, and where (pixels)."""
    by_name = {t.name: t for t in tubes}
    out = {}
    for v, on in visible(variants, subject).items():
        if v in _OSSICLES:
            p = _OSSICLES[v][0]
        else:
            t = by_name[v.split("_")[-1]]
            a = t.length * 0.92 if v.startswith("pseudo") else t.epi_height + t.gap / 2 + 0.8
            p = (t.p0[0] + t.u[0] * a, t.p0[1] + t.u[1] * a)
        out[v] = {"visible": on, "px": [round(c, 2) for c in geo.to_px(p)]}
    return out
