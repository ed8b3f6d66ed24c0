"""`sample`: one CTA head (placement, anatomy, vessels, occlusion, grid, picture) and its truth."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from radtriage.synth.cta_head.acquisition import _Acquisition, _draw_acquisition
from radtriage.synth.cta_head.anatomy import _CLOT_HU, DIVISIONS, HU_BLOOD, SEGMENTS, SIDES, Grid, _draw_head, _Head
from radtriage.synth.cta_head.render import _render, _segments
from radtriage.synth.cta_head.vessels import _arteries, _occlude, _veins, _Vessel
from radtriage.synth.geometry import rotation
from radtriage.synth.options import CtOptions

@dataclass(frozen=True, eq=False)
class CtaHeadSample:
    """One synthetic CTA head: the axial source volume and its ground truth."""

    hu: np.ndarray  # int16 (z, y, x), Hounsfield units; slices from feet to head
    spacing: tuple[float, float, float]  # (slice interval, row spacing, column spacing), mm
    origin: tuple[float, float, float]  # patient position (x, y, z) of voxel [0, 0, 0], LPS mm
    slice_thickness: float  # mm
    truth: dict[str, Any]
    head: Any = field(repr=False, default=None)  # the drawn anatomy, for the localizer


def _point(grid: Grid, head: _Head, a: np.ndarray) -> dict[str, list[float]]:
    p = head.to_world(a)
    return {"mm": [round(float(x), 2) for x in p], "voxel": [round(float(x), 2) for x in grid.voxel(p)]}



def _calcifications(rng: np.random.Generator, vessels: dict[str, _Vessel], age: float) -> list[_Vessel]:
    """Calcified plaque on the wall of the carotid siphons, more with age."""
    out = []
    for side in SIDES:
        ica = vessels["ica_" + side[0]]
        for _ in range(int(rng.poisson(2.5 * max(0.0, (age - 45) / 45)))):
            s = rng.uniform(0.25, 0.75) * ica.length
            off = rng.normal(0, 1, 3)
            off /= np.linalg.norm(off)
            c = ica.at(s) + off * (float(np.interp(s, ica.s, ica.r)) + 0.2)
            calc = _Vessel(f"calc_{side[0]}", [c, c + off * 0.1 + 0.05], rng.uniform(0.5, 1.2), 0.0, kind="calc")
            calc.value = rng.uniform(500, 1100)
            out.append(calc)
    return out


def _landmarks(grid: Grid, head: _Head, vessels: dict[str, _Vessel]) -> dict[str, dict[str, list[float]]]:
    out = {}
    for side in SIDES:
        sfx = "_" + side[0]
        m1 = vessels["m1" + sfx]
        out[f"ica_t_{side}"] = _point(grid, head, vessels["ica" + sfx].pts[-1])
        out[f"m1_mid_{side}"] = _point(grid, head, m1.at(0.5 * m1.length))
        for div in DIVISIONS:
            out[f"m2_{div}_proximal_{side}"] = _point(grid, head, vessels[f"m2{div[0]}" + sfx].at(5.0))
    basilar = vessels["basilar"]
    out["basilar_tip"] = _point(grid, head, basilar.pts[-1])
    out["basilar_mid"] = _point(grid, head, basilar.at(0.5 * basilar.length))
    out["acomm"] = _point(grid, head, vessels["acomm"].at(0.5 * vessels["acomm"].length))
    return out



@dataclass(frozen=True, kw_only=True)
class CtaHeadOptions(CtOptions):
    """What `sample` may be asked for (None: drawn as a scanner and a population would).

    ``lvo`` forces a positive/negative study (default: positive with
    probability ``p_positive``); ``side`` ('left'/'right'), ``segment``
    ('ica_t'/'m1'/'m2') and ``division`` ('superior'/'inferior', for M2)
    force the occlusion. ``matrix``, ``fov_mm``, ``slice_thickness``,
    ``slice_spacing`` and ``coverage_mm`` set the grid (defaults drawn as a
    scanner would: 512 over 210-250 mm, 0.625-1.25 mm, 60-100 mm); with a
    given ``slice_thickness`` the slice interval equals it unless
    ``slice_spacing`` says otherwise. ``noise=False`` leaves the noise out.
    """

    lvo: bool | None = None
    side: str | None = None
    segment: str | None = None
    division: str | None = None
    p_positive: float = 0.5
    fov_mm: float | None = None
    slice_thickness: float | None = None
    slice_spacing: float | None = None
    coverage_mm: float | None = None
    age_years: float | None = None
    kvp: float | None = None
    noise: bool = True


@dataclass(frozen=True)
class _Occlusion:
    positive: bool
    side: str
    segment: str
    division: str
    clot_hu: float
    f_col: float
    occ: dict[str, Any] | None


def sample(rng: np.random.Generator, **options: Any) -> CtaHeadSample:
    """Draw one CTA head (no I/O); ``options`` are `CtaHeadOptions`.

    Every random number is drawn whether or not it is used, so the same seed
    with ``lvo=True`` and ``lvo=False`` gives the same head, vessels and
    noise, differing only along the occluded vessels.
    """
    o = CtaHeadOptions(**options)
    if o.side is not None and o.side not in SIDES:
        raise ValueError(f"side must be one of {SIDES}")
    if o.segment is not None and o.segment not in SEGMENTS:
        raise ValueError(f"segment must be one of {SEGMENTS}")
    if o.division is not None and o.division not in DIVISIONS:
        raise ValueError(f"division must be one of {DIVISIONS}")
    d_age = rng.uniform(45, 90)
    age = float(d_age if o.age_years is None else o.age_years)
    acq = _draw_acquisition(rng, o.matrix, o.fov_mm, o.slice_thickness, o.slice_spacing, o.coverage_mm, o.kvp)
    head, angles, fov_c = _place_head(rng, age)
    vessels = _arteries(rng, head)
    veins = _veins(rng, head)
    calcs = _calcifications(rng, vessels, age)
    occ = _draw_occlusion(rng, o, vessels)
    # the grid, and the picture
    px = acq.fov / o.matrix
    x0, y0 = fov_c - acq.fov / 2 + px / 2
    grid = Grid((float(x0), float(y0), float(head.centre[2] + acq.bottom)), (acq.spacing, px, px),
                (int(round(acq.coverage / acq.spacing)) + 1, o.matrix, o.matrix))
    w_slice = (grid.axes()[0] - head.centre[2]) * head.rot[2, 2]
    sd = acq.noise_sd * (1.0 + acq.base_boost * np.exp(-(((w_slice + 25.0) / 12.0) ** 2)))

    def hu_of(v: _Vessel, s: float) -> float:
        if v.kind == "calc":
            return v.value
        if v.kind == "vein":
            return acq.venous
        f = v.factor(s)
        return occ.clot_hu if f < 0 else HU_BLOOD + f * (acq.arterial * v.gain - HU_BLOOD)

    segs = _segments([*vessels.values(), *veins.values(), *calcs], head, grid, acq.sigma, hu_of)
    hu = _render(head, grid, acq.sigma, segs, (rng, sd) if o.noise else None)
    truth = _truth(grid, head, vessels, calcs, acq, occ, age, angles)
    return CtaHeadSample(hu, grid.spacing, grid.origin, acq.thickness, truth, head)


def _place_head(rng: np.random.Generator, age: float) -> tuple[_Head, np.ndarray, np.ndarray]:
    """The head drawn and placed in the scanner: (head, its rotation (yaw, pitch, roll) rad, the FOV centre)."""
    yaw, pitch, roll = np.radians([rng.uniform(-6, 6), rng.uniform(-8, 8), rng.uniform(-4, 4)])
    head_xy = np.array([rng.uniform(-6, 6), rng.uniform(-6, 6)])
    table_z = rng.uniform(-160, 40)
    fov_c = np.array([rng.uniform(-3, 3), rng.uniform(-3, 3)])
    head = _draw_head(rng, age)
    head.rot = rotation(float(yaw), float(pitch), float(roll))
    head.centre = np.array([head_xy[0], head_xy[1] - head.v0, table_z])
    return head, np.array([yaw, pitch, roll]), fov_c


def _draw_occlusion(rng: np.random.Generator, o: CtaHeadOptions, vessels: dict[str, _Vessel]) -> _Occlusion:
    """Whether, where and how the study is occluded; every number drawn whatever the options."""
    d_pos = rng.random() < o.p_positive
    d_side = SIDES[int(rng.integers(2))]
    d_seg = SEGMENTS[int(rng.choice(3, p=[0.25, 0.5, 0.25]))]
    d_div = DIVISIONS[int(rng.integers(2))]
    u = rng.random(4)
    f_prox, f_col = rng.uniform(0.0, 0.25), rng.uniform(0.05, 0.5)
    a1_fill = rng.uniform(0.6, 0.95) if rng.random() < 0.7 else rng.uniform(0.0, 0.25)
    clot_hu = rng.uniform(*_CLOT_HU)
    positive = d_pos if o.lvo is None else bool(o.lvo)
    occ_side, occ_seg, occ_div = o.side or d_side, o.segment or d_seg, o.division or d_div
    occ = _occlude(vessels, occ_side, occ_seg, occ_div, u, f_prox, f_col, a1_fill) if positive else None
    return _Occlusion(positive, occ_side, occ_seg, occ_div, clot_hu, f_col, occ)


def _truth(grid: Grid, head: _Head, vessels: dict[str, _Vessel], calcs: list[_Vessel], acq: _Acquisition,
           oc: _Occlusion, age: float, angles: np.ndarray) -> dict[str, Any]:
    positive = oc.positive
    truth: dict[str, Any] = {
        "lvo": positive,
        "side": oc.side if positive else None,
        "segment": oc.segment if positive else None,
        "m2_division": oc.division if positive and oc.segment == "m2" else None,
        "occlusion_point": None,  # where the contrast column stops: {"mm": LPS (x, y, z), "voxel": (k, j, i)}
        "clot_point": None,  # inside the thrombus, 1.5 mm beyond the occlusion point
        "clot_end": None,
        "patent_point": None,  # on the same vessel, 3 mm before the occlusion point
        "clot_length_mm": None,
        "clot_hu": None,
        "collateral_fill": None,  # fraction of normal enhancement of the cortical branches beyond
        "affected_vessels": [],
        "landmarks": _landmarks(grid, head, vessels),
        "variants": {
            "pcom_absent": [s for s in SIDES if "pcom_" + s[0] not in vessels],
            "fetal_pca": [s for s in SIDES if vessels["p1_" + s[0]].r[0] < 0.7],
            "hypoplastic_a1": [s for s in SIDES if vessels["a1_" + s[0]].r[0] < 0.7],
            "siphon_calcifications": len(calcs),
        },
        "age_years": round(age, 1),
        "arterial_hu": round(acq.arterial, 1),
        "venous_hu": round(acq.venous, 1),
        "noise_sd_hu": round(acq.noise_sd, 2),
        "blur_sigma_mm": round(acq.sigma, 3),
        "kvp": acq.kvp,
        "shape": list(grid.shape),
        "spacing_mm": [round(x, 6) for x in grid.spacing],
        "origin_mm": [round(x, 4) for x in grid.origin],
        "slice_thickness_mm": acq.thickness,
        "fov_mm": round(acq.fov, 2),
        "head_rotation_deg": [round(float(np.degrees(a)), 2) for a in angles],
    }
    occ = oc.occ
    if occ is not None:
        v: _Vessel = occ["vessel"]
        truth.update(
            occlusion_point=_point(grid, head, v.at(occ["s_occ"])),
            clot_point=_point(grid, head, occ["clot_point"]),
            clot_end=_point(grid, head, occ["clot_end"]),
            patent_point=_point(grid, head, occ["patent_point"]),
            clot_length_mm=round(float(occ["clot_len"]), 2),
            clot_hu=round(oc.clot_hu, 1),
            collateral_fill=round(oc.f_col, 3),
            affected_vessels=sorted({_vessel_label(n) for n in occ["affected"]}),
        )
    return truth

_LABELS = {"ica": "ICA", "m1": "M1", "m2s": "M2 superior", "m2i": "M2 inferior", "a1": "A1",
           "ata": "anterior temporal", "lsa": "lenticulostriate", "m3s": "M3 superior", "m3i": "M3 inferior"}


def _vessel_label(name: str) -> str:
    """'m3s1_l' -> 'left M3 superior'."""
    base, side = name.rsplit("_", 1)
    key = base if base in _LABELS else base.rstrip("0123456789")  # numbered branches: lsa0, m3s1
    return f"{'left' if side == 'l' else 'right'} {_LABELS.get(key, key.upper())}"

