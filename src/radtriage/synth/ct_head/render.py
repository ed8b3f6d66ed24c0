"""The noiseless phantom on a grid: scalp, skull and skull base, face, brain, CSF spaces, vessels, blood.

`_render` paints in a fixed order onto one `_Canvas`; each step below is one
layer of the head, from the outside in, and leaves what later steps need
(the depth under the inner table, the cranial cavity, the shifted midline)
on the canvas.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from radtriage.synth.ct_head.anatomy import _Anatomy
from radtriage.synth.ct_head.brain import _folia, _sulci, _ventricles
from radtriage.synth.ct_head.frame import (
    A_IN, B_IN, C_DN, C_UP, F32, _basis, _clip01, _ellipsoid, _Grid, _paint, _paint_ellipsoid, _ramp, _surface_radius,
)
from radtriage.synth.ct_head.lesions import _Bleed, _collection_thickness, _iph, _ivh
from radtriage.synth.ct_head.mimics import paint_mimics
from radtriage.synth.geometry import rotation


# --------------------------------------------------------------------------- rendering


def _skull_base(X: np.ndarray, Y: np.ndarray, ax: np.ndarray):
    """Floor of the cranial cavity (Z, standard mm) and the bone thickness under it.

    Orbital roofs domed over the orbits and rising anteriorly, a sphenoid ridge,
    middle cranial fossae deepest laterally, the sella, the clivus sloping down
    behind it, and the petrous ridges running posterolaterally from its sides.
    """
    f32 = F32
    dome = _clip01(f32(1) - ((ax - f32(30)) ** 2 + (Y + f32(60)) ** 2) * f32(1 / 400))
    ant = f32(-25) + f32(0.12) * np.maximum(-Y - f32(30), f32(0)) + f32(4) * dome \
        - f32(6) * _ramp((f32(8) - ax) * f32(0.25))
    mid = f32(-51) + f32(0.012) * (ax - f32(42)) ** 2
    sella = _ramp((f32(15) - ax) * f32(0.25))
    mid = mid + sella * (f32(-33) - mid)
    w_ant = _ramp((f32(-27) - f32(0.3) * ax - Y) * f32(1 / 6))  # behind the sphenoid ridge: middle fossa
    floor = mid + w_ant * (ant - mid)
    y_pet = f32(0.6) * np.maximum(ax - f32(14), f32(0))
    w_post = _ramp((Y - y_pet) * f32(0.25))
    central = _ramp((f32(14) - ax) * f32(0.25))
    clivus = f32(-33) - f32(1.6) * np.maximum(Y, f32(0))
    f_post = f32(-200) + central * (clivus + f32(200))
    floor += w_post * (f_post - floor)
    d_pet = (Y - y_pet) * f32(0.857)  # distance from the petrous ridge line
    lateral = _ramp((ax - f32(14)) * f32(0.25)) * _ramp((f32(60) - ax) * f32(0.25))
    f_pet = f32(-31) - f32(0.1) * np.maximum(ax - f32(14), f32(0)) - f32(0.35) * d_pet * d_pet
    floor = np.maximum(floor, floor + lateral * (f_pet - floor))
    w_pet = _ramp((f32(7) - np.abs(d_pet)) * f32(0.25)) * lateral
    t_base = f32(2) + f32(3) * (f32(1) - w_ant) + f32(16) * w_pet + f32(10) * central * _ramp((Y + f32(1)) * f32(0.25))
    return floor, t_base



@dataclass(eq=False)
class _Canvas:
    """The image being painted and what the layers painted so far leave for the next ones."""

    g: _Grid
    an: _Anatomy
    bleeds: Sequence[_Bleed]
    w: float
    img: np.ndarray
    D: np.ndarray  # radial depth under the inner table, mm
    t_skull: np.ndarray
    zmin: float
    notface: np.ndarray | None = None
    floor: np.ndarray | None = None
    cav: np.ndarray | None = None  # cranial cavity
    xb: np.ndarray | None = None  # the brain's own X (the midline shifted by a mass)
    xm: np.ndarray | None = None  # distance-signed X from the falx
    shift: float = 0.0
    shift_side: float = 0.0
    lesions: dict[int, np.ndarray] = field(default_factory=dict)

    @property
    def low(self) -> bool:
        return self.zmin < -12.0

    @property
    def wf(self) -> np.float32:
        return F32(self.w)


def _render(g: _Grid, an: _Anatomy, bleeds: Sequence[_Bleed], w: float, detail: bool = True):
    """The noiseless phantom (HU, float32) and the occupancy of each bleed (index -> array)."""
    cx, w_t = _canvas(g, an, bleeds, w)
    cells = _air_cells(cx)
    t_out = cx.t_skull + F32(an.scalp_t) + F32(an.temporalis) * w_t
    if cx.low:
        _neck_and_face(cx)
    _scalp_and_vault(cx, w_t, t_out, cells)
    del w_t, t_out, cells
    if cx.low:
        _skull_base_and_face(cx)
    collections, D_eff = _collections(cx)
    brain_in = _cavity(cx, D_eff)
    infra, infra_cb = _tentorium(cx)
    tissue, z_cc = _cerebrum(cx, D_eff, brain_in, infra, detail)
    _white_matter(cx, tissue)
    _posterior_fossa(cx, tissue, brain_in, infra, infra_cb, detail)
    del infra, infra_cb, brain_in
    _cisterns(cx, tissue)
    csf_ext = cx.cav * (F32(1) - tissue)  # extraventricular CSF fraction
    del tissue
    _ventricles_and_ivh(cx)
    _subarachnoid_blood(cx, csf_ext)
    _sinuses_falx_calcifications(cx, z_cc)
    if an.mimics:
        paint_mimics(cx, z_cc)
    _intraparenchymal(cx, csf_ext)
    _extra_axial(cx, collections)
    cx.img += F32(an.calibration) * (cx.img > -900)
    return cx.img, cx.lesions


def _canvas(g: _Grid, an: _Anatomy, bleeds: Sequence[_Bleed], w: float) -> tuple[_Canvas, np.ndarray]:
    """An air-filled canvas with the depth under the inner table and the skull thickness (and temporal weight)."""
    X, Y, Z = g.X, g.Y, g.Z
    one = F32(1)
    zmin = float(Z.min())
    img = np.full(g.shape, -1000.0, F32)
    ax = np.abs(X)
    rho = np.sqrt(X * X + Y * Y + Z * Z)
    rho += F32(1e-3)
    inv_a = one / (F32(A_IN) + F32(an.egg * A_IN / B_IN) * Y)
    cz = np.where(Z > 0, F32(1 / C_UP), F32(1 / C_DN))
    q = (X * inv_a) ** 2 + (Y * F32(1 / B_IN)) ** 2 + (Z * cz) ** 2
    D = rho * (one / np.sqrt(np.maximum(q, F32(1e-6))) - one)  # radial depth under the inner table, mm
    del inv_a, cz, q
    w_t = _clip01((ax / rho - F32(0.72)) * F32(5)) * _clip01(one - np.abs(Z + F32(15)) * F32(1 / 30))
    t_skull = F32(an.skull_t) * (one - F32(0.5) * w_t)
    return _Canvas(g=g, an=an, bleeds=bleeds, w=w, img=img, D=D, t_skull=t_skull, zmin=zmin), w_t


def _air_cells(cx: _Canvas) -> list:
    """Mastoid and frontal sinus air cells: thicker bone around them; (box, air fraction) of each."""
    g, an, D, t_skull, wf = cx.g, cx.an, cx.D, cx.t_skull, cx.wf
    cells = []
    if cx.low:
        for sd in (-1.0, 1.0):
            s = g.box((sd * 55 - 25, -5, -75), (sd * 55 + 25, 45, -25))
            if s is not None:
                Xs, Ys, Zs = g.coords(s, (sd * 55, 20, -50))
                m = np.exp(-(Xs * Xs + Ys * Ys + Zs * Zs) * F32(1 / 121)) * F32(an.mastoid)
                t_skull[s] += F32(14) * m
                honey = np.cos(Xs * F32(1.6)) * np.cos(Ys * F32(1.6)) * np.cos(Zs * F32(1.6))
                cells.append((s, _clip01(F32(1.6) * m * _ramp((honey + F32(0.2)) * F32(2.5)))))
    if an.frontal_sinus > 0:
        s = g.box((-32, -110, -36), (32, -50, 14))
        if s is not None:
            Xs, Ys, Zs = g.coords(s, (0, 0, -12))
            fs = np.exp(-(Xs * Xs * F32(1 / 196) + Zs * Zs * F32(0.01))) * _ramp((F32(-60) - Ys) * F32(1 / 8))
            fs *= F32(an.frontal_sinus)
            t_skull[s] += F32(7) * fs
            edge = np.minimum(-D[s], D[s] + t_skull[s]) - F32(1.5)
            cells.append((s, _clip01(F32(1.6) * fs) * _ramp(edge / wf)))
    return cells


def _neck_and_face(cx: _Canvas) -> None:
    """The neck, cervical spine, face and nose below the skull base (the localizer sees them)."""
    g, img, w, one = cx.g, cx.img, cx.w, F32(1)
    face = np.zeros(g.shape, F32)
    s = g.box((-90, -140, -120), (90, -40, -14))
    if s is not None:
        face[s] = _clip01((-g.Y[s] - F32(52)) * F32(1 / 8)) * _clip01((F32(-26) - g.Z[s]) * F32(1 / 8))
    cx.notface = one - face
    _paint_ellipsoid(img, g, (0, 8, -140), (46, 50, 85), w, 35.0)  # neck (the localizer sees it)
    _paint_ellipsoid(img, g, (0, 26, -140), (9, 9, 75), w, 500.0)  # cervical spine
    _paint_ellipsoid(img, g, (0, -60, -60), (50, 38, 38), w, 25.0)  # face
    _paint_ellipsoid(img, g, (0, -100, -62), (11, 14, 20), w, 30.0)  # nose


def _scalp_and_vault(cx: _Canvas, w_t: np.ndarray, t_out: np.ndarray, cells: list) -> None:
    """Scalp (and scalp haematoma or swelling), the skull vault (cortical tables and diploe), air cells."""
    g, an, img, D, t_skull, w, wf, one = cx.g, cx.an, cx.img, cx.D, cx.t_skull, cx.w, cx.wf, F32(1)
    notface = cx.notface
    a = _ramp((D + t_out) / wf)
    _paint(img, ..., a if notface is None else a * notface, F32(an.scalp_hu) + F32(12) * w_t)
    swellings = [(an.scalp_haematoma, 55.0)] if an.scalp_haematoma is not None else []
    swellings += [((b.geom["u"], 22.0, 7.0), 50.0) for b in cx.bleeds if b.geom.get("scalp_swelling")]
    for (u, radius, thick), hu in swellings:
        c = u * (_surface_radius(u, an.egg) + an.skull_t + an.scalp_t)
        s, a = _ellipsoid(g, c, (radius, radius, thick), w, rot=_basis(u))
        if s is not None:
            _paint(img, s, a * _ramp((-D[s] - t_skull[s]) / wf), hu)
    depth_in_bone = np.minimum(-D, D + t_skull)
    bone = _ramp(depth_in_bone / wf)
    if notface is not None:
        bone *= notface
    cort = _clip01(one - depth_in_bone * F32(0.5))
    _paint(img, ..., bone, F32(an.diploe) + F32(an.cortical - an.diploe) * cort)
    del depth_in_bone, cort, bone
    for s, a in cells:
        _paint(img, s, a * ((D[s] < 0) & (D[s] > -t_skull[s])), -1000.0)


def _skull_base_and_face(cx: _Canvas) -> None:
    """Skull base, sphenoid and ethmoid sinuses, orbits, maxillary sinuses, nasopharynx."""
    g, an, img, D, w, wf = cx.g, cx.an, cx.img, cx.D, cx.w, cx.wf
    X, Y, Z = g.X, g.Y, g.Z
    floor, t_base = _skull_base(X, Y, np.abs(X))
    cx.floor = floor
    inside = _ramp((D + cx.t_skull) / wf)
    _paint(img, ..., _ramp((floor - Z) / wf) * _ramp((Z - floor + t_base) / wf) * inside, F32(an.cortical * 0.85))
    _paint(img, ..., _ramp((floor - t_base - Z) / wf) * inside * cx.notface, 40.0)
    del inside, t_base
    cx.notface = None
    s, _ = _paint_ellipsoid(img, g, (0, -14, -46), (15, 14, 11.5), w, 900.0)  # sphenoid sinus
    if s is not None:
        _paint_ellipsoid(img, g, (0, -14, -46), (13.5, 12.5, 10), w, -1000.0)
    s, a = _ellipsoid(g, (0, -66, -48), (12, 22, 20), w)  # ethmoid cells, nasal septum
    if s is not None:
        ethmoid = _ramp((np.cos(g.Y[s] * F32(1.3)) * np.cos(g.Z[s] * F32(1.3)) + F32(0.3)) * F32(2))
        _paint(img, s, a * ethmoid * _ramp((np.abs(g.X[s]) - F32(1.2)) / wf), -1000.0)
    for sd in (-1.0, 1.0):  # orbits: bony walls, fat, optic nerve, globe, lens
        s, _ = _paint_ellipsoid(img, g, (sd * 31, -62, -42), (18.5, 25.5, 18), w, 700.0)
        if s is None:
            continue
        _paint_ellipsoid(img, g, (sd * 31, -62, -42), (17, 24, 16.5), w, -90.0)
        _paint_ellipsoid(img, g, (sd * 20, -46, -37), (3, 14, 3), w, 30.0, rot=rotation(sd * 0.5, 0, 0))
        _paint_ellipsoid(img, g, (sd * 32, -76, -40), (12, 12, 12), w, 40.0)
        _paint_ellipsoid(img, g, (sd * 32, -76, -40), (10.8, 10.8, 10.8), w, 8.0)
        _paint_ellipsoid(img, g, (sd * 32, -85.5, -40), (4.5, 1.8, 4.5), w, 110.0)
        s, _ = _paint_ellipsoid(img, g, (sd * 24, -58, -76), (14.5, 17.5, 15.5), w, 700.0)  # maxillary sinus
        if s is not None:
            _paint_ellipsoid(img, g, (sd * 24, -58, -76), (13, 16, 14), w, -1000.0)
    _paint_ellipsoid(img, g, (0, -22, -72), (11, 8, 9), w, -1000.0)  # nasopharynx


def _collections(cx: _Canvas):
    """Subdural and epidural collections push the brain in: (index, box, thickness) of each, and the brain's depth."""
    g, an, D = cx.g, cx.an, cx.D
    D_eff = D
    collections = []
    for i, b in enumerate(cx.bleeds):
        if b.subtype in ("subdural", "epidural"):
            s, t = _collection_thickness(g, b, an, D)
            if s is not None:
                if D_eff is D:
                    D_eff = D.copy()
                D_eff[s] -= t
                collections.append((i, s, t))
    return collections, D_eff


def _cavity(cx: _Canvas, D_eff: np.ndarray) -> np.ndarray:
    """The cranial cavity filled with CSF; the brain's extent; the midline shifted by the largest mass."""
    g, an, img, D, floor, wf = cx.g, cx.an, cx.img, cx.D, cx.floor, cx.wf
    X, Y, Z = g.X, g.Y, g.Z
    cav = _ramp(D / wf)
    if floor is not None:
        cav *= _ramp((Z - floor) / wf)
    _paint(img, ..., cav, an.csf)
    brain_in = _ramp((D_eff - F32(0.8 + 2.2 * an.atrophy)) / wf) * cav
    if floor is not None:
        brain_in *= _ramp((Z - floor - F32(1.5)) / wf)
    shift, shift_side, shift_at = 0.0, 0.0, None
    for b in cx.bleeds:
        if b.geom.get("shift", 0.0) > shift:
            shift, shift_side = b.geom["shift"], b.geom["side"]
            shift_at = b.geom["centre"] if "centre" in b.geom else b.geom["u"] * 50.0
    xb = X
    if shift >= 1.0:
        kernel = np.exp(-((Y - F32(shift_at[1])) ** 2 + (Z - F32(shift_at[2])) ** 2) * F32(1 / (2 * 45.0**2)))
        xb = X + F32(shift_side * shift) * kernel
    cx.cav, cx.xb, cx.xm, cx.shift, cx.shift_side = cav, xb, xb - F32(an.falx_x), shift, shift_side
    return brain_in


def _tentorium(cx: _Canvas):
    """What lies below the tentorium (and, 1.5 mm further in, the cerebellum): (infra, infra_cb) or (None, None)."""
    if cx.zmin >= -8:
        return None, None
    X, Y, Z = cx.g.X, cx.g.Y, cx.g.Z
    y_front = np.maximum(F32(0.6) * (np.abs(X) - F32(14)), F32(-2))
    dz_tent = F32(-14) - F32(0.3) * np.maximum(Y - F32(8), F32(0)) - F32(0.005) * X * X - Z
    yf = _ramp((Y - y_front) * F32(0.5))
    infra = _ramp(dz_tent * F32(0.5)) * yf
    infra_cb = _ramp((dz_tent - F32(1.5)) * F32(0.5)) * yf
    return infra, infra_cb


def _cerebrum(cx: _Canvas, D_eff: np.ndarray, brain_in: np.ndarray, infra, detail: bool):
    """CSF spaces of the cerebrum (interhemispheric and Sylvian fissures, sulci), grey and white matter.

    Returns the brain tissue fraction and the height of the corpus callosum (where the falx ends).
    """
    g, an, img, D, w, wf, xb, one = cx.g, cx.an, cx.img, cx.D, cx.w, cx.wf, cx.xb, F32(1)
    Y, Z = g.Y, g.Z
    axm = np.abs(cx.xm)
    ihf_half = F32(0.5 + 1.0 * an.atrophy)
    z_cc = F32(22) - F32(222) * _ramp((np.abs(Y) - F32(34)) * F32(0.5))
    csf_sp = _ramp((ihf_half - axm) / wf) * _ramp((Z - z_cc) / wf)
    gm = _ramp((F32(2.7) + ihf_half - axm) / wf) * _ramp((Z - z_cc + F32(6)) / wf)
    gm *= F32(0.85)
    s = g.box((-70, -40, -30), (70, 20, 14))
    if s is not None:
        Ys, Zs, xs = g.Y[s], g.Z[s], axm[s]
        x_ins = F32(36) - F32(0.012) * (Ys + F32(6)) ** 2 - F32(0.012) * (Zs + F32(6)) ** 2
        yr = _ramp((Ys + F32(28)) * F32(0.25)) * _ramp((F32(8) - Ys) * F32(0.25))
        zr = _ramp((Zs + F32(20)) * F32(0.25)) * _ramp((F32(6) - Zs) * F32(0.25))
        z_syl = F32(-9) + F32(0.25) * (Ys + F32(30)) + F32(2) * np.sin(Ys * F32(0.15))
        syl = _ramp((F32(0.7 + 1.6 * an.atrophy) - np.abs(Zs - z_syl)) / wf) * _ramp((xs - x_ins) / wf) * yr
        cistern = _ramp((F32(0.5 + 0.6 * an.atrophy) - np.abs(xs - x_ins - F32(1))) / wf) * zr * yr
        csf_sp[s] = np.maximum(csf_sp[s], np.maximum(syl, cistern))
        gm[s] = np.maximum(gm[s], _ramp((F32(1.5) - np.abs(xs - x_ins + F32(1.5))) / wf) * zr * yr)
    if detail:
        sulc, ctx = _sulci(g, an, D_eff, brain_in, w, None if D_eff is D else D - D_eff)
        np.maximum(csf_sp, sulc, out=csf_sp)
        np.maximum(gm, ctx, out=gm)
        del sulc, ctx
    else:
        np.maximum(gm, _ramp((F32(3.5 + 2.2 * an.atrophy) - D_eff) / wf), out=gm)
    for c, semi, frac in (((13, -18, 6), (5, 9, 9), 0.95), ((23, -4, -2), (5.5, 14, 10), 1.0),
                          ((17, -3, -3), (3.5, 8, 6), 0.7), ((10, 10, 0), (9, 13, 10), 0.9)):
        for sd in (-1, 1):
            s, a = _ellipsoid(g, (sd * c[0] + an.falx_x, c[1], c[2]), semi, w, xb=xb)
            if s is not None:
                gm[s] = np.maximum(gm[s], a * F32(frac))
    tissue = brain_in * (one - csf_sp)
    if infra is not None:
        tissue *= one - infra
    _paint(img, ..., tissue, F32(an.wm) + F32(an.gm - an.wm) * gm)
    del gm, csf_sp
    return tissue, z_cc


def _white_matter(cx: _Canvas, tissue: np.ndarray) -> None:
    """Periventricular white-matter hypodensity and lacunes, with age."""
    g, an, img, w, xb = cx.g, cx.an, cx.img, cx.w, cx.xb
    if an.leuko > 0:  # periventricular white-matter hypodensity, lacunes
        for sd in (-1, 1):
            for c, semi in (((sd * 9, -24, 9), (10, 17, 13)), ((sd * 17, 36, 7), (11, 18, 12))):
                s, a = _ellipsoid(g, (c[0] + an.falx_x, c[1], c[2]), semi, w, xb=xb)
                if s is not None:
                    _paint(img, s, a * tissue[s] * F32(0.8 * an.leuko), an.wm - 7.0)
    for c, r in an.lacunes:
        s, a = _ellipsoid(g, c, (r, r * 1.4, r), w, xb=xb)
        if s is not None:
            _paint(img, s, a * tissue[s], an.csf + 6.0)


def _posterior_fossa(cx: _Canvas, tissue: np.ndarray, brain_in: np.ndarray, infra, infra_cb, detail: bool) -> None:
    """Brainstem with its cisterns, cerebellum with folia."""
    if infra is None:
        return
    g, an, img, cav, w, wf, xm, one = cx.g, cx.an, cx.img, cx.cav, cx.w, cx.wf, cx.xm, F32(1)
    cb = brain_in * infra_cb
    sb = g.box((-26, -25, -95), (26, 40, -8))
    if sb is not None:
        Xs, Ys, Zs = xm[sb], g.Y[sb], g.Z[sb]
        zc = np.clip(-Zs, F32(8), F32(70))
        yc = F32(8) + F32(0.3) * np.maximum(zc - F32(25), F32(0))
        rx = np.interp(zc, [8, 30, 45, 55, 70], [13, 13, 15, 10, 9]).astype(F32)
        ry = np.interp(zc, [8, 30, 45, 55, 70], [11, 11, 13, 9, 9]).astype(F32)
        rr = np.sqrt((Xs / rx) ** 2 + ((Ys - yc) / ry) ** 2)
        top = _ramp((F32(-10) - Zs) / wf)
        cis = F32(1.2) + F32(0.15) * _ramp((Zs + F32(33)) * F32(0.25))
        stem = _ramp((one - rr) * F32(10) / wf) * top * cav[sb]
        outer = _ramp((cis - rr) * F32(10) / wf) * top
        ring = outer * (one - stem) * cav[sb]
        cb[sb] *= one - outer
        _paint(img, sb, ring, an.csf)
        tissue[sb] *= one - ring
    if detail:
        cb *= one - _folia(g, an, cb, w)
    _paint(img, ..., cb, an.gm - 1.0)
    tissue += cb * (one - tissue)
    if sb is not None:
        _paint(img, sb, stem, an.wm + 3.0)
        tissue[sb] += stem * (one - tissue[sb])


def _cisterns(cx: _Canvas, tissue: np.ndarray) -> None:
    """Suprasellar cistern, cisterna magna, quadrigeminal cistern."""
    g, an, img, cav, w, one = cx.g, cx.an, cx.img, cx.cav, cx.w, F32(1)
    for c, semi in (((0, -12, -22), (13, 11, 4.5)), ((0, 64, -60), (10, 9, 10)), ((0, 30, -16), (6, 5, 4))):
        s, a = _ellipsoid(g, c, semi, w)  # suprasellar, cisterna magna, quadrigeminal
        if s is not None:
            a = a * cav[s]
            _paint(img, s, a, an.csf)
            tissue[s] *= one - a


def _ventricles_and_ivh(cx: _Canvas) -> None:
    """The ventricles (indented by the caudate heads), choroid plexus, blood in them."""
    g, an, img, cav, w, xb, one = cx.g, cx.an, cx.img, cx.cav, cx.w, cx.xb, F32(1)
    shift, shift_side, lesions = cx.shift, cx.shift_side, cx.lesions
    vents = _ventricles(g, an, w, xb, min(shift / 25.0, 0.5) if shift >= 1.0 else 0.0, shift_side)
    vent = np.zeros(g.shape, F32)
    for _, _, s, a in vents:
        np.maximum(vent[s], a, out=vent[s])
    for sd in (-1, 1):  # the caudate heads indent the frontal horns
        s, a = _ellipsoid(g, (sd * 13 + an.falx_x, -18, 6), (5, 9, 9), w, xb=xb)
        if s is not None:
            vent[s] *= one - a
    vent *= cav
    _paint(img, ..., vent, an.csf)
    for sd in (-1, 1):
        _paint_ellipsoid(img, g, (sd * (13 + 3 * an.vent) + an.falx_x, 27, 8), (3, 5, 3), w, 38.0, xb=xb, weight=vent)
    for i, b in enumerate(cx.bleeds):
        if b.subtype == "intraventricular":
            lesions[i] = _ivh(g, b, an, vents, vent, w)
            _paint(img, ..., lesions[i], b.density)


def _subarachnoid_blood(cx: _Canvas, csf_ext: np.ndarray) -> None:
    """Blood in the subarachnoid spaces replaces their CSF."""
    g, an, img, lesions = cx.g, cx.an, cx.img, cx.lesions
    for i, b in enumerate(cx.bleeds):  # blood in the subarachnoid spaces replaces their CSF
        if b.subtype != "subarachnoid":
            continue
        wgt = np.zeros(g.shape, F32)
        for c, sigma, amp in b.geom["blobs"]:
            s = g.box(np.asarray(c) - 3 * sigma, np.asarray(c) + 3 * sigma)
            if s is not None:
                Xs, Ys, Zs = g.coords(s, c)
                blob = F32(amp * 1.6) * np.exp(-(Xs * Xs + Ys * Ys + Zs * Zs) * F32(1 / (2 * sigma * sigma)))
                np.maximum(wgt[s], _clip01(blob), out=wgt[s])
        lesions[i] = wgt * csf_ext * F32(b.geom["fill"])
        img += lesions[i] * F32(b.density - an.csf)


def _sinuses_falx_calcifications(cx: _Canvas, z_cc: np.ndarray) -> None:
    """Dural venous sinuses (superior sagittal, transverse), the falx, calcifications, cavernous sinuses."""
    g, an, img, D, cav, floor, w, wf, xb, xm = cx.g, cx.an, cx.img, cx.D, cx.cav, cx.floor, cx.w, cx.wf, cx.xb, cx.xm
    s = g.box((-8, -100, -45), (8, 100, 90))
    if s is not None:
        Ds, xs = D[s], xm[s]
        sss = _ramp((F32(5.5) - Ds) / wf) * _ramp(Ds / wf) * _ramp((F32(3.2) - F32(0.45) * Ds - np.abs(xs)) / wf)
        _paint(img, s, sss * cav[s], an.venous)
        falx = _ramp((F32(0.45) - np.abs(xs)) / wf) * _ramp((g.Z[s] - z_cc[s] - F32(8)) / wf)
        falx *= _ramp((Ds - F32(1)) / wf)
        _paint(img, s, falx * cav[s], 50.0)
    if cx.zmin < -15:
        s = g.box((-70, 25, -50), (70, 100, -15))
        if s is not None:
            zts = F32(-30) - F32(0.08) * np.abs(g.X[s])
            width = np.where(g.X[s] < 0, F32(3.6), F32(2.8))
            ts = _ramp((width - np.abs(g.Z[s] - zts)) / wf) * _ramp((F32(5) - D[s]) / wf)
            ts *= _ramp((g.Y[s] - F32(30)) / wf)
            _paint(img, s, ts * cav[s], an.venous)
    for name, c, semi, hu in an.calcs:
        _paint_ellipsoid(img, g, (c[0] + (an.falx_x if name != "carotid" else 0), c[1], c[2]), semi, w, hu,
                         xb=None if name == "carotid" else xb)
    if cx.low:  # cavernous sinus and carotid soft tissue beside the sella
        for sd in (-1.0, 1.0):
            s, a = _ellipsoid(g, (sd * 17, -14, -34), (4, 7, 5), w)
            if s is not None:
                _paint(img, s, a * _ramp((floor[s] - g.Z[s] + F32(3)) / wf), 45.0)


def _intraparenchymal(cx: _Canvas, csf_ext: np.ndarray) -> None:
    """Intraparenchymal haematomas with their oedema rims."""
    g, img, cav, w, lesions, one = cx.g, cx.img, cx.cav, cx.w, cx.lesions, F32(1)
    for i, b in enumerate(cx.bleeds):
        if b.subtype == "intraparenchymal":
            lesions[i] = np.zeros(g.shape, F32)
            s, clot, oedema, value = _iph(g, b, w)
            if s is not None:
                brainish = cav[s] * (one - csf_ext[s])
                _paint(img, s, oedema * brainish, b.geom["oedema_hu"])
                clot *= cav[s]
                _paint(img, s, clot, value)
                lesions[i][s] = clot


def _extra_axial(cx: _Canvas, collections) -> None:
    """Subdural and epidural collections (with a swirl, a fracture line beside an epidural)."""
    g, an, img, D, t_skull, cav, wf, lesions = cx.g, cx.an, cx.img, cx.D, cx.t_skull, cx.cav, cx.wf, cx.lesions
    for i, s, t in collections:
        b = cx.bleeds[i]
        Ds = D[s]
        a = _ramp(Ds / wf) * _ramp((t - Ds) / wf) * cav[s]
        value = F32(b.density)
        if b.geom["swirl"]:
            u = b.geom["u"]
            pos = u * (_surface_radius(u, an.egg) - b.geom["t_max"] * b.geom["swirl_at"])
            Xs, Ys, Zs = g.coords(s, pos)
            value = value - F32(b.geom["swirl_hu"]) * np.exp(-(Xs * Xs + Ys * Ys + Zs * Zs) * F32(1 / 32))
        _paint(img, s, a, value)
        lesions[i] = np.zeros(g.shape, F32)
        lesions[i][s] = a
        if b.geom["fracture"]:
            n = b.geom["fracture_normal"] / np.linalg.norm(b.geom["fracture_normal"])
            Xs, Ys, Zs = g.coords(s)
            dist = np.abs(Xs * F32(n[0]) + Ys * F32(n[1]) + Zs * F32(n[2]))
            crack = _ramp((F32(0.5) - dist) / wf) * _ramp(-Ds / wf) * _ramp((Ds + t_skull[s]) / wf)
            _paint(img, s, crack * (t > 0), 45.0)
