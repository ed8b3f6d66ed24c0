"""Synthetic CT angiography of the head (``cta-head``), with or without a large-vessel occlusion.

What it models
--------------
A thin-slice axial CTA of the head in the arterial phase, as a scanner
reconstructs it (soft kernel, 0.625-1.25 mm slices, 512 x 512 over a
200-250 mm field of view, from the skull base to above the circle of Willis):

* the head as an analytic phantom in an anatomical frame (u toward the
  patient's left, v posterior, w superior; origin at the centre of the circle
  of Willis), placed in the scanner with a random shift and a small yaw,
  pitch and roll. Scalp, a two-table skull vault with diploe, the skull base
  (anterior fossa with the cribriform dip, sphenoid ridges, middle fossae,
  petrous ridges, sella turcica, dorsum sellae and clivus, posterior fossa),
  petrous pyramids, sphenoid body and sinus, ethmoid, mastoid and maxillary
  air, orbits (fat, globes, lenses), nasopharynx;
* the brain as cortex over white matter under a subarachnoid CSF layer that
  thickens with age, deep grey nuclei, lateral / third / fourth ventricles
  and temporal horns (larger with age), the suprasellar and quadrigeminal
  cisterns, the interhemispheric fissure, pineal and choroid-plexus
  calcifications (some studies);
* arteries as tubes along cubic splines through jittered control points,
  each in its CSF cistern (the sleeve: sylvian fissure for M1/M2, prepontine
  cistern for the basilar, ambient cistern for the PCAs): both ICAs from the
  petrous canal through the cavernous siphon to the terminus, ophthalmic
  arteries, A1 segments, the anterior communicating artery, A2 / pericallosal
  arteries, M1 (with anterior temporal branch and lenticulostriates), the
  superior and inferior M2 divisions with M3 branches to the cortex,
  posterior communicating arteries, vertebral arteries (PICA), basilar
  (AICA, SCA), P1 and P2. Common variants: absent/hypoplastic PCom, fetal
  PCA, hypoplastic A1, vertebral dominance, basilar tortuosity, M1 length,
  calcified plaque in the carotid siphons (more with age);
* venous contamination: superior sagittal, transverse, sigmoid and straight
  sinuses, vein of Galen, internal cerebral veins and cavernous sinuses, with
  an enhancement that varies with bolus timing;
* optional large-vessel occlusion (ICA terminus, M1 or proximal M2 -- the
  superior or inferior division -- on the left or the right): the contrast
  column stops abruptly at the thrombus (a non-enhancing tube of 40-70 HU
  in the cistern), the vessel beyond the thrombus and the trunks it feeds
  are faint or absent (0-25 % of the normal enhancement), and cortical
  branches fill weakly by leptomeningeal collaterals (5-50 %). With an ICA-T
  occlusion the ipsilateral A1 usually fills across the AComm.
* partial volume: every edge is the analytic profile of a Gaussian point
  spread (in-plane kernel blur, slice sensitivity profile and voxel size
  combined), including the reduced peak of vessels thinner than the blur;
  CT noise correlated over neighbouring pixels (a [1 2 1] kernel), larger in
  thin slices and at 100 kVp, and larger at the skull base.

Numbers and where they come from (approximate textbook values)
---------------------------------------------------------------
* Attenuation (HU): grey matter 37-45, white matter 25-32 (both ~3-5 HU
  higher after iodinated contrast), CSF 0-15, fat -80 to -100, soft tissue
  35-55, cortical bone of the tables 1300-1900, diploe 500-900, petrous
  bone 1700-2200, unenhanced blood and acute thrombus 40-70, vitreous ~10,
  lens ~110 (Hsieh, Computed Tomography, 3rd ed.; Osborn's Brain, 2nd ed.;
  Lev & Gonzalez on CTA and perfusion). Opacified arteries 250-450 HU (the
  ACR-ASNR-SPR CTA practice parameter aims above 250 HU), ~15 % more at
  100 kVp; dural sinuses 10-90 % of the arterial enhancement by timing.
* Calibres (diameters, mm): cervical/petrous ICA 5, supraclinoid ICA 4,
  M1 2.6-3.2, M2 ~2, M3 ~1.2, A1 ~2 (hypoplastic ~1), A2 ~1.8, basilar
  3.2-3.6, vertebral 2.6-3.6, P1/P2 ~2, PCom 0.8-2, SCA/AICA/PICA ~1,
  ophthalmic ~1.3, lenticulostriates ~0.8; superior sagittal and transverse
  sinuses 6-8 (Rhoton, Cranial Anatomy and Surgical Approaches; Osborn's
  Brain). Lengths: M1 14-30 mm, A1 ~13 mm; ICA termini ~28 mm apart, the
  basilar tip ~15 mm behind them (Rhoton).
* Head: inner table ~132 x 168 mm (width x length), skull 5-8 mm, scalp
  4-7 mm; ventricles and sulci enlarge with age (atrophy from ~40 years).
* Variants and frequencies: PCom absent or hypoplastic ~30 % per side, fetal
  PCA ~15 %, hypoplastic A1 ~10 % (Krabbe-Hartkamp et al., Radiology 1998);
  siphon calcification common over 60 years.
* Acquisition: 100 or 120 kVp, CTDIvol 25-60 mGy; noise 6-12 HU at 1 mm,
  scaled by 1/sqrt(slice thickness); in-plane PSF sigma 0.35-0.55 mm.

What it does NOT model
----------------------
Beam hardening and streaks (Hounsfield bar between the petrous bones),
metal, motion, cone-beam or helical artefacts, gantry tilt; real gyral and
sulcal anatomy (the brain is layered, not folded); the neck vessels and the
aortic arch (the coverage is the head only); aneurysms, stenoses, AVMs,
dissections, moyamoya, carotid-cavernous fistulae; infarct hypodensity,
haemorrhage, tumours; multiphase or perfusion imaging; venous occlusion. The
thrombus always sits at one place; tandem lesions, distal emboli, string
signs and the 'Carotid-T' / 'L' clot shapes beyond a short extension into
M1 are not drawn. Collateral filling is a single grade per study. The
localizer is a coarse (2 mm) lateral line integral of the same phantom with a
cartoon neck; the MIP series keeps the bone (no bone subtraction); the DLP is
only reported in the truth (no dose SR is written).
"""

from __future__ import annotations

import bisect
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from scipy import ndimage, special
from scipy.interpolate import make_interp_spline

from radtriage.synth.dicom import CtSeries, StudyIdentity, make_study, write_ct_series
from radtriage.synth.geometry import rotation
from radtriage.synth.noise import binomial_noise as _noise

SEGMENTS = ("ica_t", "m1", "m2")
SIDES = ("left", "right")
DIVISIONS = ("superior", "inferior")
SIGN = {"left": 1.0, "right": -1.0}  # anatomical u (and DICOM x, LPS) grows toward the patient's left

STUDY_DESCRIPTIONS = (
    "CTA HEAD",
    "CT ANGIO HEAD W CONTRAST",
    "CTA CIRCLE OF WILLIS",
    "CODE STROKE CTA HEAD",
    "CTA BRAIN STROKE PROTOCOL",
)
CONTRAST_AGENTS = ("IOHEXOL 350", "IOPAMIDOL 370", "IOMEPROL 350", "IOPROMIDE 370", "IODIXANOL 320")

HU_AIR = -1000.0
HU_BLOOD = 45.0  # unenhanced blood: a vessel without contrast
_CHUNK = 16  # slices rendered at a time (memory and cache)
_CLOT_HU = (40.0, 70.0)

# tissue look-up table over (rho^2 of the inner-table ellipsoid, height above the skull-base floor)
_D0, _D1, _DD = -60.0, 32.0, 0.1  # signed distance to the inner table, mm
_H0, _H1, _DH = -30.0, 20.0, 0.1  # height above the floor, mm
_QMAX, _DQ = 2.0, 0.002
_FL0, _FLN, _FLD = -200.0, 801, 0.5  # floor map over anatomical (u, v), mm
_FLOOR_TOP = -2.0


# --------------------------------------------------------------------------- geometry


@dataclass(frozen=True)
class Grid:
    """A voxel grid in patient coordinates (LPS), axial, rows along +y and columns along +x."""

    origin: tuple[float, float, float]  # (x, y, z) mm of voxel [0, 0, 0]
    spacing: tuple[float, float, float]  # (dz, dy, dx) mm
    shape: tuple[int, int, int]  # (nz, ny, nx)

    def axes(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """World z, y, x of every index along each axis (float32)."""
        (nz, ny, nx), (dz, dy, dx), (x0, y0, z0) = self.shape, self.spacing, self.origin
        return (
            (z0 + dz * np.arange(nz)).astype(np.float32),
            (y0 + dy * np.arange(ny)).astype(np.float32),
            (x0 + dx * np.arange(nx)).astype(np.float32),
        )

    def voxel(self, p: np.ndarray) -> np.ndarray:
        """Continuous (k, j, i) index of world point(s) (x, y, z)."""
        p = np.asarray(p, float)
        (dz, dy, dx), (x0, y0, z0) = self.spacing, self.origin
        return np.stack([(p[..., 2] - z0) / dz, (p[..., 1] - y0) / dy, (p[..., 0] - x0) / dx], axis=-1)

    def index_range(self, lo: np.ndarray, hi: np.ndarray) -> tuple[int, int, int, int, int, int]:
        """Voxel index ranges [k0, k1) x [j0, j1) x [i0, i1) covering world box lo..hi (x, y, z)."""
        a, b = self.voxel(lo), self.voxel(hi)
        out = []
        for axis in range(3):
            n = self.shape[axis]
            out += [max(0, math.ceil(min(a[axis], b[axis]))), min(n, math.floor(max(a[axis], b[axis])) + 1)]
        return tuple(out)  # type: ignore[return-value]


@dataclass
class _Blob:
    """An ellipsoid in the anatomical frame painted with a value, limited to a region."""

    centre: tuple[float, float, float]
    radii: tuple[float, float, float]
    value: float
    region: str = "any"  # any | cavity (above the skull-base floor) | below (under it)
    axes: np.ndarray | None = None  # rows: the ellipsoid's axes in the anatomical frame
    mode: str = "paint"  # paint | max


@dataclass
class _Head:
    """Everything drawn about one head: placement, skull, brain, values."""

    centre: np.ndarray  # world (x, y, z) of the anatomical origin
    rot: np.ndarray  # columns: the anatomical axes u, v, w in world coordinates
    A: float
    B: float
    Cu: float
    Cl: float
    v0: float
    w0: float
    reff: float
    t_skull: float
    t_scalp: float
    t_base: float
    t_sas: float
    t_cortex: float
    floor: dict[str, float]
    hu: dict[str, float]
    atrophy: float
    blobs: list[_Blob] = field(default_factory=list)

    def to_world(self, a: np.ndarray) -> np.ndarray:
        return self.centre + np.asarray(a, float) @ self.rot.T

    def lin(self, axis: int, scale: float, offset: float, zs, ys, xs) -> np.ndarray:
        """(anatomical coordinate ``axis`` + offset) * scale on a grid box, float32 (nz, ny, nx)."""
        col = self.rot[:, axis] * scale
        const = (offset - float(self.rot[:, axis] @ self.centre)) * scale
        plane = float(col[0]) * xs[None, :] + float(col[1]) * ys[:, None]
        return plane[None, :, :] + (float(col[2]) * zs + np.float32(const))[:, None, None]


def _sig(x):
    return 0.5 * (1.0 + np.tanh(x))


def _floor(f: dict[str, float], u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Height w of the floor of the cranial cavity (the skull base) over (u, v), mm."""
    au = np.abs(u)
    orbit_roof = f["orbit"] * np.exp(-(((au - 30.0) / 12.0) ** 2))
    f_ant = f["ant"] + 0.1 * au + orbit_roof - f["crib"] * np.exp(-((u / 6.0) ** 2))
    f_mid = f["mid"] + 0.01 * (au - 38.0) ** 2
    f_post = f["post"] + 0.006 * u**2 + 0.004 * (v - 45.0) ** 2
    w_ant = _sig((f["sr"] - 0.27 * au - v) / 1.5)  # in front of the sphenoid ridge
    dperp = (au - 15.0) * -0.526 + (v - 6.0) * 0.85  # behind the petrous ridge when > 0
    along = (au - 15.0) * 0.85 + (v - 6.0) * 0.526
    w_post = _sig(dperp / 1.5)
    lateral = w_ant * f_ant + (1 - w_ant) * ((1 - w_post) * f_mid + w_post * f_post)
    ridge = f["ridge"] - 1.2 * np.abs(dperp) - 40.0 * (1 - _sig(along / 3.0) * _sig((50.0 - along) / 3.0))
    lateral = np.maximum(lateral, ridge)
    s1, s2 = _sig((v + 14.0) / 1.0), _sig((v - 5.0) / 1.0)
    sella = f["planum"] - f["sella"] * np.sqrt(np.clip(1 - ((v + 4.5) / 9.5) ** 2, 0, 1))
    clivus = np.maximum(f["dorsum"] - 1.6 * (v - 5.0), f_post)
    central = f["planum"] * (1 - s1) + sella * s1 * (1 - s2) + clivus * s2
    w_c = _sig((11.0 - au) / 1.5)
    return np.minimum(lateral * (1 - w_c) + central * w_c, _FLOOR_TOP)


def _draw_head(rng: np.random.Generator, age: float) -> _Head:
    atrophy = float(np.clip((age - 40.0) / 50.0, 0, 1) * rng.uniform(0.6, 1.3))
    size = rng.uniform(0.92, 1.08)
    A, B = 66.0 * size * rng.uniform(0.96, 1.04), 84.0 * size * rng.uniform(0.96, 1.04)
    Cu, Cl = 78.0 * size * rng.uniform(0.95, 1.05), 100.0 * size
    floor = {
        "ant": rng.uniform(-10, -6), "orbit": rng.uniform(2, 5), "crib": rng.uniform(5, 9),
        "mid": rng.uniform(-30, -25), "post": rng.uniform(-46, -40), "ridge": rng.uniform(-18, -13),
        "sr": rng.uniform(-14, -10), "planum": rng.uniform(-10, -7), "sella": rng.uniform(5, 8),
        "dorsum": rng.uniform(-7, -3),
    }
    gm = rng.uniform(38, 45)
    hu = {
        "gm": gm, "wm": gm - rng.uniform(8, 13), "csf": rng.uniform(2, 12), "soft": rng.uniform(38, 55),
        "scalp": rng.uniform(5, 35), "cortical": rng.uniform(1300, 1900), "diploe": rng.uniform(500, 900),
        "base": rng.uniform(900, 1400), "petrous": rng.uniform(1700, 2200),
    }
    head = _Head(
        centre=np.zeros(3), rot=np.eye(3), A=A, B=B, Cu=Cu, Cl=Cl, v0=8.0 * size, w0=10.0 * size,
        reff=0.5 * (A + B), t_skull=rng.uniform(5, 8), t_scalp=rng.uniform(4, 7), t_base=rng.uniform(2.5, 4.5),
        t_sas=0.8 + 2.5 * atrophy, t_cortex=rng.uniform(2.5, 3.5), floor=floor, hu=hu, atrophy=atrophy,
    )
    head.blobs = _blobs(rng, head)
    return head


def _blobs(rng: np.random.Generator, h: _Head) -> list[_Blob]:
    hu, vs = h.hu, (0.8 + 0.9 * h.atrophy) * rng.uniform(0.85, 1.15)
    csf, gm = hu["csf"], hu["gm"]
    out: list[_Blob] = []
    ridge = np.array([[0.85, 0.526, 0.0], [-0.526, 0.85, 0.0], [0.0, 0.0, 1.0]])
    clivus = np.array([[1.0, 0.0, 0.0], [0.0, 0.53, -0.85], [0.0, 0.85, 0.53]])
    out.append(_Blob((0, 16, -28), (11, 22, 8), hu["base"] * 0.8, "below", clivus))
    out.append(_Blob((0, -10, -26), (14, 13, 11), hu["base"] * 0.8, "below"))
    pneu = rng.uniform(0.6, 1.0)
    out.append(_Blob((0, -10, -26), (11 * pneu, 10 * pneu, 8 * pneu), -950.0, "below"))
    out.append(_Blob((0, -52, -22), (11, 18, 11), rng.uniform(-750, -550), "below"))
    out.append(_Blob((0, -22, -52), (11, 9, 7), -1000.0, "below"))
    for s in (1.0, -1.0):
        axes = ridge * np.array([s, 1.0, 1.0])
        out.append(_Blob((s * 42, 25, -31), (15, 12, 11), hu["petrous"], "below", axes))
        out.append(_Blob((s * 26, 13, -29), (14, 7, 8), hu["petrous"], "below", axes))
        if rng.random() < 0.9:
            out.append(_Blob((s * 44, 28, -33), (9, 11, 10), rng.uniform(-650, -400), "below"))
        out.append(_Blob((s * 28, -52, -50), (14, 16, 14), -950.0, "below"))
        out.append(_Blob((s * 31, -62, -22), (17, 20, 16), rng.uniform(-100, -75), "below"))
        out.append(_Blob((s * 32, -70, -22), (12, 12, 12), rng.uniform(5, 15)))
        out.append(_Blob((s * 32, -81, -22), (4, 1.8, 4), rng.uniform(95, 125)))
    out.append(_Blob((0, -6, -12), (6, 4.5, 3.5), rng.uniform(70, 120)))  # pituitary
    for s in (1.0, -1.0):  # deep grey, then ventricles over them
        out.append(_Blob((s * 21, -1, 9), (6, 12, 9), gm + 1.0, "cavity"))
        out.append(_Blob((s * 10, 20, 10), (8, 11, 9), gm - 1.0, "cavity"))
        out.append(_Blob((s * 13, -10, 18), (5, 7, 8), gm, "cavity"))
    for s in (1.0, -1.0):
        out.append(_Blob((s * 11, 6, 24), (6 * vs, 26, 7 * vs), csf, "cavity"))
        out.append(_Blob((s * 22, 32, 14), (6 * vs, 11, 7 * vs), csf, "cavity"))
        out.append(_Blob((s * 29, 4, -12), (2.5 * vs, 11, 3 * vs), csf, "cavity"))
    cis = 1.0 + 0.3 * h.atrophy
    out += [
        _Blob((0, 10, 6), (2.0 * vs, 10, 7), csf, "cavity"),
        _Blob((0, 42, -30), (5, 3 * vs, 6), csf, "cavity"),
        _Blob((0, -4, 1), (15 * cis, 13 * cis, 5 * cis), csf, "cavity"),
        _Blob((0, 38, 4), (8, 4 * cis, 5), csf, "cavity"),
    ]
    fis = 0.9 + 0.8 * h.atrophy
    out += [
        _Blob((0, -45, 15), (fis, 30, 20), csf, "cavity"),
        _Blob((0, 5, 62), (fis, 80, 28), csf, "cavity"),
        _Blob((0, 60, 20), (fis, 25, 18), csf, "cavity"),
    ]
    if rng.random() < 0.55:
        r = rng.uniform(1.5, 3.0)
        out.append(_Blob((0, 30, 14), (r, r, r), rng.uniform(150, 500), "cavity"))
    for s in (1.0, -1.0):
        if rng.random() < 0.4:
            r = rng.uniform(1.5, 2.5)
            out.append(_Blob((s * 22, 32, 16), (r, r * 1.3, r), rng.uniform(80, 220), "cavity"))
    return out


def _neck(h: _Head) -> list[_Blob]:
    """Neck and cervical spine, below the CTA coverage (for the localizer)."""
    return [_Blob((0, 15, -120), (55, 55, 75), h.hu["soft"], "any", None, "max"),
            _Blob((0, 35, -115), (9, 9, 70), h.hu["base"], "any", None, "max")]


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


def _arteries(rng: np.random.Generator, h: _Head) -> dict[str, _Vessel]:
    """The circle of Willis and its branches, both sides, with common variants."""
    k = rng.uniform(0.92, 1.08)  # overall calibre
    sc = rng.uniform(0.92, 1.08)  # overall size of the arterial tree
    sle = 1.0 + 0.6 * h.atrophy
    vs: dict[str, _Vessel] = {}

    def add(v: _Vessel, attach_at=None):
        if v.parent is not None:
            parent = vs[v.parent]
            v.attach = parent.length if attach_at is None else parent.nearest(attach_at)
        vs[v.name] = v
        return v

    def branch_start(parent: str, p) -> np.ndarray:
        par = vs[parent]
        return par.at(par.nearest(p))

    def mirror(pts, s):
        pts = np.array(pts, float) * sc
        pts[:, 0] *= s
        return pts

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

    # internal carotid arteries and the anterior circulation
    for side, s in SIGN.items():
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
        if pcom_r[side] > 0:
            p0 = branch_start("ica" + sfx, mirror([[13, -6, 0]], s)[0])
            end = vs["p1" + sfx].pts[-1]
            add(_Vessel("pcom" + sfx, [p0, *mirror([[11, 0, -1]], s) + rng.normal(0, 1, 3), end],
                        pcom_r[side] * k, 1.0 * sle, parent="ica" + sfx), p0)
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
    acomm = np.array([vs["a1_l"].pts[-1], vs["a1_r"].pts[-1]])
    add(_Vessel("acomm", [acomm[0], acomm.mean(0) + rng.normal(0, 0.5, 3), acomm[1]], 0.7 * k, 1.0 * sle))
    for side, s in SIGN.items():
        sfx = "_" + side[0]
        pts = mirror([[1.2, -19, 7], [1.8, -25, 14], [2, -33, 25], [2, -35, 38], [2, -26, 50], [2, -10, 57],
                      [2, 10, 58]], s)
        pts[0] = vs["a1" + sfx].pts[-1]
        add(_Vessel("a2" + sfx, _jitter(rng, pts, 1.0), np.linspace(0.95, 0.7, 7) * k, 1.2 * sle, parent="acomm"))
    return vs


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


# --------------------------------------------------------------------------- rendering


@dataclass
class _Segment:
    a: np.ndarray
    ab: np.ndarray
    l2: float
    ra: float
    dr: float
    sleeve: float
    hu: float
    pv: float  # peak partial-volume factor for this calibre
    box: tuple[int, int, int, int, int, int]


def _breaks(v: _Vessel, tol: float = 0.1, h_min: float = 1.0, h_max: float = 6.0) -> np.ndarray:
    """Arc lengths cutting a vessel into chords that stay within ``tol`` mm of the curve."""
    seg = np.diff(v.pts, axis=0)
    tang = seg / np.maximum(np.linalg.norm(seg, axis=1, keepdims=True), 1e-9)
    turn = np.arccos(np.clip((tang[1:] * tang[:-1]).sum(axis=1), -1.0, 1.0))
    kappa = np.concatenate([[0.0], turn / np.maximum(np.diff(v.s)[1:], 1e-9), [0.0]])
    allowed = np.clip(np.sqrt(8 * tol / np.maximum(kappa, 1e-9)), h_min, h_max)
    window = int(h_max / max(float(np.diff(v.s).mean()), 1e-3)) + 1
    allowed = ndimage.minimum_filter1d(allowed, window, origin=-(window // 2), mode="nearest").tolist()
    arc = v.s.tolist()
    out, i = [0.0], 0
    while arc[i] < v.length - 1e-6:
        nxt = arc[i] + allowed[i]
        i = min(max(bisect.bisect_right(arc, nxt) - 1, i + 1), len(arc) - 1)
        out.append(arc[i])
    if v.clot is not None:
        out += [c for c in v.clot if 0 < c < v.length]
    return np.unique(np.round(np.asarray(out), 6))


def _segments(vessels: list[_Vessel], head: _Head, grid: Grid, sigma: float, hu_of) -> list[_Segment]:
    """Cut every vessel into straight pieces (split at the thrombus ends) that touch the grid."""
    out = []
    shape = np.array(grid.shape)
    for v in vessels:
        s = _breaks(v)
        pts = head.to_world(np.stack([np.interp(s, v.s, v.pts[:, i]) for i in range(3)], axis=1))
        r, sl = np.interp(s, v.s, v.r), np.interp(s, v.s, v.sl)
        a, b = pts[:-1], pts[1:]
        pad = (np.maximum(r[:-1], r[1:]) + np.maximum(sl[:-1], sl[1:]) + 2.8 * sigma)[:, None]
        lo = np.maximum(np.ceil(grid.voxel(np.minimum(a, b) - pad)), 0).astype(int)
        hi = np.minimum(np.floor(grid.voxel(np.maximum(a, b) + pad)) + 1, shape).astype(int)
        for n in np.nonzero((lo < hi).all(axis=1))[0]:
            ra, rb = float(r[n]), float(r[n + 1])
            rm = 0.5 * (ra + rb)
            pv = (1.0 - math.exp(-(rm**2) / (2 * sigma**2))) / max(float(special.ndtr(rm / sigma)), 1e-6)
            ab = b[n] - a[n]
            box = (lo[n, 0], hi[n, 0], lo[n, 1], hi[n, 1], lo[n, 2], hi[n, 2])
            out.append(_Segment(a[n].astype(np.float32), ab.astype(np.float32), float(ab @ ab), ra, rb - ra,
                                float(0.5 * (sl[n] + sl[n + 1])), hu_of(v, 0.5 * (s[n] + s[n + 1])), pv,
                                tuple(int(x) for x in box)))
    return out


def _lut(head: _Head, sigma: float) -> np.ndarray:
    """Tissue value over (rho^2, height above floor), blurred by the point spread."""
    d = np.arange(_D0, _D1, _DD)[:, None]
    hgt = np.arange(_H0, _H1 + _DH / 2, _DH)[None, :]
    hu = head.hu
    dist = np.maximum(d, -hgt)  # signed distance to the cavity wall
    brain = np.where(dist > -head.t_sas, hu["csf"], np.where(dist > -head.t_sas - head.t_cortex, hu["gm"], hu["wm"]))
    x = d / head.t_skull
    vault = hu["cortical"] - (hu["cortical"] - hu["diploe"]) * np.exp(-(((x - 0.5) / 0.22) ** 2))
    bone = np.where(d >= 0, vault, hu["base"])
    outside = np.where(d < head.t_skull,
                       np.where((d >= 0) | (hgt >= -head.t_base), bone, hu["soft"]),
                       np.where(d < head.t_skull + head.t_scalp, hu["scalp"], HU_AIR))
    table = np.where(dist < 0, brain, outside).astype(np.float32)
    table = ndimage.gaussian_filter(table, sigma / _DD, mode="nearest")
    q = np.arange(0.0, _QMAX, _DQ)
    rows = np.clip(np.rint(((np.sqrt(q) - 1.0) * head.reff - _D0) / _DD), 0, table.shape[0] - 1).astype(int)
    return np.ascontiguousarray(table[rows])


def _paint_blob(out: np.ndarray, head: _Head, b: _Blob, grid: Grid, axes, k0: int, floor_map, sigma: float):
    R = head.rot if b.axes is None else head.rot @ np.asarray(b.axes).T  # columns: blob axes in world
    half = np.sqrt(((R * np.asarray(b.radii)) ** 2).sum(axis=1)) + 2 * sigma
    c = head.to_world(b.centre)
    kz0, kz1, j0, j1, i0, i1 = grid.index_range(c - half, c + half)
    kz0, kz1 = max(kz0, k0), min(kz1, k0 + out.shape[0])
    if kz0 >= kz1 or j0 >= j1 or i0 >= i1:
        return
    zs, ys, xs = axes[0][kz0:kz1], axes[1][j0:j1], axes[2][i0:i1]
    dz = zs - np.float32(c[2])
    dy, dx = ys - np.float32(c[1]), xs - np.float32(c[0])
    rho2 = grad2 = None
    for n in range(3):
        col = R[:, n] / b.radii[n]
        e = (float(col[0]) * dx[None, :] + float(col[1]) * dy[:, None])[None] + (float(col[2]) * dz)[:, None, None]
        e2 = e * e
        rho2 = e2.copy() if rho2 is None else rho2 + e2
        e2 *= np.float32(1.0 / b.radii[n] ** 2)
        grad2 = e2 if grad2 is None else grad2 + e2
    # first-order distance to the surface: (rho^2 - 1) / |grad rho^2|
    dist = (rho2 - 1.0) / (2.0 * np.sqrt(grad2) + 1e-6)
    alpha = np.clip(0.5 - dist * np.float32(1.0 / (2.5 * sigma)), 0.0, 1.0)
    if b.region != "any":
        hb = _height(head, floor_map, zs, ys, xs)
        if b.region == "cavity":
            alpha *= np.clip(0.5 + hb / (2.5 * sigma), 0.0, 1.0)
        else:
            alpha *= np.clip(0.5 + (-hb - 1.5) / (2.5 * sigma), 0.0, 1.0)
    view = out[kz0 - k0:kz1 - k0, j0:j1, i0:i1]
    if b.mode == "max":
        np.maximum(view, HU_AIR + alpha * (b.value - HU_AIR), out=view)
    else:
        view += alpha * (np.float32(b.value) - view)


def _height(head: _Head, floor_map: np.ndarray, zs, ys, xs) -> np.ndarray:
    """Height above the skull-base floor (anatomical w minus floor(u, v)) on a grid box."""
    iu = head.lin(0, 1.0 / _FLD, -_FL0 + 0.5 * _FLD, zs, ys, xs)
    iv = head.lin(1, 1.0 / _FLD, -_FL0 + 0.5 * _FLD, zs, ys, xs)
    np.clip(iu, 0, _FLN - 1, out=iu)
    np.clip(iv, 0, _FLN - 1, out=iv)
    flat = iu.astype(np.int32)
    flat *= _FLN
    flat += iv.astype(np.int32)
    w = head.lin(2, 1.0, 0.0, zs, ys, xs)
    w -= floor_map.take(flat)
    return w


def _tissue(head: _Head, lut: np.ndarray, floor_map: np.ndarray, zs, ys, xs) -> np.ndarray:
    """Head tissue on a grid box from the look-up table: (rho^2, height above the floor)."""
    nh = lut.shape[1]
    # rho^2 of the inner-table ellipsoid, asymmetric in w
    U = head.lin(0, 1.0 / head.A, 0.0, zs, ys, xs)
    V = head.lin(1, 1.0 / head.B, -head.v0, zs, ys, xs)
    W = head.lin(2, 1.0, -head.w0, zs, ys, xs)
    W *= np.where(W > 0, np.float32(1.0 / head.Cu), np.float32(1.0 / head.Cl))
    U *= U
    V *= V
    W *= W
    U += V
    U += W
    del V, W
    U *= np.float32(1.0 / _DQ)
    np.minimum(U, lut.shape[0] - 1, out=U)
    iq = U.astype(np.int32)
    del U
    corners = np.array([[x, y, z] for x in (xs[0], xs[-1]) for y in (ys[0], ys[-1]) for z in (zs[0], zs[-1])], float)
    w_min = float(((corners - head.centre) @ head.rot[:, 2]).min())
    if w_min - float(floor_map.max()) >= _H1:  # far above the skull base
        return lut[:, -1].take(iq)
    hb = _height(head, floor_map, zs, ys, xs)
    hb -= np.float32(_H0 - 0.5 * _DH)
    hb *= np.float32(1.0 / _DH)
    np.clip(hb, 0, nh - 1, out=hb)
    iq *= nh
    iq += hb.astype(np.int32)
    del hb
    return lut.take(iq)


def _render(head: _Head, grid: Grid, sigma: float, segments: list[_Segment] | None,
            noise: tuple[np.random.Generator, np.ndarray] | None, extra: list[_Blob] = ()) -> np.ndarray:
    """The volume in HU (int16): tissue, blobs, vessels with their cisterns, noise."""
    lut = _lut(head, sigma)
    uu = np.arange(_FLN) * _FLD + _FL0
    floor_map = _floor(head.floor, uu[:, None], uu[None, :]).astype(np.float32)
    zs_all, ys, xs = axes = grid.axes()
    nz = grid.shape[0]
    # the head's box in the axial plane (outer surface of the scalp, with margin)
    m = head.t_skull + head.t_scalp + 4 * sigma + 2.0
    half = np.sqrt(((head.rot * np.array([head.A + m, head.B + m, max(head.Cu, head.Cl) + m])) ** 2).sum(axis=1))
    c = head.to_world([0.0, head.v0, head.w0])
    _, _, j0, j1, i0, i1 = grid.index_range(c - half, c + half)
    result = np.empty(grid.shape, np.int16)
    csf = np.float32(head.hu["csf"])
    seg_k0 = np.array([s.box[0] for s in segments or []], int)
    seg_k1 = np.array([s.box[1] for s in segments or []], int)
    for k0 in range(0, nz, _CHUNK):
        k1 = min(nz, k0 + _CHUNK)
        zs = zs_all[k0:k1]
        out = np.full((k1 - k0, *grid.shape[1:]), HU_AIR, np.float32)
        if j0 < j1 and i0 < i1:
            out[:, j0:j1, i0:i1] = _tissue(head, lut, floor_map, zs, ys[j0:j1], xs[i0:i1])
        for b in (*head.blobs, *extra):
            _paint_blob(out, head, b, grid, axes, k0, floor_map, sigma)
        if segments:
            _draw_vessels(out, segments, seg_k0, seg_k1, k0, k1, axes, sigma, csf)
        if noise is not None:
            rng, sd = noise
            a = _noise(rng, out.shape)
            a *= sd[k0:k1].astype(np.float32)[:, None, None]
            out += a
            del a
        np.rint(out, out=out)
        np.clip(out, -1024, 3071, out=out)
        result[k0:k1] = out
    return result


def _draw_vessels(out, segments, seg_k0, seg_k1, k0, k1, axes, sigma, csf):
    zs, ys, xs = axes
    shape = out.shape
    acc = np.zeros(shape, np.float32)  # vessel weight (partial volume fraction)
    val = np.zeros(shape, np.float32)  # its value
    slv = np.zeros(shape, np.float32)  # CSF sleeve weight
    inv = np.float32(1.0 / sigma)
    for n in np.nonzero((seg_k0 < k1) & (seg_k1 > k0))[0]:
        g = segments[n]
        a0, a1, j0, j1, i0, i1 = g.box
        a0, a1 = max(a0, k0), min(a1, k1)
        qz, qy, qx = zs[a0:a1] - g.a[2], ys[j0:j1] - g.a[1], xs[i0:i1] - g.a[0]
        dot = (qx * g.ab[0])[None, None, :] + (qy * g.ab[1])[None, :, None] + (qz * g.ab[2])[:, None, None]
        n2 = (qx * qx)[None, None, :] + (qy * qy)[None, :, None] + (qz * qz)[:, None, None]
        if g.l2 > 1e-9:
            t = dot * np.float32(1.0 / g.l2)
            np.clip(t, 0, 1, out=t)
            d2 = n2 - t * (2 * dot - t * np.float32(g.l2))
        else:
            t = np.zeros_like(dot)
            d2 = n2
        np.maximum(d2, 0, out=d2)
        dist = np.sqrt(d2)
        m = np.float32(g.ra) + np.float32(g.dr) * t - dist
        w = special.ndtr(m * inv) * np.float32(g.pv)
        sub = (slice(a0 - k0, a1 - k0), slice(j0, j1), slice(i0, i1))
        av, vv = acc[sub], val[sub]
        upd = w > av
        np.putmask(vv, upd, np.float32(g.hu))
        np.maximum(av, w, out=av)
        if g.sleeve > 0:
            sv = slv[sub]
            np.maximum(sv, special.ndtr((m + np.float32(g.sleeve)) * inv), out=sv)
    idx = np.flatnonzero((acc > 1e-3) | (slv > 1e-3))
    flat = out.reshape(-1)
    o = flat[idx]
    s = slv.reshape(-1)[idx]
    o += s * (csf - o)
    a = acc.reshape(-1)[idx]
    o += a * (val.reshape(-1)[idx] - o)
    flat[idx] = o


# --------------------------------------------------------------------------- public API


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


@dataclass(frozen=True)
class _Acquisition:
    thickness: float
    spacing: float
    fov: float
    coverage: float
    bottom: float  # anatomical height of the first slice, mm
    kvp: float
    sigma: float  # combined point-spread sigma, mm
    arterial: float
    venous: float
    noise_sd: float
    base_boost: float  # extra noise at the skull base


def _draw_acquisition(rng: np.random.Generator, matrix: int, fov_mm, slice_thickness, slice_spacing, coverage_mm,
                      kvp) -> _Acquisition:
    """Scanner and bolus; every number is drawn (in a fixed order) even when an option overrides it."""
    d_thk = float(rng.choice([0.625, 0.75, 0.8, 1.0, 1.25], p=[0.3, 0.2, 0.1, 0.3, 0.1]))
    d_overlap = rng.random() < 0.3
    d_fov, d_cov, d_bottom = rng.uniform(210, 250), rng.uniform(60, 100), rng.uniform(-40, -20)
    d_kvp = 100.0 if rng.random() < 0.55 else 120.0
    psf, art, venous_f, noise_ref, base_boost = (rng.uniform(0.35, 0.55), rng.uniform(250, 400), rng.uniform(0.1, 0.9),
                                                 rng.uniform(6, 12), rng.uniform(0.3, 0.8))
    thk = float(slice_thickness or d_thk)
    overlap = d_overlap and thk >= 1.0 and slice_thickness is None  # 1.0/0.8, 1.25/1.0 reconstructions
    dz = float(slice_spacing or (round(thk * 0.8, 3) if overlap else thk))
    fov = float(fov_mm or d_fov)
    cov = float(coverage_mm or d_cov)
    kv = float(kvp or d_kvp)
    px = fov / matrix
    # in-plane kernel blur and pixel size; slice sensitivity profile (FWHM = thickness) and slice interval
    sigma = math.sqrt((2 * (psf**2 + px**2 / 12.0) + (thk / 2.355) ** 2 + dz**2 / 12.0) / 3.0)
    low_kv = 1.15 if kv < 110 else 1.0  # iodine attenuates more, and noise is higher, at 100 kVp
    art *= low_kv
    return _Acquisition(
        thickness=thk, spacing=dz, fov=fov, coverage=cov,
        bottom=d_bottom if coverage_mm is None or coverage_mm >= 60 else -0.4 * cov,
        kvp=kv, sigma=sigma, arterial=art, venous=HU_BLOOD + venous_f * (art - HU_BLOOD),
        noise_sd=noise_ref * low_kv / math.sqrt(thk), base_boost=base_boost,
    )


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


def sample(
    rng: np.random.Generator,
    *,
    lvo: bool | None = None,
    side: str | None = None,
    segment: str | None = None,
    division: str | None = None,
    p_positive: float = 0.5,
    matrix: int = 512,
    fov_mm: float | None = None,
    slice_thickness: float | None = None,
    slice_spacing: float | None = None,
    coverage_mm: float | None = None,
    age_years: float | None = None,
    kvp: float | None = None,
    noise: bool = True,
) -> CtaHeadSample:
    """Draw one CTA head (no I/O).

    ``lvo`` forces a positive/negative study (default: positive with
    probability ``p_positive``); ``side`` ('left'/'right'), ``segment``
    ('ica_t'/'m1'/'m2') and ``division`` ('superior'/'inferior', for M2)
    force the occlusion. ``matrix``, ``fov_mm``, ``slice_thickness``,
    ``slice_spacing`` and ``coverage_mm`` set the grid (defaults drawn as a
    scanner would: 512 over 210-250 mm, 0.625-1.25 mm, 60-100 mm); with a
    given ``slice_thickness`` the slice interval equals it unless
    ``slice_spacing`` says otherwise. Every random number is drawn whether or
    not it is used, so the same seed with ``lvo=True`` and ``lvo=False`` gives
    the same head, vessels and noise, differing only along the occluded
    vessels.
    """
    if side is not None and side not in SIDES:
        raise ValueError(f"side must be one of {SIDES}")
    if segment is not None and segment not in SEGMENTS:
        raise ValueError(f"segment must be one of {SEGMENTS}")
    if division is not None and division not in DIVISIONS:
        raise ValueError(f"division must be one of {DIVISIONS}")
    d_age = rng.uniform(45, 90)
    age = float(d_age if age_years is None else age_years)
    acq = _draw_acquisition(rng, matrix, fov_mm, slice_thickness, slice_spacing, coverage_mm, kvp)
    # placement in the scanner
    yaw, pitch, roll = np.radians([rng.uniform(-6, 6), rng.uniform(-8, 8), rng.uniform(-4, 4)])
    head_xy = np.array([rng.uniform(-6, 6), rng.uniform(-6, 6)])
    table_z = rng.uniform(-160, 40)
    fov_c = np.array([rng.uniform(-3, 3), rng.uniform(-3, 3)])
    # anatomy
    head = _draw_head(rng, age)
    head.rot = rotation(float(yaw), float(pitch), float(roll))
    head.centre = np.array([head_xy[0], head_xy[1] - head.v0, table_z])
    vessels = _arteries(rng, head)
    veins = _veins(rng, head)
    calcs = _calcifications(rng, vessels, age)
    # the occlusion
    d_pos = rng.random() < p_positive
    d_side = SIDES[int(rng.integers(2))]
    d_seg = SEGMENTS[int(rng.choice(3, p=[0.25, 0.5, 0.25]))]
    d_div = DIVISIONS[int(rng.integers(2))]
    u = rng.random(4)
    f_prox, f_col = rng.uniform(0.0, 0.25), rng.uniform(0.05, 0.5)
    a1_fill = rng.uniform(0.6, 0.95) if rng.random() < 0.7 else rng.uniform(0.0, 0.25)
    clot_hu = rng.uniform(*_CLOT_HU)
    positive = d_pos if lvo is None else bool(lvo)
    occ_side, occ_seg, occ_div = side or d_side, segment or d_seg, division or d_div
    occ = _occlude(vessels, occ_side, occ_seg, occ_div, u, f_prox, f_col, a1_fill) if positive else None
    # the grid, and the picture
    px = acq.fov / matrix
    x0, y0 = fov_c - acq.fov / 2 + px / 2
    grid = Grid((float(x0), float(y0), float(head.centre[2] + acq.bottom)), (acq.spacing, px, px),
                (int(round(acq.coverage / acq.spacing)) + 1, matrix, matrix))
    w_slice = (grid.axes()[0] - head.centre[2]) * head.rot[2, 2]
    sd = acq.noise_sd * (1.0 + acq.base_boost * np.exp(-(((w_slice + 25.0) / 12.0) ** 2)))

    def hu_of(v: _Vessel, s: float) -> float:
        if v.kind == "calc":
            return v.value
        if v.kind == "vein":
            return acq.venous
        f = v.factor(s)
        return clot_hu if f < 0 else HU_BLOOD + f * (acq.arterial * v.gain - HU_BLOOD)

    segs = _segments([*vessels.values(), *veins.values(), *calcs], head, grid, acq.sigma, hu_of)
    hu = _render(head, grid, acq.sigma, segs, (rng, sd) if noise else None)

    truth: dict[str, Any] = {
        "lvo": positive,
        "side": occ_side if positive else None,
        "segment": occ_seg if positive else None,
        "m2_division": occ_div if positive and occ_seg == "m2" else None,
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
        "head_rotation_deg": [round(float(np.degrees(a)), 2) for a in (yaw, pitch, roll)],
    }
    if occ is not None:
        v: _Vessel = occ["vessel"]
        truth.update(
            occlusion_point=_point(grid, head, v.at(occ["s_occ"])),
            clot_point=_point(grid, head, occ["clot_point"]),
            clot_end=_point(grid, head, occ["clot_end"]),
            patent_point=_point(grid, head, occ["patent_point"]),
            clot_length_mm=round(float(occ["clot_len"]), 2),
            clot_hu=round(clot_hu, 1),
            collateral_fill=round(f_col, 3),
            affected_vessels=sorted({_vessel_label(n) for n in occ["affected"]}),
        )
    return CtaHeadSample(hu, grid.spacing, grid.origin, acq.thickness, truth, head)


_LABELS = {"ica": "ICA", "m1": "M1", "m2s": "M2 superior", "m2i": "M2 inferior", "a1": "A1",
           "ata": "anterior temporal", "lsa": "lenticulostriate", "m3s": "M3 superior", "m3i": "M3 inferior"}


def _vessel_label(name: str) -> str:
    """'m3s1_l' -> 'left M3 superior'."""
    base, side = name.rsplit("_", 1)
    key = base if base in _LABELS else base.rstrip("0123456789")  # numbered branches: lsa0, m3s1
    return f"{'left' if side == 'l' else 'right'} {_LABELS.get(key, key.upper())}"


# --------------------------------------------------------------------------- DICOM study


_VENDOR = {
    "SIEMENS": ("Hv36", "Br36", "Topogram 0.6 T20s", "CTA_Head_Stroke"),
    "GE MEDICAL SYSTEMS": ("STANDARD", "SOFT", "Scout", "7.2 CTA HEAD"),
    "Philips": ("UB", "XCB", "Surview", "CTA Head/Brain"),
    "Canon Medical Systems": ("FC43", "FC21", "Scanogram", "CTA HEAD STROKE"),
}


def localizer(smp: CtaHeadSample, rng: np.random.Generator) -> tuple[np.ndarray, tuple, tuple]:
    """A lateral scout: the head and neck rendered coarsely and projected left-right.

    Returns ``(image (1, rows, cols), spacing, origin)`` for `write_ct_series`;
    rows run from head to feet along z, columns from anterior to posterior.
    """
    head: _Head = smp.head
    step = 2.0
    c = head.centre
    nz, ny, nx = 130, 130, 100
    grid = Grid((float(c[0] - step * nx / 2), float(c[1] + head.v0 - step * ny / 2), float(c[2] - 150.0)),
                (step, step, step), (nz, ny, nx))
    hu = _render(head, grid, 1.0, None, None, _neck(head)).astype(np.float32)
    path = np.clip(hu + 1000.0, 0.0, None).sum(axis=2) * (step / 1000.0)  # water-equivalent mm
    path = ndimage.zoom(path, 2, order=1)  # 1 mm pixels
    image = -1000.0 + 9.0 * path + rng.normal(0.0, 8.0, path.shape)
    image = image[::-1][None]  # rows from the top of the head down
    z_top = grid.origin[2] + step * (nz - 1)
    return image.astype(np.float32), (1.0, step / 2, step / 2), (float(c[0]), grid.origin[1], z_top)


def _slabs(hu: np.ndarray, dz: float, slab_mm: float, step_mm: float, op) -> tuple[np.ndarray, float, float]:
    """Axial slabs (MIP or average) ``slab_mm`` thick every ``step_mm``: (volume, first centre offset, step) mm."""
    n = max(1, int(round(slab_mm / dz)))
    stride = max(1, int(round(step_mm / dz)))
    starts = list(range(0, max(1, hu.shape[0] - n + 1), stride))
    out = np.stack([op(hu[s:s + n], axis=0) for s in starts]).astype(np.float32)
    return out, (n - 1) * dz / 2, stride * dz


def generate(rng: np.random.Generator, index: int, folder: Path, *, identity: StudyIdentity | None = None,
             **options: Any) -> dict[str, Any]:
    """Write one CTA head study: a localizer, the thin axial source series, a thick MIP, sometimes a 5 mm twin.

    ``options`` go to `sample` (e.g. ``lvo=True``, ``matrix=256``).
    """
    folder = Path(folder)
    description = STUDY_DESCRIPTIONS[int(rng.integers(len(STUDY_DESCRIPTIONS)))]
    study = make_study(rng, index, description, age_years=(40, 92), identity=identity)
    age = (study.date - study.patient.birth_date).days / 365.25
    smp = sample(rng, age_years=age, **options)
    truth = dict(smp.truth)
    kernel, thick_kernel, scout_name, protocol = _VENDOR.get(study.manufacturer, _VENDOR["SIEMENS"])
    agent = CONTRAST_AGENTS[int(rng.integers(len(CONTRAST_AGENTS)))]
    ctdi = float(rng.uniform(25, 60))
    mas = float(rng.uniform(150, 350))
    kvp = float(truth["kvp"])
    wc, ww = [(200.0, 700.0), (300.0, 900.0), (150.0, 600.0)][int(rng.integers(3))]
    dz, thk = smp.spacing[0], smp.slice_thickness
    extra = {"ContrastBolusRoute": "IV", "ContrastBolusVolume": float(rng.choice([50, 60, 70, 80]))}
    with_thick = rng.random() < 0.5
    thick_first = with_thick and rng.random() < 0.5
    numbers = iter(range(2, 10))
    n_thick = next(numbers) if thick_first else None
    n_main = next(numbers)
    if with_thick and n_thick is None:
        n_thick = next(numbers)
    n_mip = next(numbers)
    series = []

    def ct(number, desc, image_type, kern, **kw):
        return CtSeries(number=number, description=desc, protocol=protocol, body_part="HEAD", kernel=kern,
                        image_type=image_type, kvp=kvp, exposure_mas=mas, contrast_agent=agent,
                        extra=dict(extra), **kw)

    scout, sp, org = localizer(smp, rng)
    scout_series = CtSeries(number=1, description=scout_name, protocol=protocol, body_part="HEAD", kernel="T20s",
                            image_type=("ORIGINAL", "PRIMARY", "LOCALIZER"), kvp=120.0, exposure_mas=35.0,
                            ctdi_vol=0.1, window_center=300.0, window_width=2000.0,
                            extra={"ImageOrientationPatient": [0, 1, 0, 0, 0, -1]})
    write_ct_series(folder, rng, study, scout_series, scout, sp, org, slice_thickness=0.6)
    series.append({"number": 1, "description": scout_name, "role": "localizer"})

    main_desc = f"CTA HEAD {thk:g}mm {kernel}"
    write_ct_series(folder, rng, study, ct(n_main, main_desc, ("ORIGINAL", "PRIMARY", "AXIAL"), kernel,
                                           ctdi_vol=ctdi, window_center=wc, window_width=ww),
                    smp.hu, smp.spacing, smp.origin, slice_thickness=thk)
    series.append({"number": n_main, "description": main_desc, "role": "main"})

    if with_thick:
        vol, off, step = _slabs(smp.hu, dz, 5.0, 5.0, np.mean)
        desc = f"CTA HEAD 5mm {thick_kernel}"
        org = (smp.origin[0], smp.origin[1], smp.origin[2] + off)
        write_ct_series(folder, rng, study, ct(n_thick, desc, ("ORIGINAL", "PRIMARY", "AXIAL"), thick_kernel,
                                               ctdi_vol=ctdi, window_center=40.0, window_width=80.0),
                        vol, (step, smp.spacing[1], smp.spacing[2]), org, slice_thickness=5.0)
        series.append({"number": n_thick, "description": desc, "role": "thick"})

    slab = float(rng.choice([8.0, 10.0, 15.0, 20.0]))
    vol, off, step = _slabs(smp.hu, dz, slab, slab / 2, np.max)
    desc = f"AX MIP {slab:g}mm"
    org = (smp.origin[0], smp.origin[1], smp.origin[2] + off)
    write_ct_series(folder, rng, study, ct(n_mip, desc, ("DERIVED", "SECONDARY", "MIP"), kernel,
                                           ctdi_vol=ctdi, window_center=wc, window_width=ww),
                    vol, (step, smp.spacing[1], smp.spacing[2]), org, slice_thickness=slab)
    series.append({"number": n_mip, "description": desc, "role": "mip"})

    truth.update(
        main_series_number=n_main,
        ctdi_vol_mgy=round(ctdi, 2),
        dlp_mgy_cm=round(ctdi * (smp.hu.shape[0] * dz + thk) / 10.0, 1),
        series=series,
        study_description=description,
        manufacturer=study.manufacturer,
        model=study.model,
        contrast_agent=agent,
        patient_sex=study.patient.sex,
    )
    return truth
