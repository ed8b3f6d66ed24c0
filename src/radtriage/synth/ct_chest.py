"""Synthetic chest CT with pulmonary nodules (``ct-chest``).

What it models
--------------
An adult non-contrast chest CT, supine, feet-first or head-first does not
matter (slices are stored feet to head), axial, 1-2.5 mm slices, from just
above the lung apices to below the posterior costophrenic recesses (a
fixed slice count centred on the lungs on request). Anatomy
lives in a *body frame* (mm; X to the patient's left, Y posterior, Z up,
Z = 0 at the carina) and is drawn as analytic shapes with partial-volume
ramps, then placed in the scanner with a random offset and a small roll:

* body outline (elliptic, flattened where the back lies on the table) with a
  subcutaneous fat layer (~ -100 HU) and breasts in women; chest-wall muscle
  (~ 40 HU; paraspinal and pectoral bulk); a carbon-fibre table below;
* ribs as oblique elliptic bars of cancellous bone with a cortical shell
  (~ 150-300 HU marrow, 600-1000 HU cortex) that run down from back to front
  so each slice cuts several, costal cartilage (~ 100 HU) in front; sternum,
  scapulae; thoracic spine with vertebral bodies, discs (~ 90 HU), spinal
  canal (~ 20 HU) and posterior elements;
* lungs (-880 to -830 HU with a gravity-dependent gradient of 30-90 HU and a
  gentle texture), apices as domes, diaphragm as two domes (the right one
  higher) with liver, spleen and stomach (with its gas cap) below;
* mediastinum (fat ~ -95 HU), heart (~ 40 HU blood/myocardium) in its
  epicardial fat, ascending aorta, arch, descending aorta, great vessels,
  SVC, IVC, pulmonary trunk and arteries, oesophagus; trachea and main
  bronchi (air with a 1.5-2.5 mm wall);
* pulmonary arteries and veins as two space-filling trees per lung grown by
  recursive domain splitting (Kitaoka et al., J Appl Physiol 1999) with
  Murray-like radii (r ~ n^(1/2.8)), 8-11 mm at the hila down to ~0.5 mm at
  the periphery (veins from the left atrium likewise); bronchi (air, walls
  0.3 r + 0.25 mm) run beside the arteries down to ~1 mm lumen radius. Cut across, vessels look like small round nodules - the
  classic false positive of nodule detection;
* 0-5 nodules: solid (10-60 HU), part-solid (ground glass with a solid core
  of 25-65 % of the diameter), ground-glass (-650 to -400 HU, faint texture,
  vessels stay visible through it) and calcified (250-900 HU); 3-30 mm
  (log-uniform; calcified 3-12 mm), smooth, lobulated or (solid) spiculated,
  mostly >= 4 mm inside the lung, some juxtapleural (touching the pleura);
  never overlapping a vessel or bronchus of radius >= 1.5 mm.
* the scanner: display FOV 300-500 mm, 512 matrix by default (0.6-1.0 mm
  pixels; smaller matrices on request), slice interval 1.25-2.5 mm drawn
  (1.0 or less on request), thickness = interval or 25 % more (overlap),
  soft (e.g. Br40/STANDARD) or lung (e.g. Bl57/LUNG) kernel, noise from the
  protocol (routine, low-dose screening, HRCT, follow-up), the kernel, the
  slice thickness and the patient size, slightly higher at the shoulders;
  noise texture correlated in-plane (smoother for the soft kernel); in-plane
  blur (a kernel-dependent PSF) and slice-profile partial volume; a random
  table height, body offset (+/- 18 mm) and roll (+/- 3.4 degrees); -1024
  padding outside the 500 mm scan field. Nodule and nodule-free studies
  drawn from one seed are identical outside the nodules (separate random
  streams for anatomy, scanner, nodules and noise), so nothing but the
  lesion tells them apart.

Numbers and where they come from (textbook values, approximate)
---------------------------------------------------------------
HU of tissues: air -1000, lung -900 to -800 (Hounsfield; Webb, Fundamentals
of Body CT), fat -120 to -80, muscle 35-55, unenhanced blood 35-50, liver
45-65, spleen 40-50, cancellous bone 150-300, cortical bone > 600
(Brant & Helms, Fundamentals of Diagnostic Radiology). Nodule classes and
sizes after Fleischner Society 2017 and Lung-RADS v2022 (solid, part-solid,
ground-glass; calcified = benign). Airway/vessel calibre: trachea 15-22 mm,
main bronchi 10-14 mm, lobar pulmonary arteries 8-11 mm radius; broncho-
arterial ratio ~0.7 (Weibel, Morphometry of the Human Lung; Kitaoka 1999).
Rib pitch 24-30 mm, vertebral level 23-28 mm, right diaphragm dome 88-115
mm below the carina (left 8-22 mm lower), lung apex 70-95 mm above it,
posterior recesses up to 85 mm below the domes (Gray's Anatomy, adult
ranges). CTDIvol 5-12 mGy routine, 0.8-3 mGy low-dose screening (ACR
dose index registry ranges); image noise 9-20 HU (soft kernel, routine,
1.25 mm) rising with lower dose, thinner slices and sharper kernels.

What it does NOT model
----------------------
Contrast enhancement, fissures, lobar anatomy of the trees (branching is
space-filling, not named segments), emphysema, fibrosis, effusion,
atelectasis, consolidation, lymph nodes, masses > 30 mm, coronary or aortic
calcification, clavicles and humeri (arms are up), kidneys and bowel,
breathing or cardiac motion, beam hardening, streaks, photon starvation,
helical or cone-beam artefacts; the noise is an in-plane-correlated
stationary field (not a projection-domain simulation). The static anatomy is
rendered at half the in-plane resolution for 512+ matrices and upsampled;
vessels, airways and nodules are rendered at full resolution.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from scipy import ndimage

from radtriage.synth.dicom import CtSeries, Study, StudyIdentity, make_study, write_ct_series

NODULE_TYPES = ("solid", "part-solid", "ground-glass", "calcified")
_TYPE_P = (0.5, 0.15, 0.2, 0.15)
_TYPE_D = {"solid": (3.0, 30.0), "part-solid": (6.0, 30.0), "ground-glass": (5.0, 30.0), "calcified": (3.0, 12.0)}
SLICE_SPACINGS = (1.25, 1.5, 2.0, 2.5)  # drawn when not given (1.0 or 0.625 on request)
_SPACING_P = (0.35, 0.15, 0.2, 0.3)

# protocol -> (StudyDescription, CTDIvol range mGy, kVp choices, soft-kernel noise HU at 1.25 mm, 30 cm patient)
PROTOCOLS: dict[str, tuple[str, tuple[float, float], tuple[float, ...], tuple[float, float]]] = {
    "routine": ("CT CHEST WITHOUT CONTRAST", (5.0, 12.0), (120.0,), (10.0, 18.0)),
    "low-dose": ("CT CHEST LOW DOSE LUNG CANCER SCREENING", (0.8, 3.0), (100.0, 120.0), (20.0, 34.0)),
    "hrct": ("CT THORAX HIGH RESOLUTION", (4.0, 9.0), (120.0,), (12.0, 20.0)),
    "follow-up": ("CT CHEST NODULE FOLLOW-UP", (1.5, 5.0), (100.0, 120.0), (15.0, 26.0)),
}
_PROTOCOL_P = (0.35, 0.35, 0.1, 0.2)

# reconstruction kernels by manufacturer: (soft, lung)
_KERNELS = {
    "SIEMENS": ("Br40", "Bl57"),
    "GE MEDICAL SYSTEMS": ("STANDARD", "LUNG"),
    "Philips": ("B", "YB"),
    "Canon Medical Systems": ("FC08", "FC52"),
}


# --------------------------------------------------------------------------- data


@dataclass(frozen=True)
class Body:
    """Anatomy of one synthetic patient, in the body frame (mm, HU)."""

    sex: str
    cavity: tuple[float, float]  # half width, half AP of the inner chest wall
    apex_z: float  # lung apex above the carina
    domes_z: tuple[float, float]  # right, left diaphragm dome (below the carina, < 0)
    dome_k: float  # dome curvature (mm / mm^2)
    wall: tuple[float, float, float, float, float]  # rib zone, muscle, paraspinal, pectoral, fat
    breast: float  # extra fat-and-gland depth in front (women)
    flatten: float  # back flattened on the table (fraction of AP)
    ribs: tuple[float, float, float, float, float]  # pitch, drop front-to-back, phase, height, thickness
    spine: tuple[float, float, float, float, float]  # body radius, level pitch, disc height, phase, canal radius
    heart: tuple[float, ...]  # x, y, z, semi-axes a, b, c, roll (rad), epicardial fat
    mediastinum: tuple[float, float, float, float]  # centre x, half width above / below the heart, posterior extra
    hu: dict[str, float]  # tissue values
    stomach_gas: float  # depth of the gastric gas cap (mm)


@dataclass(frozen=True)
class Scan:
    """Where the patient lies in the scanner and how the series is reconstructed."""

    matrix: int
    pixel: float
    dz: float
    thickness: float
    nz: int
    origin: tuple[float, float, float]  # patient (x, y, z) of voxel (0, 0, 0)
    body_xy: tuple[float, float]  # patient (x, y) of the body-frame origin
    roll: float  # rad
    z_carina: float  # patient z of the carina
    kernel: str  # "soft" | "lung"
    noise_sd: float  # HU, in soft tissue at the mid chest
    protocol: str
    kvp: float
    ctdi_vol: float

    @property
    def spacing(self) -> tuple[float, float, float]:
        return (self.dz, self.pixel, self.pixel)

    @property
    def shape(self) -> tuple[int, int, int]:
        return (self.nz, self.matrix, self.matrix)

    def to_body(self, x, y, z):
        c, s = math.cos(self.roll), math.sin(self.roll)
        dx, dy = x - self.body_xy[0], y - self.body_xy[1]
        return c * dx + s * dy, -s * dx + c * dy, z - self.z_carina

    def to_patient(self, p: np.ndarray) -> np.ndarray:
        """Body-frame points (..., 3) as (X, Y, Z) -> patient (x, y, z)."""
        c, s = math.cos(self.roll), math.sin(self.roll)
        x = self.body_xy[0] + c * p[..., 0] - s * p[..., 1]
        y = self.body_xy[1] + s * p[..., 0] + c * p[..., 1]
        return np.stack([x, y, p[..., 2] + self.z_carina], axis=-1)

    def to_voxel(self, p: np.ndarray) -> np.ndarray:
        """Body-frame points (..., 3) -> continuous voxel indices (..., 3) as (z, y, x)."""
        q = self.to_patient(p)
        x0, y0, z0 = self.origin
        return np.stack([(q[..., 2] - z0) / self.dz, (q[..., 1] - y0) / self.pixel,
                         (q[..., 0] - x0) / self.pixel], axis=-1)


@dataclass(frozen=True)
class Nodule:
    kind: str  # one of NODULE_TYPES
    centre: tuple[float, float, float]  # body frame
    diameter: float  # nominal (main sphere)
    hu: float
    lobes: tuple[tuple[float, float, float, float], ...]  # (dx, dy, dz, r) spheres; the first is the main one
    spicules: tuple[tuple[float, float, float, float, float], ...]  # (ux, uy, uz, length, radius)
    core: tuple[float, float, float, float, float] | None  # part-solid: (dx, dy, dz, r, hu)
    margin: str  # smooth | lobulated | spiculated
    juxtapleural: bool
    side: str


@dataclass(frozen=True)
class Tubes:
    """Tapered capsules in the body frame: a, b (S, 3), r0, r1 (S,)."""

    a: np.ndarray
    b: np.ndarray
    r0: np.ndarray
    r1: np.ndarray

    @staticmethod
    def cat(parts: list[Tubes]) -> Tubes:
        parts = [p for p in parts if len(p.r0)]
        if not parts:
            z = np.zeros((0, 3))
            return Tubes(z, z, np.zeros(0), np.zeros(0))
        return Tubes(*(np.concatenate([getattr(p, k) for p in parts]) for k in ("a", "b", "r0", "r1")))

    def take(self, sel) -> Tubes:
        return Tubes(self.a[sel], self.b[sel], self.r0[sel], self.r1[sel])


@dataclass(frozen=True)
class ChestCtSample:
    """One synthetic chest CT: the main (thin) series and its ground truth.

    ``hu`` is int16 HU (z, y, x), slices feet to head; ``spacing`` (slice
    interval, row, column) mm; ``origin`` the patient (x, y, z) of voxel 0.
    ``body``/``scan`` describe the phantom (used to render the localizer).
    """

    hu: np.ndarray
    spacing: tuple[float, float, float]
    origin: tuple[float, float, float]
    slice_thickness: float
    truth: dict[str, Any]
    body: Body
    scan: Scan


# --------------------------------------------------------------------------- drawing


def _u(rng: np.random.Generator, lo: float, hi: float) -> float:
    return float(rng.uniform(lo, hi))


def draw_body(rng: np.random.Generator, sex: str | None = None, age: float | None = None) -> Body:
    """Draw one patient's anatomy (adult)."""
    if sex is None:
        sex = "F" if rng.random() < 0.5 else "M"
    age = _u(rng, 45, 85) if age is None else age
    size = _u(rng, 0.86, 1.1) * (1.04 if sex == "M" else 0.96)
    a_c = _u(rng, 118, 140) * size
    b_c = _u(rng, 0.6, 0.72) * a_c
    dome_r = -_u(rng, 88, 115)
    fat = float(np.exp(rng.normal(math.log(14), 0.5)))
    hu = {
        "fat": _u(rng, -112, -88), "muscle": _u(rng, 38, 55), "blood": _u(rng, 33, 48),
        "liver": _u(rng, 45, 65), "spleen": _u(rng, 40, 50), "stomach": _u(rng, 10, 30),
        "lung": _u(rng, -885, -835), "lung_grad": _u(rng, 30, 90), "med_fat": _u(rng, -105, -80),
        "neck": _u(rng, 5, 35), "marrow": _u(rng, 260, 340) - 2.0 * (age - 45), "cortex": _u(rng, 650, 1000),
        "cartilage": _u(rng, 80, 140), "disc": _u(rng, 75, 100), "canal": _u(rng, 10, 30),
        "wall": _u(rng, 10, 40), "table": _u(rng, 150, 300),
    }
    return Body(
        sex=sex,
        cavity=(a_c, b_c),
        apex_z=_u(rng, 70, 95),
        domes_z=(dome_r, dome_r - _u(rng, 8, 22)),
        dome_k=_u(rng, 0.003, 0.0048),
        wall=(_u(rng, 10, 13), _u(rng, 4, 10), _u(rng, 24, 38), _u(rng, 4, 18) * (1.3 if sex == "M" else 0.7), fat),
        breast=_u(rng, 12, 45) if sex == "F" else 0.0,
        flatten=_u(rng, 0.02, 0.07),
        ribs=(_u(rng, 24, 30), _u(rng, 100, 130), _u(rng, 0, 30), _u(rng, 9, 12.5), _u(rng, 5, 7)),
        spine=(_u(rng, 15, 19) * size, _u(rng, 23, 28), _u(rng, 4, 7), _u(rng, 0, 28), _u(rng, 6.5, 8.5)),
        heart=(_u(rng, 12, 30), -_u(rng, 0.05, 0.25) * b_c, _u(rng, -88, -68) + 0.3 * (dome_r + 110),
               _u(rng, 50, 60) * size, _u(rng, 38, 47) * size, _u(rng, 44, 54) * size, -_u(rng, 0.45, 0.8),
               _u(rng, 3, 10)),
        mediastinum=(_u(rng, -2, 8), _u(rng, 20, 30), _u(rng, 12, 18), _u(rng, 8, 14)),
        hu=hu,
        stomach_gas=_u(rng, 0, 25),
    )


def _lung_extent(body: Body) -> tuple[float, float]:
    """Lowest (posterior costophrenic recess) and highest (apex) Z of the lungs."""
    return min(body.domes_z) - 85.0, body.apex_z


def _draw_scan(rng: np.random.Generator, body: Body, *, matrix: int, slice_spacing: float | None,
               n_slices: int | None, kernel: str | None, protocol: str | None) -> Scan:
    protocol = protocol or str(rng.choice(list(PROTOCOLS), p=_PROTOCOL_P))
    if protocol not in PROTOCOLS:
        raise ValueError(f"protocol must be one of {', '.join(PROTOCOLS)}")
    _, ctdi_range, kvps, noise_range = PROTOCOLS[protocol]
    kernel = kernel or ("lung" if rng.random() < 0.5 else "soft")
    if kernel not in ("soft", "lung"):
        raise ValueError("kernel must be 'soft' or 'lung'")
    dz = float(slice_spacing or rng.choice(SLICE_SPACINGS, p=_SPACING_P))
    overlap = rng.random() < 0.2  # e.g. 1.25 mm slices every 1.0 mm
    thickness = round(dz * 1.25 * 4) / 4 if overlap and dz < 2 else dz
    half_width = body.cavity[0] + body.wall[0] + body.wall[1] + 1.2 * body.wall[4] + 4
    fov = float(np.clip(2 * half_width + _u(rng, 25, 90), 300, 500))
    pixel = fov / matrix
    lo, hi = _lung_extent(body)
    z_lo, z_hi = lo - _u(rng, 5, 25), hi + _u(rng, 5, 20)
    if n_slices is None:
        nz = int(math.ceil((z_hi - z_lo) / dz)) + 1
    else:
        nz = int(n_slices)
        z_lo = 0.5 * (z_lo + z_hi) + _u(rng, -10, 10) - 0.5 * (nz - 1) * dz
    z_carina = _u(rng, -230, -110)
    centre = (_u(rng, -8, 8), _u(rng, -25, 5))  # reconstruction centre in patient coordinates
    body_xy = (centre[0] + _u(rng, -18, 18), centre[1] + _u(rng, -15, 25))
    origin = (centre[0] - 0.5 * (matrix - 1) * pixel, centre[1] - 0.5 * (matrix - 1) * pixel, z_carina + z_lo)
    kvp = float(rng.choice(kvps))
    ctdi = _u(rng, *ctdi_range)
    # noise ~ 1/sqrt(dose * thickness), grows with patient size; sharper kernels x2.5-3.5
    ref = _u(rng, *noise_range) * math.sqrt(1.25 / thickness) * math.exp((half_width - 160) / 110)
    if kernel == "lung":
        ref *= _u(rng, 2.5, 3.5)
    return Scan(matrix=matrix, pixel=pixel, dz=dz, thickness=thickness, nz=nz, origin=origin, body_xy=body_xy,
                roll=_u(rng, -0.06, 0.06), z_carina=z_carina, kernel=kernel, noise_sd=ref, protocol=protocol,
                kvp=kvp, ctdi_vol=ctdi)


# --------------------------------------------------------------------------- static anatomy


def _ramp(d, w):
    return np.clip(d / w + 0.5, 0.0, 1.0)


def _smooth(x, lo, hi):
    t = np.clip((x - lo) / (hi - lo), 0.0, 1.0)
    return t * t * (3 - 2 * t)


def _ellipse(u, a, v, b, wu, wv):
    """Partial-volume fraction of the ellipse (u/a)^2 + (v/b)^2 < 1 and its normalised radius.

    ``wu``/``wv``: resolution (mm) along u and v. First-order signed distance
    (1 - rho) / |grad rho|, the ramp width taken along the gradient.
    """
    gu, gv = u * (1 / (a * a)), v * (1 / (b * b))
    rho = np.sqrt(u * gu + v * gv) + 1e-6
    den = np.sqrt((gu * wu) ** 2 + (gv * wv) ** 2) + 1e-9
    return np.clip((1 - rho) * rho / den + 0.5, 0.0, 1.0), rho


def _box(mask2d: np.ndarray) -> tuple[slice, slice] | None:
    rows, cols = np.nonzero(mask2d.any(axis=1))[0], np.nonzero(mask2d.any(axis=0))[0]
    if rows.size == 0:
        return None
    return slice(rows[0], rows[-1] + 1), slice(cols[0], cols[-1] + 1)


class _Plane:
    """The slowly varying anatomy on one in-plane grid (body-frame X, Y arrays)."""

    def __init__(self, body: Body, X: np.ndarray, Y: np.ndarray, Xp: np.ndarray, Yp: np.ndarray,
                 wxy: float, wz: float, table_y: float | None):
        self.b, self.X, self.Y, self.wxy, self.wz = body, X, Y, wxy, wz
        a_c, b_c = body.cavity
        t_rib, m0, m_para, m_pec, fat0 = body.wall
        h = body.hu
        f32 = np.float32
        self.r = np.hypot(X, Y).astype(f32)
        th = np.arctan2(Y, X)
        psi = self.psi = np.arctan2(np.abs(X), Y).astype(f32)  # 0 posterior, pi anterior
        ct, st = np.cos(th), np.sin(th)
        self.Re = (a_c * b_c / np.sqrt((b_c * ct) ** 2 + (a_c * st) ** 2)).astype(f32)
        # for the cavity shifted back by yc and scaled by sc: r^2 A - 2 r yc sin/b^2 + yc^2/b^2 - sc^2 = 0
        self.A = (ct * ct / a_c ** 2 + st * st / b_c ** 2).astype(f32)
        self.cs = (st / b_c ** 2).astype(f32)
        self.wall = (t_rib + m0 + m_para * np.exp(-(psi / 0.55) ** 2)).astype(f32)
        self.pec = (m_pec * np.exp(-((psi - 2.25) / 0.45) ** 2)).astype(f32)
        lateral = np.sin(psi) ** 2
        self.fat = (fat0 * (0.6 + 0.7 * lateral) * (1 - 0.35 * np.exp(-(psi / 0.6) ** 2))).astype(f32)
        self.breast = (body.breast * np.exp(-((psi - 2.3) / 0.3) ** 2)).astype(f32)
        self.flat = np.where(st > 0.05, _back(body) / np.maximum(st, 0.05), 1e4).astype(f32)
        # background: air and the table (patient coordinates: Xp, Yp)
        bg = np.full(X.shape, -1000.0, f32)
        if table_y is not None:
            tz = Yp - table_y - 0.0006 * Xp ** 2  # gently curved top
            width = _ramp(230 - np.abs(Xp), wxy)
            shell = np.clip(_ramp(1.2 - np.abs(tz - 1.5), wxy) + _ramp(1.2 - np.abs(tz - 38), wxy), 0, 1)
            bg = bg + width * (_ramp(18 - np.abs(tz - 20), wxy) * 100 + shell * (h["table"] + 1000))
        self.bg = bg.astype(f32)
        # lungs: gravity gradient (posterior denser) and a gentle texture
        dep = np.clip((Y + b_c) / (2 * b_c), 0, 1)
        tex = 6 * np.sin(X / 9.0 + 1.3) * np.sin(Y / 7.0 + 0.4) + 4 * np.sin((X + Y) / 5.0)
        self.lung = (h["lung"] + h["lung_grad"] * dep ** 2 + tex).astype(f32)
        # diaphragm domes (Z of the lung base) and their normal-direction ramp width
        k = body.dome_k
        right = X < body.mediastinum[0]
        xd = np.where(right, -0.45 * a_c, 0.45 * a_c)
        zd0 = np.where(right, body.domes_z[0], body.domes_z[1])
        yd = -0.15 * b_c
        self.zd = np.maximum(zd0 - k * ((X - xd) ** 2 + 1.3 * (Y - yd) ** 2), zd0 - 85).astype(f32)
        G = 1 / np.sqrt(1 + (2 * k * (X - xd)) ** 2 + (2.6 * k * (Y - yd)) ** 2)
        self.zd_w = (np.sqrt((G * wz) ** 2 + (1 - G * G) * wxy ** 2) / G).astype(f32)
        # lung apices: a broad dome over each lung
        ka = 0.006
        dxa, dya = np.abs(X) - 0.33 * a_c, Y - 0.35 * b_c
        drop = ka * (dxa ** 2 + dya ** 2)
        self.za = (body.apex_z - np.minimum(drop, 100)).astype(f32)  # below that the cavity shapes the lung
        ga = np.where(drop < 100, 1 / np.sqrt(1 + (2 * ka) ** 2 * (dxa ** 2 + dya ** 2)), 1.0)
        self.za_w = (np.sqrt((ga * wz) ** 2 + (1 - ga * ga) * wxy ** 2) / ga).astype(f32)
        # abdomen below the diaphragm: liver right (and left lobe in front), spleen, stomach
        liver = _ramp(a_c * (0.08 - 0.3 * Y / b_c) - X, wxy)
        spleen, _ = _ellipse(X - 0.62 * a_c, 0.28 * a_c, Y - 0.42 * b_c, 0.38 * b_c, wxy, wxy)
        stomach, _ = _ellipse(X - 0.42 * a_c, 0.33 * a_c, Y + 0.22 * b_c, 0.45 * b_c, wxy, wxy)
        gas = stomach * _ramp(-(Y + 0.22 * b_c + 0.45 * b_c - body.stomach_gas), wxy)
        abd = np.full(X.shape, 0.5 * (h["fat"] + h["muscle"]), f32)
        abd = abd + liver * (h["liver"] - abd)
        abd = abd + spleen * (1 - liver) * (h["spleen"] - abd)
        abd = abd + stomach * (1 - liver) * (h["stomach"] - abd)
        self.abd = (abd + gas * (1 - liver) * (-1000 - abd)).astype(f32)
        # mediastinum: a band, narrow in front (anterior junction), wider behind (aorta, oesophagus)
        xm, _, _, post = body.mediastinum
        self.med_dx = np.abs(X - xm).astype(f32)
        self.med_front = (0.15 + 0.85 / (1 + np.exp(-(Y + 0.3 * b_c) / 10))).astype(f32)
        self.med_post = (post * np.clip((Y - 0.15 * b_c) / 20, 0, 1)).astype(f32)
        # local structures: heart, spine, sternum boxes; the ring of the chest wall (ribs, scapulae)
        hx, hy, _, ha, hb, _, _, epi = body.heart
        rh = max(ha, hb) + epi + 6
        self.heart_box = _box((np.abs(X - hx) < rh) & (np.abs(Y - hy) < rh))
        rv = body.spine[0]
        self.spine_y = b_c - 0.15 * rv
        self.spine_box = _box((np.abs(X) < 48) & (Y > self.spine_y - rv - 4) & (Y < self.spine_y + rv + 50))
        self.sternum_box = _box((np.abs(X) < 30) & (Y < -0.6 * b_c) & (Y > -b_c - 30))
        sc_min, yc_max = self._scale(np.float32(body.apex_z + 60))
        lo = self.r - (self.cavity_radius(sc_min, yc_max) - 3)
        hi = (1.07 * self.Re + t_rib + 14) - self.r
        self.ring = np.flatnonzero(((lo > 0) & (hi > 0)).reshape(-1))

    # per-slice profiles ------------------------------------------------------------------
    def _scale(self, Z):
        """In-plane scale of the thoracic cavity and its backward shift (the inlet is small and posterior)."""
        top = np.clip((Z - (self.b.apex_z - 120)) / 140, 0, 1)
        bottom = np.clip((-Z - 40) / 100, 0, 1)
        sc = (1 - 0.45 * top ** 1.6) * (1 + 0.05 * bottom)
        return sc.astype(np.float32), ((1 - np.minimum(sc, 1)) * 0.85 * self.b.cavity[1]).astype(np.float32)

    def cavity_radius(self, sc, yc):
        """Distance from the body-frame origin to the cavity wall along each pixel's ray."""
        b2 = self.b.cavity[1] ** 2
        t = self.cs * yc
        return (t + np.sqrt(t * t - self.A * (yc * yc / b2 - sc * sc))) / self.A

    def slab(self, Z: np.ndarray, lung_only: bool = False):
        """HU (nk, ny, nx) of the static anatomy for body-frame slices ``Z`` (nk,), or (with
        ``lung_only``) the lung fraction instead."""
        b, h, wxy = self.b, self.b.hu, self.wxy
        Z = np.asarray(Z, np.float32)[:, None, None]
        sc, yc = self._scale(Z)
        r = self.r
        Rc = self.cavity_radius(sc, yc)
        f_cav = _ramp(Rc - r, wxy)
        # cavity content: lungs, neck above the apices, abdomen below the domes, mediastinum, heart
        # (the neck and abdomen terms vanish inside the cavity away from the apices and the domes)
        f_neck = _ramp(Z - self.za, self.za_w) if Z.max() > b.apex_z - 110 else None
        f_abd = _ramp(self.zd - Z, self.zd_w) if Z.min() < max(b.domes_z) + 8 else None
        _, hw_up, hw_low, _ = b.mediastinum
        hz = b.heart[2]
        hw = hw_low + (hw_up - hw_low) * _smooth(Z, hz, hz + 45)
        f_med = _ramp(hw * self.med_front + self.med_post - self.med_dx, wxy)
        if lung_only:
            lung = f_cav * (1 - f_med)
            for f in (f_neck, f_abd):
                if f is not None:
                    lung *= 1 - f
            f_heart = self._heart(Z, None)
            if f_heart is not None:
                lung[:, self.heart_box[0], self.heart_box[1]] *= 1 - f_heart
            return self._spine(Z, None, lung)
        content = self.lung + f_med * (h["med_fat"] - self.lung)
        if f_neck is not None:
            content += f_neck * (h["neck"] - content)
        self._heart(Z, content)
        if f_abd is not None:
            content += f_abd * (self.abd - content)
        # chest wall and body outline
        Rmo = Rc + self.wall + self.pec * _smooth(Z, -110, -60) + (1 - sc) * self.Re * 0.9
        breast = self.breast * np.exp(-((Z - b.heart[2] + 10) / 50) ** 2)
        Rb = np.minimum(Rmo + self.fat + breast, self.flat)
        hu = self.bg + _ramp(Rb - r, wxy) * (h["fat"] - self.bg)
        hu += _ramp(np.minimum(Rmo, Rb - 2.5) - r, wxy) * (h["muscle"] - hu)
        hu += f_cav * (content - hu)
        self._ring(Z, Rc, hu)
        self._sternum(Z, sc, yc, hu)
        self._spine(Z, hu, None)
        return hu

    def _heart(self, Z, content):
        box = self.heart_box
        if box is None:
            return None
        b, h, wxy, wz = self.b, self.b.hu, self.wxy, self.wz
        hx, hy, hz, ha, hb, hc, roll, epi = b.heart
        Xb, Yb = self.X[box], self.Y[box]
        u = math.cos(roll) * (Xb - hx) + math.sin(roll) * (Yb - hy)
        v = -math.sin(roll) * (Xb - hx) + math.cos(roll) * (Yb - hy)
        w = Z - hz
        q_in = (u / ha) ** 2 + (v / hb) ** 2 + (w / hc) ** 2
        q_out = (u / (ha + epi)) ** 2 + (v / (hb + epi)) ** 2 + (w / (hc + epi)) ** 2
        share = (w * w / (w * w + u * u + v * v + 1e-3))  # z share of the normal, roughly
        ww = np.sqrt(wxy * wxy + share * (wz * wz - wxy * wxy))
        m = min(ha, hb, hc)
        f_out = _ramp((1 - np.sqrt(q_out)) * m, ww)
        if content is not None:
            f_in = _ramp((1 - np.sqrt(q_in)) * m, ww)
            c = content[:, box[0], box[1]]
            c += f_out * (h["fat"] - c)
            c += f_in * (h["blood"] - c)
        return f_out

    def _ring(self, Z, Rc, hu):
        """Ribs, costal cartilage and scapulae, computed on the chest-wall ring only."""
        b, h, wxy, wz = self.b, self.b.hu, self.wxy, self.wz
        pitch, drop, phase, rib_h, rib_t = b.ribs
        idx = self.ring
        nk = Z.shape[0]
        psi, r = self.psi.reshape(-1)[idx], self.r.reshape(-1)[idx]
        Z1 = Z[:, :, 0]
        Rc = Rc.reshape(nk, -1)[:, idx]
        rr = r - (Rc + 1.0 + rib_t / 2)
        ph = (Z1 + drop * psi * (1 / math.pi) - phase) / pitch
        k = np.rint(ph)
        v = (ph - k) * pitch
        f, rho = _ellipse(rr, rib_t / 2, v, rib_h / 2, wxy, wz)
        k_low = math.floor((min(b.domes_z) - 60 - phase) / pitch)
        f = f * np.where(k < k_low + 2, _ramp(1.9 - psi, 0.2), 1.0)  # floating ribs stop short
        value = h["marrow"] + (h["cortex"] - h["marrow"]) * _smooth(rho, 0.5, 0.85)
        value += _smooth(psi, 2.45, 2.65) * (h["cartilage"] - value)
        flat = hu.reshape(nk, -1)
        sub = flat[:, idx]
        sub += f * (value - sub)
        # scapulae: thin plates behind the posterolateral ribs, upper chest
        rs = Rc + b.wall[0] + 7
        fsc = _ramp(2.2 - np.abs(r - rs), wxy) * _ramp(psi - 0.55, 0.08) * _ramp(1.2 - psi, 0.08)
        fsc *= _ramp(Z1 - (b.heart[2] - 10), wz)
        sub += fsc * (0.7 * h["cortex"] - sub)
        flat[:, idx] = sub

    def _sternum(self, Z, sc, yc, hu):
        box = self.sternum_box
        if box is None:
            return
        b, h, wxy, wz = self.b, self.b.hu, self.wxy, self.wz
        st_top, st_bot = b.apex_z - 55, b.domes_z[0] - 15
        zr = _ramp(st_top - Z, wz) * _ramp(Z - st_bot, wz)
        if not zr.any():
            return
        X, Y = self.X[box], self.Y[box]
        half_w = 13 + 7 * _smooth(Z, st_top - 50, st_top - 20)
        fs, rho = _ellipse(X, half_w, Y + sc * b.cavity[1] - yc + 7, 6.0, wxy, wxy)
        sub = hu[:, box[0], box[1]]
        sub += fs * zr * (h["marrow"] + (h["cortex"] - h["marrow"]) * _smooth(rho, 0.6, 0.9) - sub)

    def _spine(self, Z, hu, lung):
        box = self.spine_box
        if box is None:
            return lung
        b, h, wxy, wz = self.b, self.b.hu, self.wxy, self.wz
        rv, pitch, disc_h, phase, rcan = b.spine
        X, Y = self.X[box], self.Y[box]
        yv = self.spine_y
        rvz = rv * (1 + 0.0012 * np.clip(-Z, 0, None))
        fb, rho = _ellipse(X, rvz, Y - yv, 0.9 * rvz, wxy, wxy)
        if hu is None:
            lung[:, box[0], box[1]] *= 1 - fb
            return lung
        ph = (Z - phase) / pitch
        dv = np.abs(ph - np.rint(ph)) * pitch
        disc = _ramp(disc_h / 2 - dv, wz)
        body_hu = h["marrow"] + (h["cortex"] - h["marrow"]) * _smooth(rho, 0.8, 0.97)
        body_hu = body_hu + disc * (h["disc"] - body_hu)
        yc = yv + 0.9 * rvz + rcan + 3
        fc, _ = _ellipse(X, rcan, Y - yc, rcan, wxy, wxy)
        fa, _ = _ellipse(X, rcan + 6, Y - yc, rcan + 5, wxy, wxy)
        fsp, _ = _ellipse(X, 3.5, Y - (yc + rcan + 11), 11.0, wxy, wxy)
        ftr, _ = _ellipse(np.abs(X) - 20, 14.0, Y - yc + 2, 5.0, wxy, wxy)
        arch = np.maximum(fa, np.maximum(fsp, ftr * _ramp(pitch * 0.32 - dv, wz)))
        sub = hu[:, box[0], box[1]]
        sub += arch * (0.55 * h["cortex"] - sub)
        sub += fc * (h["canal"] - sub)
        sub += fb * (body_hu - sub)
        return lung


# --------------------------------------------------------------------------- tubes: vessels and airways


def _polyline(points, radii) -> Tubes:
    p = np.asarray(points, float)
    r = np.asarray(radii, float)
    return Tubes(p[:-1], p[1:], r[:-1], r[1:])


def _mediastinal_tubes(rng: np.random.Generator, body: Body) -> tuple[Tubes, Tubes, dict]:
    """Great vessels (blood) and trachea/main bronchi (air): (blood tubes, airway centre tubes, landmarks).

    Tubes that leave the chest run well past any scan range (rasterising clips them)."""
    _, b_c = body.cavity
    top, bottom = body.apex_z + 150, _lung_extent(body)[0] - 150
    xm, hw_up, _, _ = body.mediastinum
    hx, hy, hz = body.heart[:3]
    yv = b_c - 0.15 * body.spine[0]
    rv = body.spine[0]
    j = lambda s=3.0: rng.normal(0, s, 3)  # noqa: E731
    r_asc = _u(rng, 13, 17)
    r_desc = _u(rng, 10, 13)
    y_desc = yv - rv * 0.6
    arch_z = _u(rng, 22, 38)
    asc = [np.array([hx - 12, hy - 5, hz + 20]), np.array([xm - 18, -0.25 * b_c, hz + 60]) + j(),
           np.array([xm - 14, -0.22 * b_c, arch_z - 10]) + j(), np.array([xm - 4, -0.05 * b_c, arch_z + 2]),
           np.array([xm + 14, 0.3 * b_c, arch_z]), np.array([xm + 20, y_desc - 12, arch_z - 18])]
    desc = [asc[-1], np.array([xm + 22, y_desc, -30.0]) + j(2), np.array([xm + 16, y_desc + 2, -120.0]) + j(2),
            np.array([xm + 6, y_desc + 4, bottom - 20])]
    blood = [_polyline(asc, [r_asc, r_asc, r_asc, r_asc - 1, r_desc + 1, r_desc]),
             _polyline(desc, [r_desc, r_desc, r_desc - 0.5, r_desc - 1])]
    # arch branches up to the top of the scan
    for dx, r, lat in ((-8, 6.5, -22), (3, 4.5, 8), (13, 5.0, 40)):
        p0 = np.array([xm + dx, -0.05 * b_c + dx * 0.5, arch_z + 8])
        blood.append(_polyline([p0, p0 + [lat * 0.4, 5, 25] + j(2), p0 + [lat, 10, top - arch_z + 10]],
                               [r, r - 0.5, r - 1]))
    # SVC and brachiocephalic veins, IVC
    r_svc = _u(rng, 8, 11)
    svc = [np.array([xm - 30, -0.05 * b_c, top + 10]), np.array([xm - 32, -0.08 * b_c, arch_z]) + j(2),
           np.array([xm - 28, -0.05 * b_c, hz + 35])]
    blood.append(_polyline(svc, [r_svc, r_svc, r_svc]))
    blood.append(_polyline([[xm + 45, -0.3 * b_c, top + 10], [xm + 20, -0.3 * b_c, arch_z + 22],
                            [xm - 28, -0.1 * b_c, arch_z + 12]], [6, 6, 7]))
    blood.append(_polyline([[hx - 30, hy + 25, hz - 10], [xm - 18, 0.15 * b_c, bottom - 20]], [12, 12]))
    # pulmonary trunk and arteries to the hila
    pa_fork = np.array([xm + 6, -0.05 * b_c, _u(rng, -30, -18)])
    hila = {"R": np.array([xm - hw_up - _u(rng, 14, 22), 0.05 * b_c, _u(rng, -32, -20)]),
            "L": np.array([xm + hw_up + _u(rng, 14, 22), 0.1 * b_c, _u(rng, -22, -10)])}
    r_pa = _u(rng, 12, 15)
    blood.append(_polyline([[hx - 5, hy - 15, hz + 25], pa_fork], [r_pa, r_pa]))
    for side in "RL":
        mid = 0.5 * (pa_fork + hila[side]) + [0, 8 if side == "R" else 14, 6 if side == "L" else 0]
        blood.append(_polyline([pa_fork, mid, hila[side]], [10.5, 10, 9.5]))
    # oesophagus (soft tissue, like blood on non-contrast CT)
    oes = [np.array([xm - 2, yv - rv - 10, top + 10]), np.array([xm + 4, yv - rv - 12, -40]) + j(2),
           np.array([xm + 12, yv - rv - 20, bottom])]
    blood.append(_polyline(oes, [8, 8, 8]))
    # trachea, carina, main bronchi (centre lines; the lumen radius is r, the wall is added later)
    y_tr = yv - rv - 26
    r_tr = _u(rng, 8, 10.5)
    carina = np.array([xm, y_tr + 4, 0.0])
    bronchi = {"R": np.array([hila["R"][0] + 18, hila["R"][1] + 6, hila["R"][2] + 2]),
               "L": np.array([hila["L"][0] - 14, hila["L"][1] + 10, hila["L"][2] - 16])}
    air = [_polyline([[xm, y_tr - 4, top + 10], [xm + 2, y_tr, 40], carina + [0, 0, 8]], [r_tr, r_tr, r_tr])]
    r_main = {"R": 0.65 * r_tr, "L": 0.6 * r_tr}
    air.append(_polyline([carina + [0, 0, 6], bronchi["R"]], [0.7 * r_tr, r_main["R"]]))
    air.append(_polyline([carina + [0, 0, 6], bronchi["L"]], [0.65 * r_tr, r_main["L"]]))
    marks = {"hila": hila, "bronchi": bronchi, "bronchus_r": r_main,
             "atrium": np.array([hx - 5, hy + 0.5 * body.heart[4], hz + 10])}
    return Tubes.cat(blood), Tubes.cat(air), marks


def _grow_tree(rng: np.random.Generator, root: np.ndarray, pts: np.ndarray, r_root: float, *,
               lam: float = 0.42, exponent: float = 2.8, min_len: float = 1.0):
    """Space-filling branching tree (recursive domain splitting, vectorised by generation).

    Returns (start, end, radius, end radius, parent index, direction, generation) arrays, one row
    per branch; parents come before their children.
    """
    M = len(pts)
    lab = np.zeros(M, np.int64)
    P = pts
    start = root[None, :].astype(float)
    first = pts.mean(0) - root
    pnorm = np.cross(first, rng.normal(size=3))[None, :]
    pnorm /= np.linalg.norm(pnorm, axis=1, keepdims=True)
    parent = np.array([-1])
    out = []
    n_done = 0
    for _ in range(60):
        B = len(start)
        cnt = np.bincount(lab, minlength=B).astype(float)
        cen = np.stack([np.bincount(lab, weights=P[:, k], minlength=B) for k in range(3)], 1) / cnt[:, None]
        vec = cen - start
        dist = np.linalg.norm(vec, axis=1)
        dirs = vec / np.maximum(dist, 1e-6)[:, None]
        term = (cnt <= 1) | (dist < 1.5)
        L = np.maximum(np.where(term, dist, lam * dist), min_len)
        end = start + dirs * L[:, None]
        r = r_root * (cnt / M) ** (1 / exponent)
        out.append((start, end, r, np.where(term, 0.6 * r, r), parent, dirs, np.full(B, len(out))))
        gid = n_done + np.arange(B)
        n_done += B
        nt = ~term
        if not nt.any():
            break
        # branching plane normal: perpendicular to the parent's plane, jittered about the axis
        n = np.cross(dirs, pnorm)
        bad = np.linalg.norm(n, axis=1) < 1e-3
        if bad.any():
            n[bad] = np.cross(dirs[bad], rng.normal(size=(int(bad.sum()), 3)))
        n /= np.linalg.norm(n, axis=1, keepdims=True)
        ang = rng.uniform(-0.6, 0.6, B)[:, None]
        n = np.cos(ang) * n + np.sin(ang) * np.cross(dirs, n)
        keep = nt[lab]
        P, lab = P[keep], lab[keep]
        side = (np.einsum("ij,ij->i", P - end[lab], n[lab]) > 0).astype(np.int64)
        rank = np.cumsum(nt) - 1
        child = 2 * rank[lab] + side
        nnt = int(nt.sum())
        present = np.bincount(child, minlength=2 * nnt) > 0
        remap = np.cumsum(present) - 1
        lab = remap[child]
        parent_b = np.nonzero(nt)[0][(np.arange(2 * nnt) // 2)[present]]
        start, pnorm, parent = end[parent_b], n[parent_b], gid[parent_b]
    return [np.concatenate([o[i] for o in out]) for i in range(7)]


def _airways_along(rng: np.random.Generator, tree, r_min: float) -> tuple[Tubes, np.ndarray]:
    """Bronchi beside the arteries (broncho-arterial ratio ~0.7): lumen tubes and wall thickness."""
    start, end, r, _, parent, dirs, gen = tree
    n = len(r)
    off = np.zeros((n, 3))
    seed = np.cross(dirs[0], [0.0, 0.0, 1.0]) + 1e-3
    off[0] = seed / np.linalg.norm(seed)
    for g in range(1, int(gen.max()) + 1):  # the side a bronchus runs on follows its parent's
        sel = np.flatnonzero(gen == g)
        o = off[parent[sel]]
        o = o - np.einsum("ij,ij->i", o, dirs[sel])[:, None] * dirs[sel]
        nn = np.linalg.norm(o, axis=1, keepdims=True)
        off[sel] = np.where(nn > 1e-6, o / np.maximum(nn, 1e-6), off[parent[sel]])
    r_in = 0.7 * r * rng.uniform(0.9, 1.1, n)
    wall = 0.3 * r_in + 0.25
    sel = r_in >= r_min
    gap = (r + r_in + wall + 0.4)[:, None]
    o_start = np.where((parent >= 0)[:, None], off[np.maximum(parent, 0)], off)
    a = start + o_start * gap
    b = end + off * gap
    return Tubes(a[sel], b[sel], r_in[sel], r_in[sel]), wall[sel]


# --------------------------------------------------------------------------- rasterising


_BUCKETS = np.array([1, 2, 3, 4, 5, 6, 8, 10, 12, 14, 16, 20, 24, 28, 32, 40, 48, 56, 64, 80, 96, 112, 128, 160,
                     192, 256, 320, 384, 448, 512, 640, 768, 1024])


def _split(a: np.ndarray, b: np.ndarray, r0: np.ndarray, r1: np.ndarray, sp: np.ndarray):
    """Cut long capsules (in voxel coordinates) into pieces no longer than ~1.5 radii, for tight boxes."""
    length = np.linalg.norm((b - a) * sp, axis=1)
    n = np.maximum(1, np.ceil(length / np.maximum(2.0 * np.maximum(r0, r1), 3.0))).astype(np.int64)
    if (n == 1).all():
        return a, b, r0, r1, np.arange(len(n))
    owner = np.repeat(np.arange(len(n)), n)
    j = np.arange(n.sum()) - np.repeat(np.cumsum(n) - n, n)
    t0, t1 = j / n[owner], (j + 1) / n[owner]
    d = (b - a)[owner]
    dr = (r1 - r0)[owner]
    return (a[owner] + t0[:, None] * d, a[owner] + t1[:, None] * d, r0[owner] + t0 * dr, r0[owner] + t1 * dr,
            owner)


def _extend_boxes(boxes: np.ndarray | None, lo: np.ndarray, hi: np.ndarray) -> None:
    """Grow the per-slice in-plane bounding boxes (nz, 4: y0, y1, x0, x1) by index boxes [lo, hi)."""
    if boxes is None or len(lo) == 0:
        return
    nzr = hi[:, 0] - lo[:, 0]
    owner = np.repeat(np.arange(len(lo)), nzr)
    zs = lo[owner, 0] + np.arange(len(owner)) - np.repeat(np.cumsum(nzr) - nzr, nzr)
    np.minimum.at(boxes[:, 0], zs, lo[owner, 1])
    np.maximum.at(boxes[:, 1], zs, hi[owner, 1])
    np.minimum.at(boxes[:, 2], zs, lo[owner, 2])
    np.maximum.at(boxes[:, 3], zs, hi[owner, 2])


def _empty_boxes(shape) -> np.ndarray:
    return np.tile(np.array([shape[1], 0, shape[2], 0], np.int64), (shape[0], 1))


def _capsules(dst, a: np.ndarray, b: np.ndarray, r0: np.ndarray, r1: np.ndarray, spacing, width,
              scale: float = 1.0, boxes: np.ndarray | None = None, cap_batch: int = 1_000_000) -> None:
    """Max-combine the partial-volume fraction of tapered capsules into ``dst``.

    ``a``/``b``: (S, 3) continuous voxel indices (z, y, x); ``r0``/``r1`` mm;
    ``spacing`` mm per index; ``width`` the partial-volume ramp width along
    z and in-plane (slice thickness, in-plane resolution). ``scale``
    multiplies the fraction (255 for a uint8 destination). ``dst`` may be a
    list of (array, extra radius (S,) or scalar, scale): concentric capsules
    (e.g. a bronchial wall and its lumen) from one distance computation.
    ``boxes`` (nz, 4) collects each slice's touched rows/columns.
    """
    outputs = dst if isinstance(dst, list) else [(dst, 0.0, scale)]
    if len(r0) == 0:
        return
    shape = np.array(outputs[0][0].shape)
    sp = np.asarray(spacing, float)
    n0 = len(r0)
    adds = [np.broadcast_to(np.asarray(add, float), (n0,)) for _, add, _ in outputs]
    extra = np.max(np.stack(adds), axis=0)
    a, b, r0, r1, owner = _split(a, b, r0, r1, sp)
    adds = [ad[owner].astype(np.float32) for ad in adds]
    wz2, wxy2 = float(width[0]) ** 2, float(width[1]) ** 2
    margin = (np.maximum(r0, r1)[:, None] + extra[owner][:, None]
              + 0.5 * np.asarray(width)[[0, 1, 1]][None, :]) / sp[None, :]
    lo = np.clip(np.floor(np.minimum(a, b) - margin).astype(np.int64), 0, shape)
    hi = np.clip(np.floor(np.maximum(a, b) + margin).astype(np.int64) + 1, 0, shape)
    dims = hi - lo
    idx = np.nonzero((dims > 0).all(1))[0]
    if len(idx) == 0:
        return
    _extend_boxes(boxes, lo[idx], hi[idx])
    q = _BUCKETS[np.searchsorted(_BUCKETS, dims[idx])]
    keys = (q[:, 0] * 10**4 + q[:, 1]) * 10**4 + q[:, 2]
    order = np.lexsort((lo[idx, 1], lo[idx, 0], keys))  # by box shape, then in memory order (cache)
    idx, q, keys = idx[order], q[order], keys[order]
    f32 = np.float32
    am = (a * sp).astype(f32)
    D = ((b - a) * sp).astype(f32)
    Dn = D / np.maximum((D * D).sum(1), 1e-6)[:, None]
    dr = (r1 - r0).astype(f32)
    r0 = r0.astype(f32)
    for grp in np.split(np.arange(len(idx)), np.nonzero(np.diff(keys))[0] + 1):
        Bz, By, Bx = (int(v) for v in q[grp[0]])
        gz, gy, gx = (g.reshape(-1) for g in np.meshgrid(np.arange(Bz), np.arange(By), np.arange(Bx),
                                                            indexing="ij"))
        per = max(1, cap_batch // (Bz * By * Bx))
        for s0 in range(0, len(grp), per):
            sel = idx[grp[s0:s0 + per]]
            L, H = lo[sel], hi[sel]
            iz, iy, ix = L[:, 0, None] + gz, L[:, 1, None] + gy, L[:, 2, None] + gx  # (S, V)
            A = am[sel]
            pz = iz.astype(f32) * f32(sp[0]) - A[:, 0, None]
            py = iy.astype(f32) * f32(sp[1]) - A[:, 1, None]
            px = ix.astype(f32) * f32(sp[2]) - A[:, 2, None]
            t = pz * Dn[sel, 0, None] + py * Dn[sel, 1, None]
            t += px * Dn[sel, 2, None]
            np.clip(t, 0.0, 1.0, out=t)
            Ds = D[sel]
            pz -= t * Ds[:, 0, None]
            py -= t * Ds[:, 1, None]
            px -= t * Ds[:, 2, None]
            pz *= pz
            py *= py
            px *= px
            py += px
            py += pz
            py += 1e-6  # squared distance to the axis
            w = pz / py
            w *= wz2 - wxy2
            w += wxy2
            np.sqrt(w, out=w)
            np.sqrt(py, out=py)
            t *= dr[sel, None]
            t += r0[sel, None]
            t -= py  # signed depth below the surface (mm)
            inside = (iz < H[:, 0, None]) & (iy < H[:, 1, None]) & (ix < H[:, 2, None])
            iz *= shape[1]
            iz += iy
            iz *= shape[2]
            iz += ix
            lin_all = iz.reshape(-1)
            for (out, _, sc), add in zip(outputs, adds):
                f = (t + add[sel, None]) / w
                f += 0.5
                np.clip(f, 0.0, 1.0, out=f)
                f *= inside
                f = f.reshape(-1)
                keep = np.flatnonzero(f > 0.004)
                v = f[keep] * sc
                np.maximum.at(out.reshape(-1), lin_all[keep],
                              (np.rint(v) if out.dtype == np.uint8 else v).astype(out.dtype))


def _splat(dst: np.ndarray, tubes_vox_a, tubes_vox_b, r0, r1, spacing, boxes: np.ndarray | None = None) -> None:
    """Add thin tubes (radius below a pixel) as their material per voxel, trilinearly."""
    if len(r0) == 0:
        return
    sp = np.asarray(spacing, float)
    seg = (tubes_vox_b - tubes_vox_a) * sp
    length = np.linalg.norm(seg, axis=1)
    step = 0.7 * sp.min()
    n = np.maximum(1, np.ceil(length / step).astype(np.int64))
    owner = np.repeat(np.arange(len(n)), n)
    t = (np.arange(n.sum()) - np.repeat(np.cumsum(n) - n, n) + 0.5) / n[owner]
    p = tubes_vox_a[owner] + t[:, None] * (tubes_vox_b - tubes_vox_a)[owner]
    r = r0[owner] + t * (r1 - r0)[owner]
    m = math.pi * r * r * (length / n)[owner] / float(np.prod(sp))  # voxel fractions
    shape = np.array(dst.shape)
    i0 = np.floor(p).astype(np.int64)
    fr = p - i0
    inside = ((i0 >= 0) & (i0 + 1 < shape)).all(1)
    _extend_boxes(boxes, i0[inside], i0[inside] + 2)
    flat = dst.reshape(-1)
    for dz in (0, 1):
        for dy in (0, 1):
            for dx in (0, 1):
                ii = i0 + [dz, dy, dx]
                wgt = m * np.where(dz, fr[:, 0], 1 - fr[:, 0]) * np.where(dy, fr[:, 1], 1 - fr[:, 1]) \
                    * np.where(dx, fr[:, 2], 1 - fr[:, 2])
                ok = ((ii >= 0) & (ii < shape)).all(1) & (wgt > 1e-4)
                lin = (ii[ok, 0] * shape[1] + ii[ok, 1]) * shape[2] + ii[ok, 2]
                np.add.at(flat, lin, wgt[ok].astype(dst.dtype))


# --------------------------------------------------------------------------- lung map, trees, nodules


@dataclass(frozen=True)
class _LungMap:
    """Lungs on a coarse body-frame grid: depth below the pleura (mm), side labels."""

    origin: np.ndarray  # body-frame (Z, Y, X) of index 0
    step: float
    depth: np.ndarray  # (nz, ny, nx) mm, 0 outside
    side: np.ndarray  # 0 outside, 1 right, 2 left

    def lookup(self, p: np.ndarray, field: np.ndarray) -> np.ndarray:
        """``p`` body-frame (..., 3) as (X, Y, Z)."""
        idx = np.rint((p[..., ::-1] - self.origin) / self.step).astype(np.int64)
        idx = np.clip(idx, 0, np.array(field.shape) - 1)
        return field[idx[..., 0], idx[..., 1], idx[..., 2]]

    def points(self, rng: np.random.Generator, side: int, n: int, min_depth: float) -> np.ndarray:
        cand = np.flatnonzero((self.side.reshape(-1) == side) & (self.depth.reshape(-1) >= min_depth))
        pick = cand[rng.integers(0, len(cand), n)]
        zyx = np.stack(np.unravel_index(pick, self.depth.shape), 1) * self.step + self.origin
        zyx = zyx + rng.uniform(-0.5, 0.5, zyx.shape) * self.step
        return zyx[:, ::-1].copy()


def _lung_map(body: Body, blood: Tubes, air: Tubes, step: float = 3.5) -> _LungMap:
    a_c, b_c = body.cavity
    lo, hi = _lung_extent(body)
    zs = np.arange(lo - 6, hi + 6, step)
    ys = np.arange(-b_c - 6, b_c + 6, step)
    xs = np.arange(-a_c - 6, a_c + 6, step)
    X, Y = np.meshgrid(xs.astype(np.float32), ys.astype(np.float32))
    plane = _Plane(body, X, Y, X, Y, 1.0, 1.0, None)
    lung = plane.slab(zs, lung_only=True)
    origin = np.array([zs[0], ys[0], xs[0]])
    out = np.zeros(lung.shape, np.float32)
    tubes = Tubes.cat([blood, Tubes(air.a, air.b, air.r0 + 2.5, air.r1 + 2.5)])
    va = (tubes.a[:, ::-1] - origin) / step
    vb = (tubes.b[:, ::-1] - origin) / step
    _capsules(out, va, vb, tubes.r0 + 1.5, tubes.r1 + 1.5, (step,) * 3, (1.0,) * 3)
    mask = (lung > 0.5) & (out < 0.5)
    depth = ndimage.distance_transform_edt(mask, sampling=step).astype(np.float32)
    side = np.where(mask, np.where(X[None] < body.mediastinum[0], 1, 2), 0).astype(np.int8)
    return _LungMap(origin=origin, step=step, depth=depth, side=side)


def _lung_trees(rng: np.random.Generator, lmap: _LungMap, marks: dict,
                n_points: int = 4000) -> tuple[Tubes, Tubes, np.ndarray]:
    """Pulmonary arteries and veins (blood) and bronchi (lumen tubes, wall thickness) for both lungs."""
    blood, air, walls = [], [], []
    for code, side in ((1, "R"), (2, "L")):
        sgn = -1 if side == "R" else 1
        hilum = marks["hila"][side]
        pts = lmap.points(rng, code, n_points, 4.0)
        art = _grow_tree(rng, hilum, pts, _u(rng, 8.5, 10.5))
        blood.append(Tubes(art[0], art[1], art[2], art[3]))
        aw, wall = _airways_along(rng, art, 1.0)
        # bronchi stay in the lung (a branch aimed across the heart keeps its artery, not its airway)
        inside = (lmap.lookup(aw.a, lmap.side) > 0) | (lmap.lookup(aw.b, lmap.side) > 0)
        near = np.linalg.norm(aw.a - hilum, axis=1) < 15
        keep = inside | near
        keep[0] = True
        aw, wall = aw.take(keep), wall[keep]
        # main bronchus end joins the first airway node
        air.append(Tubes(np.array([marks["bronchi"][side]]), aw.a[:1], np.array([marks["bronchus_r"][side]]),
                         aw.r0[:1]))
        walls.append(np.array([1.8]))
        air.append(aw)
        walls.append(wall)
        for vz in (10.0, -18.0):  # superior and inferior pulmonary veins
            root = marks["atrium"] + np.array([sgn * 28.0, 8.0, vz])
            vpts = lmap.points(rng, code, n_points // 2, 4.0)
            vpts = vpts[(vpts[:, 2] > root[2]) == (vz > 0)] if len(vpts) > 50 else vpts
            if len(vpts) < 20:
                continue
            vein = _grow_tree(rng, root, vpts, _u(rng, 6.0, 7.5))
            blood.append(Tubes(vein[0], vein[1], vein[2], vein[3]))
    return Tubes.cat(blood), Tubes.cat(air), np.concatenate(walls)


def _seg_distance(p: np.ndarray, t: Tubes) -> np.ndarray:
    """Distance (C, S) from points to tube surfaces (negative inside)."""
    d = t.b - t.a
    dd = np.maximum((d * d).sum(1), 1e-9)
    w = p[:, None, :] - t.a[None]
    s = np.clip((w * d[None]).sum(2) / dd[None], 0, 1)
    q = w - s[..., None] * d[None]
    return np.linalg.norm(q, axis=2) - (t.r0 + s * (t.r1 - t.r0))


def _draw_nodules(rng: np.random.Generator, lmap: _LungMap, big: Tubes, n: int, kinds, diameter,
                  z_range: tuple[float, float]) -> list[Nodule]:
    nodules: list[Nodule] = []
    kinds = tuple(kinds) if kinds else NODULE_TYPES
    for k in kinds:
        if k not in NODULE_TYPES:
            raise ValueError(f"nodule type {k!r} is not one of {NODULE_TYPES}")
    p = np.array([_TYPE_P[NODULE_TYPES.index(k)] for k in kinds])
    zz = np.arange(lmap.depth.shape[0]) * lmap.step + lmap.origin[0]
    for _ in range(n):
        kind = str(rng.choice(kinds, p=p / p.sum()))
        lo, hi = _TYPE_D[kind]
        if diameter is not None:
            lo, hi = max(float(diameter[0]), 2.0), max(float(diameter[1]), float(diameter[0]))
        for _ in range(8):
            d = float(np.exp(rng.uniform(math.log(lo), math.log(hi))))
            R = d / 2
            juxta = rng.random() < (0.2 if kind in ("solid", "calcified") else 0.08)
            zok = ((zz > z_range[0] + R + 2) & (zz < z_range[1] - R - 2))[:, None, None]
            if juxta:
                ok = (lmap.depth >= max(0.5 * R, 1.5)) & (lmap.depth <= max(R, 3.0)) & zok
            else:
                ok = (lmap.depth >= R + 4) & zok
            cand = np.flatnonzero(ok.reshape(-1))
            if len(cand) == 0:
                hi = max(lo, 0.7 * hi)
                continue
            pick = cand[rng.integers(0, len(cand), 64)]
            c = (np.stack(np.unravel_index(pick, lmap.depth.shape), 1) * lmap.step + lmap.origin)[:, ::-1]
            c = c + rng.uniform(-0.5, 0.5, c.shape) * lmap.step
            good = np.ones(len(c), bool)
            if len(big.r0):
                good &= (_seg_distance(c, big) > R + 1.5).all(1)
            for other in nodules:
                good &= np.linalg.norm(c - other.centre, axis=1) > R + other.diameter / 2 + 6
            if good.any():
                centre = c[np.argmax(good)]
                break
        else:
            continue
        nodules.append(_make_nodule(rng, kind, centre, d, juxta, "right" if lmap.lookup(centre, lmap.side) == 1
                                    else "left"))
    return nodules


def _make_nodule(rng, kind, centre, d, juxta, side) -> Nodule:
    R = d / 2
    hu = {"solid": _u(rng, 10, 60), "part-solid": _u(rng, -620, -420), "ground-glass": _u(rng, -650, -400),
          "calcified": _u(rng, 250, 900)}[kind]
    lobes = [(0.0, 0.0, 0.0, R)]
    spicules = []
    margin = "smooth"
    if kind != "calcified" and d >= 6 and rng.random() < 0.45:
        margin = "lobulated"
        for _ in range(int(rng.integers(2, 5))):
            u = rng.normal(size=3)
            u /= np.linalg.norm(u)
            rl = R * _u(rng, 0.35, 0.6)
            c = u * (R - 0.3 * rl)
            lobes.append((float(c[0]), float(c[1]), float(c[2]), rl))
    if kind == "solid" and d >= 8 and rng.random() < 0.3:
        margin = "spiculated"
        for _ in range(int(rng.integers(5, 12))):
            u = rng.normal(size=3)
            u /= np.linalg.norm(u)
            spicules.append((float(u[0]), float(u[1]), float(u[2]), R * _u(rng, 1.3, 2.0), _u(rng, 0.3, 0.6)))
    core = None
    if kind == "part-solid":
        rc = R * _u(rng, 0.25, 0.65)
        off = rng.normal(size=3)
        off = off / np.linalg.norm(off) * _u(rng, 0, 0.6) * (R - rc)
        core = (float(off[0]), float(off[1]), float(off[2]), rc, _u(rng, 10, 60))
    return Nodule(kind=kind, centre=tuple(float(v) for v in centre), diameter=d, hu=hu, lobes=tuple(lobes),
                  spicules=tuple(spicules), core=core, margin=margin, juxtapleural=bool(juxta), side=side)


def _nodule_distance(nod: Nodule, q: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Signed distance (mm) to the nodule surface at body-frame offsets ``q`` (..., 3) and the
    squared z share of the direction to the nearest member (for the partial-volume width)."""
    q = q.astype(np.float32)
    best = np.full(q.shape[:-1], np.inf, np.float32)
    ez = np.zeros(q.shape[:-1], np.float32)

    def take(w, r):
        n2 = (w * w).sum(-1) + np.float32(1e-9)
        d = np.sqrt(n2) - r
        upd = d < best
        np.copyto(best, d, where=upd)
        np.copyto(ez, w[..., 2] ** 2 / n2, where=upd)

    for dx, dy, dz, r in nod.lobes:
        take(q - np.array([dx, dy, dz], np.float32), np.float32(r))
    for ux, uy, uz, length, r in nod.spicules:
        u = np.array([ux, uy, uz], np.float32)
        s = np.clip(q @ u, 0, length)
        take(q - s[..., None] * u, (r * (1 - 0.6 * s / length)).astype(np.float32))
    return best, ez


def nodule_volume(nod: Nodule) -> float:
    """Volume (mm^3) of the nodule shape (all of it, spicules included), on a fine lattice."""
    R = max(max(np.linalg.norm(lb[:3]) + lb[3] for lb in nod.lobes),
            max((s[3] for s in nod.spicules), default=0.0))
    h = max(nod.diameter / 28, 0.1)
    ax = np.arange(-R - h, R + h, h) + h / 2
    q = np.stack(np.meshgrid(ax, ax, ax, indexing="ij"), -1)
    d, _ = _nodule_distance(nod, q)
    return float((d < 0).sum() * h ** 3)


def _nodule_patch(nod: Nodule, scan: Scan, rng: np.random.Generator):
    """(slices, outer fraction, outer HU, core fraction or None) for one nodule, full resolution."""
    R = max(max(np.linalg.norm(lb[:3]) + lb[3] for lb in nod.lobes),
            max((s[3] for s in nod.spicules), default=0.0)) + 2 * scan.thickness
    c = scan.to_voxel(np.array(nod.centre))
    half = np.array([R / scan.dz, R / scan.pixel, R / scan.pixel])
    lo = np.maximum(np.floor(c - half).astype(int), 0)
    hi = np.minimum(np.ceil(c + half).astype(int) + 1, scan.shape)
    if (hi <= lo).any():
        return None
    kk, ii, jj = (np.arange(lo[k], hi[k]) for k in range(3))
    x0, y0, z0 = scan.origin
    xp = (x0 + jj * scan.pixel)[None, None, :]
    yp = (y0 + ii * scan.pixel)[None, :, None]
    zp = (z0 + kk * scan.dz)[:, None, None]
    X, Y, Z = scan.to_body(xp, yp, zp)
    X, Y, Z = np.broadcast_arrays(X, Y, Z)
    q = np.stack([X - nod.centre[0], Y - nod.centre[1], Z - nod.centre[2]], -1)
    d, ez = _nodule_distance(nod, q)
    pxe2 = scan.pixel ** 2 + _psf(scan) ** 2
    w = np.sqrt(ez * scan.thickness ** 2 + (1 - ez) * pxe2)
    f = np.clip(-d / w + 0.5, 0, 1)
    hu = np.full(f.shape, nod.hu, np.float32)
    if nod.kind in ("ground-glass", "part-solid"):
        tex = ndimage.gaussian_filter(rng.standard_normal(f.shape), (0.6, 1.5, 1.5))
        hu = hu + (40 / max(tex.std(), 1e-6)) * tex.astype(np.float32)
    core = None
    if nod.core is not None:
        cx, cy, cz, rc, chu = nod.core
        wq = q - [cx, cy, cz]
        n = np.linalg.norm(wq, axis=-1)
        ezc = np.abs(wq[..., 2]) / np.maximum(n, 1e-6)
        wc = np.sqrt(ezc ** 2 * scan.thickness ** 2 + (1 - ezc ** 2) * pxe2)
        core = (np.clip((rc - n) / wc + 0.5, 0, 1).astype(np.float32), chu)
    sl = tuple(slice(int(lo[k]), int(hi[k])) for k in range(3))
    return sl, f.astype(np.float32), hu, core


# --------------------------------------------------------------------------- rendering


def _up2(a: np.ndarray, out: np.ndarray) -> None:
    """Bilinear x2 upsampling in-plane (cell-centred), (nk, h, w) -> out (nk, 2h, 2w)."""
    nk, h, w = a.shape
    t = np.empty((nk, h, 2 * w), np.float32)
    t[:, :, 0::2] = a
    t[:, :, 1::2] = a
    d = a[:, :, 1:] - a[:, :, :-1]
    d *= 0.25
    t[:, :, 2::2] -= d
    t[:, :, 1:-1:2] += d
    out[:, 0::2] = t
    out[:, 1::2] = t
    d = t[:, 1:] - t[:, :-1]
    d *= 0.25
    out[:, 2::2] -= d
    out[:, 1:-1:2] += d


def _psf(scan: Scan) -> float:
    """In-plane blur of the reconstruction (mm, ramp width), sharper for lung kernels."""
    return 0.9 if scan.kernel == "soft" else 0.55


def _plane_for(body: Body, scan: Scan, factor: int) -> _Plane:
    n = scan.matrix // factor
    step = scan.pixel * factor
    off = (factor - 1) / 2 * scan.pixel
    x0, y0, _ = scan.origin
    xp = (x0 + off + np.arange(n) * step).astype(np.float32)
    yp = (y0 + off + np.arange(n) * step).astype(np.float32)
    Xp, Yp = np.meshgrid(xp, yp)
    X, Y, _ = scan.to_body(Xp, Yp, 0.0)
    wxy = math.hypot(step, _psf(scan))
    return _Plane(body, X.astype(np.float32), Y.astype(np.float32), Xp, Yp, wxy, scan.thickness, _table_y(body, scan))


def _back(body: Body) -> float:
    """Body-frame Y of the flattened back (where it lies on the table)."""
    t_rib, m0, m_para, _, fat0 = body.wall
    return (body.cavity[1] + t_rib + m0 + m_para + 0.39 * fat0) * (1 - body.flatten)


def _table_y(body: Body, scan: Scan) -> float:
    """Patient y of the table top, under the back (ignoring the small roll)."""
    return scan.body_xy[1] + _back(body) + 1


def _render(body: Body, scan: Scan, blood: Tubes, air: Tubes, walls: np.ndarray, nodules: list[Nodule],
            rng_noise: np.random.Generator, rng_nod: np.random.Generator) -> np.ndarray:
    shape = scan.shape
    sp = scan.spacing
    width = (scan.thickness, math.hypot(scan.pixel, _psf(scan)))
    h = body.hu
    # blood (vessels, oesophagus): capsules, or material splats for tubes thinner than ~1.5 pixels
    F = np.zeros(shape, np.float32)
    fbox = _empty_boxes(shape)
    va, vb = scan.to_voxel(blood.a), scan.to_voxel(blood.b)
    thin = np.maximum(blood.r0, blood.r1) < 1.2 * scan.pixel
    _capsules(F, va[~thin], vb[~thin], blood.r0[~thin], blood.r1[~thin], sp, width, boxes=fbox)
    _splat(F, va[thin], vb[thin], blood.r0[thin], blood.r1[thin], sp, boxes=fbox)
    np.minimum(F, 1.0, out=F)
    layers = [(F, 1.0, h["blood"], fbox)]
    # airways: wall (outer) then lumen, uint8 fractions
    aa, ab = scan.to_voxel(air.a), scan.to_voxel(air.b)
    wall, lumen = np.zeros(shape, np.uint8), np.zeros(shape, np.uint8)
    mbox = _empty_boxes(shape)
    _capsules([(wall, walls, 255.0), (lumen, 0.0, 255.0)], aa, ab, air.r0, air.r1, sp, width, boxes=mbox)
    layers += [(wall, 1 / 255, h["wall"], mbox), (lumen, 1 / 255, -1000.0, mbox)]
    patches = [p for p in (_nodule_patch(n, scan, rng_nod) for n in nodules) if p is not None]
    factor = 2 if scan.matrix >= 384 and scan.matrix % 2 == 0 else 1
    plane = _plane_for(body, scan, factor)
    out = np.empty(shape, np.int16)
    z_body = scan.origin[2] + np.arange(scan.nz) * scan.dz - scan.z_carina
    # noise: sums of uniform int8 fields (close to Gaussian), correlated in-plane
    n = scan.matrix
    passes = 1 if scan.kernel == "lung" else 2
    norm = 73.9 * (2.0 if passes == 1 else 6.0)
    shoulders = 1 + 0.35 * np.clip((z_body - (body.apex_z - 40)) / 60, 0, 1)
    # outside the 500 mm scan field of view (centred on the isocentre, x = y = 0) the scanner pads -1024
    xs = scan.origin[0] + np.arange(n) * scan.pixel
    ys = scan.origin[1] + np.arange(n) * scan.pixel
    outside = np.hypot(xs[None, :], ys[:, None]) > 250.0
    chunk = 8
    buf = np.empty((chunk, n, n), np.float32)
    for k0 in range(0, scan.nz, chunk):
        k1 = min(k0 + chunk, scan.nz)
        m = k1 - k0
        hu = buf[:m]
        static = plane.slab(z_body[k0:k1])
        if factor == 2:
            _up2(static, hu)
        else:
            hu[...] = static
        for dense, scale, value, boxes in layers:
            y0, y1 = boxes[k0:k1, 0].min(), boxes[k0:k1, 1].max()
            x0, x1 = boxes[k0:k1, 2].min(), boxes[k0:k1, 3].max()
            if y1 <= y0 or x1 <= x0:
                continue
            sub = hu[:, y0:y1, x0:x1]
            frac = dense[k0:k1, y0:y1, x0:x1].astype(np.float32)
            if scale != 1.0:
                frac *= np.float32(scale)
            frac *= value - sub
            sub += frac
        for sl, f, nhu, core in patches:
            a0, a1 = max(sl[0].start, k0), min(sl[0].stop, k1)
            if a0 >= a1:
                continue
            s = slice(a0 - sl[0].start, a1 - sl[0].start)
            sub = hu[a0 - k0:a1 - k0, sl[1], sl[2]]
            np.maximum(sub, sub + f[s] * (nhu[s] - sub), out=sub)  # ground glass leaves vessels visible
            if core is not None:
                sub += core[0][s] * (core[1] - sub)
        e = passes + 1
        x = rng_noise.integers(-128, 128, size=(m, n + e - 1, n + e - 1), dtype=np.int8).astype(np.int16)
        for _ in range(passes):
            x = x[:, 1:] + x[:, :-1]
            x = x[:, :, 1:] + x[:, :, :-1]
        hu += x * (scan.noise_sd / norm * shoulders[k0:k1, None, None]).astype(np.float32)
        np.clip(hu, -1024, 3071, out=hu)
        np.rint(hu, out=hu)
        if outside.any():
            hu[:, outside] = -1024
        out[k0:k1] = hu
    return out


# --------------------------------------------------------------------------- public API


def sample(
    rng: np.random.Generator,
    *,
    n_nodules: int | None = None,
    positive: bool | None = None,
    nodule_types: tuple[str, ...] | None = None,
    diameter_mm: tuple[float, float] | None = None,
    matrix: int = 512,
    slice_spacing: float | None = None,
    n_slices: int | None = None,
    kernel: str | None = None,
    protocol: str | None = None,
    sex: str | None = None,
    age: float | None = None,
) -> ChestCtSample:
    """Draw one chest CT (pure; no I/O).

    n_nodules: exact count (0-5 drawn when None: 30 % none); ``positive``
    True/False forces >= 1 / 0 when ``n_nodules`` is None. nodule_types:
    restrict the types drawn; diameter_mm: (lo, hi) range. matrix: in-plane
    size (FOV fixed by the patient, so smaller matrices mean coarser
    pixels); slice_spacing: mm (drawn from SLICE_SPACINGS, 1.25-2.5, when None;
    1.0 or 0.625 on request); n_slices: fixed
    slice count centred on the lungs (else apex to below the bases). kernel:
    "soft" | "lung"; protocol: one of PROTOCOLS.

    The anatomy, scanner, nodules and noise come from separate streams of
    ``rng``, so the same seed with and without nodules gives the same
    study apart from the nodules.
    """
    seeds = rng.integers(0, 2**63 - 1, size=5)
    r_body, r_scan, r_nod, r_noise, r_tex = (np.random.default_rng(int(s)) for s in seeds)
    body = draw_body(r_body, sex, age)
    scan = _draw_scan(r_scan, body, matrix=int(matrix), slice_spacing=slice_spacing, n_slices=n_slices,
                      kernel=kernel, protocol=protocol)
    z_lo = scan.origin[2] - scan.z_carina
    z_hi = z_lo + (scan.nz - 1) * scan.dz
    med_blood, trachea, marks = _mediastinal_tubes(r_body, body)
    lmap = _lung_map(body, med_blood, trachea)
    lung_blood, bronchi, walls = _lung_trees(r_body, lmap, marks)
    blood = Tubes.cat([med_blood, lung_blood])
    air = Tubes.cat([trachea, bronchi])
    air_walls = np.concatenate([np.full(len(trachea.r0), _u(r_body, 1.5, 2.5)), walls])
    if n_nodules is None:
        if positive is None:
            n_nodules = 0 if r_nod.random() < 0.3 else int(r_nod.choice([1, 2, 3, 4, 5], p=[.4, .25, .15, .12, .08]))
        else:
            n_nodules = int(r_nod.choice([1, 2, 3, 4, 5], p=[.4, .25, .15, .12, .08])) if positive else 0
    big = Tubes.cat([blood.take(np.maximum(blood.r0, blood.r1) >= 1.5),
                     Tubes(air.a, air.b, air.r0 + air_walls, air.r1 + air_walls)])
    nodules = _draw_nodules(r_nod, lmap, big, int(n_nodules), nodule_types, diameter_mm, (z_lo, z_hi))
    hu = _render(body, scan, blood, air, air_walls, nodules, r_noise, r_tex)
    truth = _truth(body, scan, nodules)
    return ChestCtSample(hu=hu, spacing=scan.spacing, origin=scan.origin, slice_thickness=scan.thickness,
                         truth=truth, body=body, scan=scan)


def _truth(body: Body, scan: Scan, nodules: list[Nodule]) -> dict[str, Any]:
    items = []
    for nod in nodules:
        centre_p = scan.to_patient(np.array(nod.centre))
        vox = scan.to_voxel(np.array(nod.centre))
        vol = nodule_volume(nod)
        R = nod.diameter / 2
        item = {
            "type": nod.kind,
            "centre_mm": [round(float(v), 2) for v in centre_p],
            "centre_voxel_zyx": [round(float(v), 2) for v in vox],
            "diameter_mm": round(nod.diameter, 2),
            "volume_mm3": round(vol, 1),
            "equivalent_diameter_mm": round((6 * vol / math.pi) ** (1 / 3), 2),
            "hu": round(nod.hu, 1),
            "margin": nod.margin,
            "juxtapleural": nod.juxtapleural,
            "side": nod.side,
            "slices": [max(0, int(math.floor(vox[0] - R / scan.dz))),
                       min(scan.nz - 1, int(math.ceil(vox[0] + R / scan.dz)))],
        }
        if nod.core is not None:
            item["solid_diameter_mm"] = round(2 * nod.core[3], 2)
            item["solid_hu"] = round(nod.core[4], 1)
        items.append(item)
    items.sort(key=lambda it: -it["diameter_mm"])
    return {
        "task": "nodule",
        "positive": bool(items),
        "n_nodules": len(items),
        "nodules": items,
        "largest_diameter_mm": items[0]["diameter_mm"] if items else 0.0,
        "patient_sex": body.sex,
        "protocol": scan.protocol,
        "kernel": scan.kernel,
        "slice_thickness_mm": round(scan.thickness, 3),
        "slice_spacing_mm": round(scan.dz, 3),
        "pixel_spacing_mm": round(scan.pixel, 4),
        "matrix": scan.matrix,
        "n_slices": scan.nz,
        "noise_sd_hu": round(scan.noise_sd, 1),
        "kvp": scan.kvp,
        "ctdi_vol_mgy": round(scan.ctdi_vol, 2),
        "dlp_mgy_cm": round(scan.ctdi_vol * (scan.nz * scan.dz + 30) / 10, 1),
    }


def _localizer(body: Body, scan: Scan) -> tuple[np.ndarray, tuple[float, float, float], tuple[float, float]]:
    """AP topogram over the scan range +/- 60 mm: (image (1, rows z, cols x) as HU-like, origin, spacing)."""
    step_x, step_y, step_z = 2.0, 4.0, 2.5
    z_lo = scan.origin[2] - 60
    z_hi = scan.origin[2] + (scan.nz - 1) * scan.dz + 60
    zs = np.arange(z_hi, z_lo, -step_z)  # rows from head to feet
    xs = np.arange(-256, 256, step_x) + scan.body_xy[0]
    ys = np.arange(-200, 200, step_y) + scan.body_xy[1]
    Xp, Yp = np.meshgrid(xs.astype(np.float32), ys.astype(np.float32))
    X, Y, _ = scan.to_body(Xp, Yp, 0.0)
    plane = _Plane(body, X.astype(np.float32), Y.astype(np.float32), Xp, Yp, 4.0, step_z, _table_y(body, scan))
    proj = np.empty((len(zs), len(xs)), np.float32)
    for k0 in range(0, len(zs), 16):
        hu = plane.slab(zs[k0:k0 + 16] - scan.z_carina)
        mu = np.clip(hu + 1000, 0, None) / 1000  # water-equivalent
        proj[k0:k0 + 16] = mu.sum(1) * step_y
    img = 3000 * (1 - np.exp(-proj / 140)) - 1000
    origin = (round(float(xs[0]), 3), round(float(scan.body_xy[1]), 3), round(float(zs[0]), 3))
    return img[None].astype(np.float32), origin, (step_z, step_x)


def _series_names(study: Study, scan: Scan, thick: float) -> tuple[str, str, str, str]:
    """(localizer, main, thick twin) series descriptions and the main kernel name, by vendor habit."""
    soft, lung = _KERNELS.get(study.manufacturer, ("STANDARD", "LUNG"))
    k = lung if scan.kernel == "lung" else soft
    t, tt = f"{scan.thickness:g}", f"{thick:g}"
    if study.manufacturer == "SIEMENS":
        return "Topogram 0.6 T20f", f"Thorax {scan.thickness:.1f} {k}", f"Thorax {thick:.1f} {soft}", k
    if study.manufacturer == "GE MEDICAL SYSTEMS":
        return "Scout", f"{t}mm {k}", f"{tt}mm {soft}", k
    main = f"{'LUNG' if scan.kernel == 'lung' else 'CHEST'} {t}mm {k}"
    return "Surview", main, f"MEDIASTINUM {tt}mm {soft}", k


def generate(rng: np.random.Generator, index: int, folder: Path, *, identity: StudyIdentity | None = None,
             **options: Any) -> dict[str, Any]:
    """Write one chest CT study (localizer, thin main series, 5 mm soft-tissue twin) under ``folder``.

    ``options`` go to `sample` (e.g. ``matrix=128`` in tests).
    """
    protocol = options.pop("protocol", None) or str(rng.choice(list(PROTOCOLS), p=_PROTOCOL_P))
    description = PROTOCOLS[protocol][0]
    study = make_study(rng, index, description, age_years=(50, 80) if protocol == "low-dose" else (25, 90),
                       identity=identity)
    age = (study.date - study.patient.birth_date).days / 365.25
    s = sample(rng, protocol=protocol, sex=study.patient.sex, age=age, **options)
    scan = s.scan
    g = max(1, int(round(5.0 / scan.dz)))  # slices per 5 mm (4-6 mm) soft-tissue slab
    loc_desc, main_desc, thick_desc, kernel_name = _series_names(study, scan, g * scan.dz)
    soft_kernel = _KERNELS.get(study.manufacturer, ("STANDARD", "LUNG"))[0]
    mas = scan.ctdi_vol / (0.075 if scan.kvp == 120 else 0.05)
    common = dict(protocol=description, body_part="CHEST", kvp=scan.kvp)
    # 1: localizer (topogram), a coronal projection
    loc, loc_origin, loc_sp = _localizer(s.body, scan)
    write_ct_series(folder, rng, study, CtSeries(
        number=1, description=loc_desc, kernel="T20f" if study.manufacturer == "SIEMENS" else soft_kernel,
        image_type=("ORIGINAL", "PRIMARY", "LOCALIZER"), window_center=300, window_width=2000,
        exposure_mas=35, ctdi_vol=0.1,
        extra={"ImageOrientationPatient": [1, 0, 0, 0, 0, -1], "ImagePositionPatient": list(loc_origin),
               "SliceLocation": None, "SpacingBetweenSlices": None}, **common),
        loc, (1.0, loc_sp[0], loc_sp[1]), loc_origin, slice_thickness=1.0)
    # 2: thin main series
    lung = scan.kernel == "lung"
    write_ct_series(folder, rng, study, CtSeries(
        number=2, description=main_desc, kernel=kernel_name, window_center=-600 if lung else 40,
        window_width=1500 if lung else 400, exposure_mas=mas, ctdi_vol=scan.ctdi_vol, **common),
        s.hu, s.spacing, s.origin, slice_thickness=s.slice_thickness)
    # 3: thick soft-tissue (mediastinal) twin, averaged from the thin slices
    nz = scan.nz // g
    if nz:
        thick = s.hu[: nz * g].reshape(nz, g, scan.matrix, scan.matrix).astype(np.float32).mean(1)
        if lung:  # a soft kernel: smooth the sharp-kernel noise
            thick = ndimage.uniform_filter(thick, (1, 3, 3))
        origin3 = (s.origin[0], s.origin[1], s.origin[2] + (g - 1) * scan.dz / 2)
        write_ct_series(folder, rng, study, CtSeries(
            number=3, description=thick_desc, kernel=soft_kernel, window_center=40, window_width=400,
            exposure_mas=mas, ctdi_vol=scan.ctdi_vol, **common),
            thick, (g * scan.dz, scan.pixel, scan.pixel), origin3, slice_thickness=g * scan.dz)
    truth = dict(s.truth)
    truth.update(
        main_series_number=2,
        series=[{"number": 1, "description": loc_desc, "role": "localizer"},
                {"number": 2, "description": main_desc, "role": "main"}]
        + ([{"number": 3, "description": thick_desc, "role": "thick-soft-tissue"}] if nz else []),
        study_description=description,
        manufacturer=study.manufacturer,
        model=study.model,
    )
    return truth
