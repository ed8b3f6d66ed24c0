"""The patient: anatomy drawn per study (body, chest wall, lungs, heart, spine), the scan, nodules, tubes."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np


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


def _psf(scan: Scan) -> float:
    """In-plane blur of the reconstruction (mm, ramp width), sharper for lung kernels."""
    return 0.9 if scan.kernel == "soft" else 0.55


def _back(body: Body) -> float:
    """Body-frame Y of the flattened back (where it lies on the table)."""
    t_rib, m0, m_para, _, fat0 = body.wall
    return (body.cavity[1] + t_rib + m0 + m_para + 0.39 * fat0) * (1 - body.flatten)


def _table_y(body: Body, scan: Scan) -> float:
    """Patient y of the table top, under the back (ignoring the small roll)."""
    return scan.body_xy[1] + _back(body) + 1
