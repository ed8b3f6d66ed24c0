"""Synthetic paediatric left-hand PA radiographs for bone-age assessment (``xr-hand``).

What it models
--------------
A projection radiograph of a child's left hand and wrist, PA, fingers up and
thumb on the image right (the usual display of a left hand PA). The picture is
a line integral of linear attenuation through analytic 3-D shapes:

* soft tissue: forearm, wrist, palm, thenar and hypothenar eminences and five
  fingers as tapered cylinders / ellipsoids (their union, smoothed);
* bones as elliptical-section tubes with a cortical shell over cancellous bone
  (so edges of a shaft look denser than its middle, as on a real film):
  distal radius (with radial inclination) and ulna (with styloid), five
  metacarpals, proximal phalanges, middle phalanges (not the thumb), distal
  phalanges (with tufts); eight carpal bones as ellipsoids (with the hook of
  the hamate end-on as a ring once mature); the thumb's adductor sesamoid.
* every tubular bone has an epiphysis at its growing end (radius and ulna
  distal; metacarpals 2-5 distal; metacarpal 1 and all phalanges proximal).
  An epiphysis is cartilage (soft-tissue density, not drawn) until its
  ossification centre appears, then a small nucleus that widens to the width
  of the metaphysis and caps it; the physis (growth plate) is a lucent gap
  that narrows, fuses and leaves a faint physeal scar.

Maturity follows BONE age; size follows chronological age (nudged toward the
bone age, as taller children tend to be advanced); the DICOM header carries
chronological age (birth and study dates). Bone age = chronological age +
z * SD(age), z ~ N(0, 1) with ~5% drawn as clearly advanced or delayed
(2 <= |z| <= 3.5).

Numbers and where they come from (approximate textbook values)
---------------------------------------------------------------
* Appearance of ossification centres (girls / boys, months): capitate 2/2,
  hamate 3/3, distal radius 10/15, triquetrum 21/30, lunate 36/48, scaphoid
  51/66, trapezium 50/66, trapezoid 54/72, distal ulna 72/90, pisiform
  108/144, adductor sesamoid 132/156; phalangeal and metacarpal epiphyses
  10-24 months in girls (x1.45 in boys) in the Greulich-Pyle order (proximal
  phalanges 3, 2, 4 first; distal phalanges 2 and 5, middle phalanx 5 last).
  Greulich & Pyle, Radiographic Atlas of Skeletal Development of the Hand and
  Wrist (2nd ed., 1959); Garn et al. (1967); Gilsanz & Ratib, Hand Bone Age
  (2005). Each centre's age jitters per child (lognormal, ~10%).
* Complete physeal fusion (bone age, girls / boys, months): distal phalanges
  165/190, middle 171/195, proximal 174/198, metacarpals 177/201 (thumb
  173/197), distal ulna 186/207, distal radius 193/213; a physis is
  "fusing" in the 15 months before. Distal phalanges first, radius last.
* SD of bone age about chronological age: 1.5-3 months in infancy rising to
  10-12 months from school age (Greulich-Pyle / Brush Foundation tables).
* Hand length (wrist crease to tip of the middle finger), boys / girls:
  ~62/60 mm at birth, ~110/108 mm at 4 y, ~146 mm at 10 y, ~190/174 mm
  grown (child anthropometry, e.g. Snyder et al. 1977); adult bone lengths
  and widths from standard anatomy texts (third metacarpal ~64 mm, etc.).
* Linear attenuation at the ~35 keV effective energy of a 50-60 kVp hand
  beam (NIST XCOM / ICRU 44 tissues): soft tissue 0.031 /mm, cortical bone
  0.17 /mm, cancellous bone 0.065 /mm; bone mineral rises ~20% with maturity.
* Detector: quantum noise in the log domain growing as exp(A/2) behind
  denser parts, detector blur 0.07-0.15 mm (CR blurrier), heel-effect
  gradient, histogram-based processing with a tone curve and unsharp-mask
  edge enhancement, optional collimator shutters, a lead "L" marker.

What it does NOT model
----------------------
Scatter and the grid; the real shapes of carpal bones (ellipsoids here),
joint surfaces and the metaphyseal details Tanner-Whitehouse scoring uses
(only the size/capping/fusion stages are drawn); flexed or overlapping
fingers; growth disorders, fractures, dysplasias, Madelung deformity, rickets
or any pathology; sex differences in bone shape beyond size and timing; hand
size that would betray the chronological age less than real life does.
The oblique view is a cheap foreshortened PA, not a real 45-degree projection.
"""

from __future__ import annotations

import datetime as dt
import math
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
from scipy import ndimage

from radtriage.inference.reference import bone_age_sd
from radtriage.synth.dicom import StudyIdentity, make_study, write_radiograph, xr_modality_of

DAYS_PER_MONTH = 365.25 / 12
MU_SOFT, MU_CORTEX, MU_CANCELLOUS = 0.031, 0.17, 0.065  # per mm, ~35 keV effective
MAX_BONE_AGE = {"F": 216.0, "M": 228.0}  # end of the Greulich-Pyle atlas
TEMPLATE_HAND_LENGTH = 196.0  # mm, wrist crease (y=10) to tip of the middle finger (y~206)

# Carpals in the adult template (mm; x toward the thumb, y distal, 0 at the distal radius):
# centre x, y, semi-axes a (along the angle) and b, angle from +x in degrees.
CARPALS: dict[str, tuple[float, float, float, float, float]] = {
    "capitate": (0.0, 26.0, 7.0, 11.5, 0.0),
    "hamate": (-10.5, 25.0, 7.0, 10.0, -10.0),
    "triquetrum": (-11.5, 12.5, 7.0, 6.0, -30.0),
    "lunate": (0.0, 10.0, 8.0, 7.0, 0.0),
    "scaphoid": (12.5, 13.0, 12.0, 6.5, 55.0),
    "trapezium": (17.5, 26.0, 7.5, 6.5, 35.0),
    "trapezoid": (9.5, 29.0, 6.0, 6.5, 0.0),
    "pisiform": (-13.5, 15.5, 5.0, 4.5, 0.0),
}
CARPAL_ORDER = tuple(CARPALS)  # the usual order of appearance

# Onset of ossification (months of bone age): girls, boys.
ONSET: dict[str, tuple[float, float]] = {
    "capitate": (2, 2), "hamate": (3, 3), "triquetrum": (21, 30), "lunate": (36, 48),
    "scaphoid": (51, 66), "trapezium": (50, 66), "trapezoid": (54, 72), "pisiform": (108, 144),
    "radius": (10, 15), "ulna": (72, 90), "sesamoid": (132, 156),
}
_TUBULAR_GIRLS = {
    "pp3": 10, "pp2": 11, "pp4": 11, "dp1": 12, "mc2": 13, "pp5": 14, "mc3": 15, "mp3": 16,
    "mp4": 16, "mc4": 17, "mp2": 17, "mc5": 19, "dp3": 19, "dp4": 19, "mc1": 20, "pp1": 21,
    "dp5": 24, "dp2": 24, "mp5": 24,
}
ONSET.update({k: (float(v), round(v * 1.45, 1)) for k, v in _TUBULAR_GIRLS.items()})
# Complete physeal fusion (months of bone age): girls, boys. Keyed by bone group.
FUSION: dict[str, tuple[float, float]] = {
    "dp": (165, 190), "mp": (171, 195), "pp": (174, 198), "mc": (177, 201), "mc1": (173, 197),
    "ulna": (186, 207), "radius": (193, 213),
}
FUSING_MONTHS = 15.0

# Hand length (mm) by age (months).
_LEN_AGE = (0, 6, 12, 24, 36, 48, 60, 72, 96, 120, 144, 168, 192, 216, 240)
_LEN_BOYS = (62, 75, 84, 95, 103, 110, 117, 123, 135, 146, 159, 177, 187, 190, 191)
_LEN_GIRLS = (60, 73, 82, 93, 101, 108, 115, 121, 133, 146, 162, 170, 173, 174, 174)

# Rays: metacarpal base (x, y), angle (deg, + toward the thumb), lengths MC, PP, MP, DP (mm),
# half-widths (base, shaft, head) of MC, PP, MP, DP, and the finger's soft-tissue radius.
_RAYS = {
    1: ((24.0, 33.0), 38.0, (46, 32, 0, 24),
        ((7.0, 4.8, 7.0), (7.0, 4.8, 5.8), None, (5.5, 3.3, 4.5)), 10.0),
    2: ((10.0, 38.0), 6.0, (68, 40, 24, 18),
        ((6.3, 4.2, 6.5), (6.5, 4.0, 5.0), (5.5, 3.3, 4.3), (4.8, 2.5, 3.5)), 8.5),
    3: ((0.5, 39.0), 0.0, (64, 45, 28, 20),
        ((6.0, 4.2, 6.8), (6.5, 4.1, 5.1), (5.6, 3.4, 4.4), (4.9, 2.6, 3.6)), 9.0),
    4: ((-9.5, 38.0), -6.0, (57, 42, 26, 19),
        ((5.0, 3.8, 6.2), (6.2, 3.9, 4.9), (5.4, 3.2, 4.2), (4.7, 2.5, 3.5)), 8.5),
    5: ((-18.0, 36.0), -12.0, (53, 33, 18, 17),
        ((5.2, 3.6, 5.8), (5.5, 3.4, 4.3), (4.6, 2.8, 3.6), (4.2, 2.2, 3.1)), 7.5),
}
_EPI_HEIGHT = {"mc": 10.0, "mc1": 6.0, "pp": 4.5, "mp": 4.0, "dp": 3.5, "radius": 9.0, "ulna": 7.0}
_PHYSIS_GAP = {"mc": 1.4, "mc1": 1.2, "pp": 1.2, "mp": 1.1, "dp": 1.0, "radius": 2.0, "ulna": 1.8}

STUDY_DESCRIPTIONS = (
    "XR BONE AGE", "XR HAND LEFT BONE AGE", "BONE AGE STUDY", "XR HAND LT 1V BONE AGE",
    "RAD HAND LEFT FOR BONE AGE", "X-RAY LEFT HAND (BONE AGE)",
)
PA_DESCRIPTIONS = ("HAND PA LEFT", "L HAND PA", "Hand PA Lt", "BONE AGE PA", "LEFT HAND PA")
OBLIQUE_DESCRIPTIONS = ("HAND OBL LEFT", "L HAND OBLIQUE", "Hand Obl Lt")
# Detector pixel pitch (mm) by radiography system model; CR readers offer two.
DETECTOR_SPACING = {
    "FCR PROFECT CS": (0.1, 0.15), "DRX-Evolution": (0.139,), "DigitalDiagnost": (0.143,),
    "CR 30-X": (0.1,),
}
BITS_STORED = {"FCR PROFECT CS": 10, "DRX-Evolution": 12, "DigitalDiagnost": 14, "CR 30-X": 12}


# ----------------------------------------------------------------------------- the child


@dataclass(frozen=True)
class Subject:
    """One child: ages, sex, and the per-child jitter of anatomy and timing."""

    sex: str
    age_months: float
    bone_age_months: float
    bone_age_sd: float
    size: float  # template -> real mm
    onsets: dict[str, float]
    fusions: dict[str, float]
    finger_scale: tuple[float, ...]  # per digit 1..5
    finger_spread: tuple[float, ...]  # degrees, per digit 1..5
    width_scale: float

    @property
    def bone_age_z(self) -> float:
        return (self.bone_age_months - self.age_months) / self.bone_age_sd


def hand_length_mm(age_months: float, sex: str) -> float:
    return float(np.interp(age_months, _LEN_AGE, _LEN_BOYS if sex == "M" else _LEN_GIRLS))


def _group(name: str) -> str:
    return name if name in ("radius", "ulna", "mc1") else name[:2]


def draw_subject(
    rng: np.random.Generator,
    *,
    age_months: float | None = None,
    sex: str | None = None,
    bone_age_months: float | None = None,
    bone_age_z: float | None = None,
    age_range_months: tuple[float, float] = (0.0, 216.0),
) -> Subject:
    """Draw a child. A given ``bone_age_months`` wins over ``bone_age_z``."""
    drawn_sex = "F" if rng.random() < 0.5 else "M"
    sex = sex or drawn_sex
    drawn_age = rng.uniform(*age_range_months)
    age = float(drawn_age if age_months is None else age_months)
    sd = bone_age_sd(age)
    outlier, sign, z_out, z_norm = rng.random(), rng.choice((-1.0, 1.0)), rng.uniform(2.0, 3.5), rng.normal()
    z = (sign * z_out if outlier < 0.05 else z_norm) if bone_age_z is None else bone_age_z
    ba = age + z * sd if bone_age_months is None else bone_age_months
    ba = float(np.clip(ba, 0.0, MAX_BONE_AGE[sex]))
    size_age = age + 0.5 * (ba - age)
    size = hand_length_mm(size_age, sex) / TEMPLATE_HAND_LENGTH * math.exp(rng.normal(0, 0.05))
    k = 1 if sex == "M" else 0
    onsets = {n: float(v[k] * math.exp(rng.normal(0, 0.10))) for n, v in ONSET.items()}
    fusions = {}
    for n in ("radius", "ulna", *(f"{b}{d}" for b in ("mc", "pp", "dp") for d in range(1, 6)),
              *(f"mp{d}" for d in range(2, 6))):
        fusions[n] = float(FUSION[_group(n)][k] + rng.normal(0, 3.0))
    spread = rng.normal(0, 2.5, 5) + rng.uniform(-2, 4) * np.array([1.0, 0.6, 0, -0.6, -1.0])
    return Subject(
        sex=sex, age_months=age, bone_age_months=ba, bone_age_sd=sd, size=size,
        onsets=onsets, fusions=fusions,
        finger_scale=tuple(float(math.exp(rng.normal(0, 0.03))) for _ in range(5)),
        finger_spread=tuple(float(v) for v in spread),
        width_scale=float(math.exp(rng.normal(0, 0.05))),
    )


# ----------------------------------------------------------------------------- the skeleton


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


# ----------------------------------------------------------------------------- geometry


@dataclass(frozen=True)
class _View:
    """Template (mm) -> image (mm, x right, y down): P = origin + M p."""

    matrix: np.ndarray
    inverse: np.ndarray
    origin: np.ndarray
    spacing: float
    shape: tuple[int, int]
    size: float  # template -> real mm

    def to_px(self, p) -> tuple[float, float]:
        x, y = self.origin + self.matrix @ np.asarray(p, float)
        return float(y / self.spacing), float(x / self.spacing)

    def window(self, pts: np.ndarray) -> tuple[slice, slice, np.ndarray, np.ndarray] | None:
        """Pixel window around template points, and the template coordinates of its pixels."""
        img = self.origin[:, None] + self.matrix @ pts.T
        c0, c1 = np.floor(img[0].min() / self.spacing), np.ceil(img[0].max() / self.spacing) + 1
        r0, r1 = np.floor(img[1].min() / self.spacing), np.ceil(img[1].max() / self.spacing) + 1
        r0, c0 = max(int(r0), 0), max(int(c0), 0)
        r1, c1 = min(int(r1), self.shape[0]), min(int(c1), self.shape[1])
        if r1 <= r0 or c1 <= c0:
            return None
        ys = np.arange(r0, r1, dtype=np.float32)[:, None] * self.spacing - self.origin[1]
        xs = np.arange(c0, c1, dtype=np.float32)[None, :] * self.spacing - self.origin[0]
        inv = self.inverse
        return (slice(r0, r1), slice(c0, c1),
                inv[0, 0] * xs + inv[0, 1] * ys, inv[1, 0] * xs + inv[1, 1] * ys)


def _thick(r2: np.ndarray, depth: float) -> np.ndarray:
    return (2.0 * depth) * np.sqrt(np.maximum(r2, 0.0))


def _step(z: np.ndarray, px: float) -> np.ndarray:
    return np.clip(z / px + 0.5, 0.0, 1.0)


def _tube_attenuation(t: _Tube, view: _View, out: np.ndarray, medullary: np.ndarray, mineral: float):
    rmax = max(t.radii) * 1.1
    ux, uy = t.u
    nx, ny = -uy, ux
    ends = np.array([[-rmax, -rmax], [-rmax, rmax], [t.length + rmax, -rmax], [t.length + rmax, rmax]])
    pts = np.array(t.p0) + ends[:, :1] * np.array(t.u) + ends[:, 1:] * np.array((nx, ny))
    win = view.window(pts)
    if win is None:
        return
    rows, cols, x, y = win
    dx, dy = x - t.p0[0], y - t.p0[1]
    a = dx * ux + dy * uy
    d = dx * nx + dy * ny
    if t.tilt:
        a = a + t.tilt * d
    r0, rs, r1 = t.radii
    f0, f1 = t.flares
    ac = np.clip(a, 0.0, t.length)
    w0 = np.clip(1.0 - ac / f0, 0, 1) ** 2
    w1 = np.clip(1.0 - (t.length - ac) / f1, 0, 1) ** 2
    r = rs + (r0 - rs) * w0 + (r1 - rs) * w1
    ct = t.cortex + (0.6 - t.cortex) * np.maximum(w0, w1) ** 0.5
    ri = np.maximum(r - ct, 0.0)
    e = np.where(a < 0, -a, np.where(a > t.length, a - t.length, 0.0)) * 2.5
    d2 = d * d + e * e
    t_out = _thick(r * r - d2, t.depth)
    t_in = _thick(ri * ri - d2, t.depth)
    px = view.spacing / view.size
    far = _step(t.length - t.trim - a, px)
    if t.epi_height == 0 or t.fused:
        shaft, epi_out, epi_in = far, 0.0, 0.0
    else:
        h = t.epi_height
        shaft = _step(a - (h + t.gap / 2), px) * far
        epi_out = epi_in = 0.0
        if t.nucleus is not None:
            hn, wn, cn = t.nucleus
            region = _step(h - t.gap / 2 - a, px)
            q = 1.0 - ((a - h / 2) / hn) ** 2 - (d / wn) ** 2
            rim = 0.5
            qi = 1.0 - ((a - h / 2) / max(hn - rim, 0.2)) ** 2 - (d / max(wn - rim, 0.2)) ** 2
            epi_out = np.minimum(t_out, 2 * cn * np.sqrt(np.maximum(q, 0))) * region
            epi_in = np.minimum(t_in, 2 * max(cn - rim, 0.2) * np.sqrt(np.maximum(qi, 0))) * region
    outer = t_out * shaft + epi_out
    inner = t_in * shaft + epi_in
    trab = (MU_CANCELLOUS - MU_SOFT) * inner
    att = mineral * ((MU_CORTEX - MU_SOFT) * (outer - inner) + trab)
    if t.scar > 0:
        band = np.exp(-0.5 * ((a - t.epi_height) / 0.35) ** 2)
        att = att + mineral * 0.35 * t.scar * (MU_CORTEX - MU_CANCELLOUS) * band * t_in * far
    out[rows, cols] += att * view.size
    medullary[rows, cols] += trab * view.size
    return rows, cols


def _blob_attenuation(b: _Blob, view: _View, out: np.ndarray, medullary: np.ndarray, mineral: float):
    m = max(b.a, b.b) * 1.05
    pts = np.array(b.centre) + np.array([[-m, -m], [-m, m], [m, -m], [m, m]])
    win = view.window(pts)
    if win is None:
        return
    rows, cols, x, y = win
    ca, sa = math.cos(math.radians(b.angle)), math.sin(math.radians(b.angle))
    dx, dy = x - b.centre[0], y - b.centre[1]
    u, v = dx * ca + dy * sa, -dx * sa + dy * ca
    t_out = _thick(1.0 - (u / b.a) ** 2 - (v / b.b) ** 2, b.c)
    ai, bi, ci = max(b.a - b.rim, 0.3), max(b.b - b.rim, 0.3), max(b.c - b.rim, 0.3)
    t_in = _thick(1.0 - (u / ai) ** 2 - (v / bi) ** 2, ci)
    trab = (MU_CANCELLOUS - MU_SOFT) * t_in
    out[rows, cols] += mineral * ((MU_CORTEX - MU_SOFT) * (t_out - t_in) + trab) * view.size
    medullary[rows, cols] += trab * view.size
    return rows, cols


def _soft_tissue(subject: Subject, tubes: list[_Tube], view: _View) -> np.ndarray:
    """Soft-tissue path length (real mm), computed on a coarse grid and interpolated."""
    f = max(1, int(round(0.8 / view.spacing)))
    coarse = _View(view.matrix, view.inverse, view.origin, view.spacing * f,
                   (-(-view.shape[0] // f), -(-view.shape[1] // f)), view.size)
    thick = np.zeros(coarse.shape, np.float32)
    w = subject.width_scale

    def capsule(p0, p1, r0, r1, depth):
        p0, p1 = np.asarray(p0, float), np.asarray(p1, float)
        rm = max(r0, r1)
        pts = np.array([p0 - rm, p0 + rm, p1 - rm, p1 + rm, [p0[0] - rm, p0[1] + rm], [p1[0] + rm, p1[1] - rm]])
        win = coarse.window(pts)
        if win is None:
            return
        rows, cols, x, y = win
        seg = p1 - p0
        length2 = float(seg @ seg)
        tt = np.clip(((x - p0[0]) * seg[0] + (y - p0[1]) * seg[1]) / length2, 0, 1)
        d2 = (x - p0[0] - tt * seg[0]) ** 2 + (y - p0[1] - tt * seg[1]) ** 2
        r = r0 + (r1 - r0) * tt
        np.maximum(thick[rows, cols], _thick(r * r - d2, depth), out=thick[rows, cols])

    def ellipsoid(c, a, b, ang, depth, power=2):
        m = max(a, b)
        win = coarse.window(np.array(c) + np.array([[-m, -m], [-m, m], [m, -m], [m, m]]))
        if win is None:
            return
        rows, cols, x, y = win
        ca, sa = math.cos(math.radians(ang)), math.sin(math.radians(ang))
        u, v = (x - c[0]) * ca + (y - c[1]) * sa, -(x - c[0]) * sa + (y - c[1]) * ca
        q = 1 - np.abs(u / a) ** power - np.abs(v / b) ** power
        np.maximum(thick[rows, cols], _thick(q, depth), out=thick[rows, cols])

    capsule((-3.0, 40.0), (-3.0, -320.0), 30 * w, 36 * w, 0.6)
    ellipsoid((-3.0, 66.0), 40 * w, 42.0, 0, 14.0, power=4)
    ellipsoid((30.0, 47.0), 30.0, 15 * w, 52, 13.0)
    ellipsoid((-25.0, 55.0), 11 * w, 32.0, -4, 11.0)
    by_digit: dict[int, list[_Tube]] = {}
    for t in tubes:
        if t.name[:2] in ("pp", "mp", "dp") or t.name == "mc1":
            by_digit.setdefault(int(t.name[-1]), []).append(t)
    for digit, bones in by_digit.items():
        r = _RAYS[digit][4] * w
        first, last = bones[0], bones[-1]
        start = np.array(first.p0) - np.array(first.u) * 8.0
        end = np.array(last.p0) + np.array(last.u) * (last.length + 3.5)
        capsule(start, end - np.array(last.u) * r * 0.8, r, r * 0.82, 0.85)
    thick = ndimage.gaussian_filter(thick, 2.5 * view.size / coarse.spacing + 0.5) * view.size
    if f == 1:
        return thick
    rows, cols = np.flatnonzero(thick.max(1) > 1e-3), np.flatnonzero(thick.max(0) > 1e-3)
    full = np.zeros(view.shape, np.float32)
    if rows.size:
        r0, r1, c0, c1 = max(rows[0] - 1, 0), rows[-1] + 2, max(cols[0] - 1, 0), cols[-1] + 2
        part = ndimage.zoom(thick[r0:r1, c0:c1], f, order=1, grid_mode=True, mode="nearest")
        dest = full[r0 * f: r1 * f, c0 * f: c1 * f]
        dest[...] = part[: dest.shape[0], : dest.shape[1]]
    return full


# ----------------------------------------------------------------------------- rendering


@dataclass(frozen=True)
class HandSample:
    """One synthetic radiograph: ``image`` float32 (rows, cols) in [0, 1], 1 = most attenuating."""

    image: np.ndarray
    pixel_spacing: float  # mm, square pixels
    truth: dict[str, Any]


def _make_view(rng, subject: Subject, marks, view: str, pixel_spacing: float | None, size: int | None,
               binning: int) -> tuple[_View, dict]:
    theta = math.radians(rng.uniform(-12, 12))
    cx = 1.0 if view == "PA" else rng.uniform(0.6, 0.72)
    s = subject.size
    rot = np.array([[math.cos(theta), -math.sin(theta)], [math.sin(theta), math.cos(theta)]])
    matrix = s * rot @ np.diag([cx, -1.0])
    tips = [marks[f"tip{d}"] for d in range(1, 6)]
    key = np.array(tips + [(-45.0, 60.0), (45.0, 50.0), (-36.0, 0.0), (30.0, 0.0)])
    pts = (matrix @ key.T).T
    lo, hi = pts.min(0) - 14 * s, pts.max(0) + 14 * s
    ext_w, ext_h = hi - lo
    fov_h = float(np.clip(ext_h * rng.uniform(1.1, 1.4), 180, 290))  # ~18x24 to 24x30 cm plates
    fov_w = float(max(fov_h * rng.uniform(0.74, 0.84), ext_w * 1.15))
    drawn_spacing = float(rng.choice((0.1, 0.139, 0.143, 0.15)))
    native = pixel_spacing or drawn_spacing
    spacing = native * binning
    top = rng.uniform(0.05, 0.35) * max(fov_h - ext_h, 0)
    left = (fov_w - ext_w) * rng.uniform(0.3, 0.7)
    origin = np.array([left - lo[0], top - lo[1]])
    if size is not None:  # square training image; same field of view, letterboxed across
        fov = max(fov_h, fov_w)
        origin = origin + np.array([(fov - fov_w) / 2, (fov - fov_h) / 2])
        spacing, shape = fov / size, (size, size)
    else:
        shape = (int(round(fov_h / spacing)), int(round(fov_w / spacing)))
    hand_box = (origin + lo, origin + hi)  # image mm
    info = {"rotation_deg": math.degrees(theta), "hand_box": hand_box, "native_spacing": native}
    return _View(matrix, np.linalg.inv(matrix), origin, spacing, shape, s), info


def _add_marker(att: np.ndarray, spacing: float, field: tuple[int, int, int, int], soft: np.ndarray,
                rng: np.random.Generator) -> None:
    """A lead 'L' in a free corner of the collimated ``field`` (r0, r1, c0, c1)."""
    h = rng.uniform(9, 13) / spacing
    w, stroke = 0.7 * h, max(0.2 * h, 1.0)
    margin = rng.uniform(4, 10) / spacing
    for k in rng.permutation(4):
        r0 = field[0] + margin if k < 2 else field[1] - margin - h
        c0 = field[2] + margin if k % 2 == 0 else field[3] - margin - w
        rs = slice(max(int(r0 - stroke), 0), int(r0 + h + stroke) + 1)
        cs = slice(max(int(c0 - stroke), 0), int(c0 + w + stroke) + 1)
        if r0 < stroke or c0 < stroke or soft[rs, cs].max(initial=0) > 0.5:
            continue
        rr = np.arange(rs.start, rs.stop)[:, None]
        cc = np.arange(cs.start, cs.stop)[None, :]
        vert = (rr >= r0) & (rr < r0 + h) & (cc >= c0) & (cc < c0 + stroke)
        foot = (rr >= r0 + h - stroke) & (rr < r0 + h) & (cc >= c0) & (cc < c0 + w)
        att[rs, cs] += 6.0 * (vert | foot) + 0.08  # lead letter in a plastic holder
        return


def _lowpass(img: np.ndarray, sigma_px: float) -> np.ndarray:
    """A wide Gaussian low-pass, computed on a block-averaged copy."""
    k = max(1, int(sigma_px // 3))
    if k == 1:
        return ndimage.gaussian_filter(img, sigma_px)
    h, w = img.shape
    hh, ww = -(-h // k) * k, -(-w // k) * k
    small = np.pad(img, ((0, hh - h), (0, ww - w)), mode="edge").reshape(hh // k, k, ww // k, k).mean((1, 3))
    small = ndimage.gaussian_filter(small, sigma_px / k)
    return ndimage.zoom(small, k, order=1, grid_mode=True, mode="nearest")[:h, :w]


def _ramp(n: int, lo: int, hi: int) -> np.ndarray:
    """1 inside [lo, hi), 0 outside, with a pixel of penumbra."""
    i = np.arange(n, dtype=np.float32)
    return np.clip(np.minimum(i - lo + 1.0, hi - i), 0, 1) * 1.0


def render(
    rng: np.random.Generator,
    subject: Subject,
    *,
    view: str = "PA",
    size: int | None = None,
    pixel_spacing: float | None = None,
    binning: int = 1,
) -> HandSample:
    """Render one view of ``subject``; all random choices come from ``rng``.

    ``pixel_spacing`` is the detector pitch (drawn when None); ``binning``
    averages n x n detector pixels (cheap extra views); ``size`` instead
    gives a square ``size`` x ``size`` image of the same field.
    """
    if view not in ("PA", "oblique"):
        raise ValueError("view is 'PA' or 'oblique'")
    tubes, blobs, marks = _skeleton(subject)
    geo, info = _make_view(rng, subject, marks, view, pixel_spacing, size, binning)
    native = info["native_spacing"]
    blur_mm = rng.uniform(0.07, 0.15)
    dose = rng.uniform(0.6, 1.6)  # relative detector exposure
    heel = rng.normal(0, 0.03, 2)
    gamma, edge = rng.uniform(0.5, 0.8), rng.uniform(0.0, 0.6)
    headroom, floor = rng.uniform(1.0, 1.12), rng.uniform(0.0, 0.06)
    texture_amp = rng.uniform(0.15, 0.3)
    collimate = rng.random() < 0.5
    shutter_level, shutter_margin = rng.uniform(0.8, 0.97), rng.uniform(0.02, 0.08, 4)
    mineral = 0.8 + 0.2 * float(np.clip(subject.bone_age_months / 144.0, 0, 1))

    shape = geo.shape
    att = np.zeros(shape, np.float32)
    medullary = np.zeros(shape, np.float32)
    boxes = [_tube_attenuation(t, geo, att, medullary, mineral) for t in tubes]
    boxes += [_blob_attenuation(b, geo, att, medullary, mineral) for b in blobs]
    soft = _soft_tissue(subject, tubes, geo)
    # trabecular texture, only where there is bone
    boxes = [b for b in boxes if b is not None]
    r0, r1 = min(b[0].start for b in boxes), max(b[0].stop for b in boxes)
    c0, c1 = min(b[1].start for b in boxes), max(b[1].stop for b in boxes)
    noise = rng.standard_normal((r1 - r0, c1 - c0), dtype=np.float32)
    tex = ndimage.gaussian_filter(noise, max(0.35 / geo.spacing, 0.6), truncate=3.0)
    tex *= texture_amp / max(float(tex.std()), 1e-6)
    att[r0:r1, c0:c1] += medullary[r0:r1, c0:c1] * tex
    att += MU_SOFT * soft
    yy = np.linspace(-0.5, 0.5, shape[0], dtype=np.float32)[:, None]
    xx = np.linspace(-0.5, 0.5, shape[1], dtype=np.float32)[None, :]
    att += heel[0] * yy + heel[1] * xx
    # collimator field (r0, r1, c0, c1): never over the hand, except the forearm below
    (x0, y0), (x1, _) = info["hand_box"]
    if collimate:
        m = shutter_margin * np.array([shape[0], shape[0], shape[1], shape[1]])
        field = (int(min(m[0], y0 / geo.spacing * 0.8)), shape[0] - int(m[1] * 0.4),
                 int(min(m[2], x0 / geo.spacing * 0.8)), shape[1] - int(min(m[3], (shape[1] - x1 / geo.spacing) * 0.8)))
    else:
        field = (0, shape[0], 0, shape[1])
    _add_marker(att, geo.spacing, field, soft, rng)
    # quantum noise (log domain, larger behind dense parts) + electronic noise, then detector blur
    sigma0 = 0.03 / math.sqrt(dose) * (native / geo.spacing)
    sd = np.exp(np.minimum(att, 4.0) * 0.5)
    sd *= sigma0
    sd += 0.01
    sd *= rng.standard_normal(shape, dtype=np.float32)
    sd += att
    noisy = ndimage.gaussian_filter(sd, max(blur_mm / geo.spacing, 0.5), truncate=3.0)
    # processing: histogram-based range, tone curve, edge enhancement
    step = max(1, int(round(0.4 / geo.spacing)))
    sub_soft, sub = soft[::step, ::step], noisy[::step, ::step]
    hand = sub_soft > 1.0
    hi = float(np.percentile(sub[hand], 99.7)) * headroom if hand.any() else 1.0
    v = np.clip(noisy * (1.0 / hi), 0, 1)
    v **= gamma
    v *= 1 - floor
    v += floor
    if edge > 0:
        v += edge * (v - _lowpass(v, 1.5 / geo.spacing))
    if collimate:
        ry = _ramp(shape[0], field[0], field[1])
        rx = _ramp(shape[1], field[2], field[3])
        inside = ry[:, None] * rx[None, :]
        v = v * inside + shutter_level * (1 - inside)
    image = np.clip(v, 0, 1).astype(np.float32)
    return HandSample(image, float(geo.spacing), _truth(subject, geo, marks, info, view))


def _truth(subject: Subject, geo: _View, marks, info, view: str) -> dict[str, Any]:
    ba = subject.bone_age_months
    centres, physes = {}, {}
    for name, p in marks["centres"].items():
        onset = subject.onsets[name]
        centres[name] = {"present": ba >= onset, "onset_months": round(onset, 1),
                         "px": [round(c, 2) for c in geo.to_px(p)]}
    for name, (x, y, u) in marks["physes"].items():
        _, _, status = _stage(subject, name)
        r0, c0 = geo.to_px((x, y))
        r1, c1 = geo.to_px((x + u[0], y + u[1]))
        norm = math.hypot(r1 - r0, c1 - c0)
        physes[name] = {"status": status, "fusion_months": round(subject.fusions[name], 1),
                        "px": [round(r0, 2), round(c0, 2)],
                        "axis_px": [round((r1 - r0) / norm, 4), round((c1 - c0) / norm, 4)]}
    present = sorted(n for n, c in centres.items() if c["present"])
    z = subject.bone_age_z
    return {
        "bone_age_months": round(ba, 2),
        "chronological_age_months": round(subject.age_months, 2),
        "sex": subject.sex,
        "bone_age_sd_months": round(subject.bone_age_sd, 2),
        "bone_age_z": round(z, 3),
        "maturation": "advanced" if z > 2 else ("delayed" if z < -2 else "normal"),
        "view": view,
        "laterality": "L",
        "ossification_centres": present,
        "carpal_count": sum(1 for n in CARPAL_ORDER if centres[n]["present"]),
        "fused_physes": sorted(n for n, p in physes.items() if p["status"] == "fused"),
        "centres": centres,
        "physes": physes,
        "hand_length_mm": round(subject.size * TEMPLATE_HAND_LENGTH, 1),
        "rotation_deg": round(info["rotation_deg"], 2),
        "pixel_spacing_mm": round(geo.spacing, 5),
        "image_shape": list(geo.shape),
    }


def sample(
    rng: np.random.Generator,
    *,
    age_months: float | None = None,
    sex: str | None = None,
    bone_age_months: float | None = None,
    bone_age_z: float | None = None,
    size: int | None = None,
    pixel_spacing: float | None = None,
    view: str = "PA",
    age_range_months: tuple[float, float] = (0.0, 216.0),
) -> HandSample:
    """Draw a child and render one radiograph (pure; no I/O).

    ``size`` gives a square ``size`` x ``size`` image of the same field (for
    training); ``None`` gives the detector's own matrix (~1200-2850 rows at
    ``pixel_spacing`` mm, drawn from 0.1-0.15 when not given).
    """
    subject = draw_subject(rng, age_months=age_months, sex=sex, bone_age_months=bone_age_months,
                           bone_age_z=bone_age_z, age_range_months=age_range_months)
    return render(rng, subject, view=view, size=size, pixel_spacing=pixel_spacing)


# ----------------------------------------------------------------------------- writing


def generate(rng: np.random.Generator, index: int, folder: Path, *,
             identity: StudyIdentity | None = None) -> dict[str, Any]:
    """Write one bone-age study (PA, sometimes also an oblique) and return its truth."""
    folder = Path(folder)
    study_date = dt.date(2026, 1, 1) + dt.timedelta(days=int(rng.integers(0, 300)))
    age_days = int(rng.integers(0, int(18 * 365.25) + 1))
    subject = draw_subject(rng, age_months=age_days / DAYS_PER_MONTH)
    study = make_study(rng, index, STUDY_DESCRIPTIONS[int(rng.integers(len(STUDY_DESCRIPTIONS)))],
                       modality="CR", sex=subject.sex, study_date=study_date,
                       birth_date=study_date - dt.timedelta(days=age_days), identity=identity)
    modality = xr_modality_of(study)
    study = replace(study, station=f"{modality}{study.station[2:]}")
    choices = DETECTOR_SPACING.get(study.model, (0.14,))
    spacing = float(choices[int(rng.integers(len(choices)))])
    bits = BITS_STORED.get(study.model, 12)
    with_oblique = rng.random() < 0.4
    pa_first = rng.random() < 0.85
    pa = render(rng, subject, view="PA", pixel_spacing=spacing)
    pa_number = 1 if (pa_first or not with_oblique) else 2
    series = [{"number": pa_number, "view": "PA",
               "description": PA_DESCRIPTIONS[int(rng.integers(len(PA_DESCRIPTIONS)))]}]
    write_radiograph(folder, rng, study, pa.image, pa.pixel_spacing, series_number=pa_number,
                     description=series[0]["description"], view="PA", bits=bits)
    if with_oblique:  # cheap: half the detector resolution
        obl = render(rng, subject, view="oblique", pixel_spacing=spacing, binning=2)
        number = 3 - pa_number
        desc = OBLIQUE_DESCRIPTIONS[int(rng.integers(len(OBLIQUE_DESCRIPTIONS)))]
        write_radiograph(folder, rng, study, obl.image, obl.pixel_spacing, series_number=number,
                         description=desc, view="", bits=bits)
        series.append({"number": number, "view": "oblique", "description": desc})
    truth = dict(pa.truth)
    truth.update(
        chronological_age_months=round(age_days / DAYS_PER_MONTH, 2),
        modality=modality,
        photometric="MONOCHROME1" if modality == "CR" else "MONOCHROME2",
        main_series_number=pa_number,
        series=sorted(series, key=lambda s: s["number"]),
        scanner=f"{study.manufacturer} {study.model}",
    )
    return truth
