"""The child: sex, ages, bone age, and the per-child jitter of anatomy and timing; the tables they come from."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from radtriage.inference.reference import bone_age_sd
from radtriage.synth.options import Options

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



@dataclass(frozen=True, kw_only=True)
class SubjectOptions(Options):
    """What `draw_subject` may be asked for (None: drawn). A given ``bone_age_months`` wins over ``bone_age_z``."""

    age_months: float | None = None
    sex: str | None = None
    bone_age_months: float | None = None
    bone_age_z: float | None = None
    age_range_months: tuple[float, float] = (0.0, 216.0)


def draw_subject(rng: np.random.Generator, **options) -> Subject:
    """Draw a child; ``options`` are `SubjectOptions`."""
    o = SubjectOptions(**options)
    age_months, sex, bone_age_months, bone_age_z = o.age_months, o.sex, o.bone_age_months, o.bone_age_z
    age_range_months = o.age_range_months
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
