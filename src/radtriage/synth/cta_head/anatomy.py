"""The drawn head: skull, brain and CSF as a tissue look-up, skull-base floor, soft-tissue blobs; the grid."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

SEGMENTS = ("ica_t", "m1", "m2")
SIDES = ("left", "right")
DIVISIONS = ("superior", "inferior")
SIGN = {"left": 1.0, "right": -1.0}  # anatomical u (and DICOM x, LPS) grows toward the patient's left

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

