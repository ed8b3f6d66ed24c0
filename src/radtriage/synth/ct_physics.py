"""CT acquisition physics the CT generators share: a parallel-beam scanner in the slice plane.

`scan` takes the noiseless slab (HU, with partial volume along z already
averaged over the slice thickness) and any metal, and gives what a scanner's
reconstruction would show:

- materials: each voxel's HU split into water-like tissue (density 1 + HU/1000
  up to 150 HU) and cortical bone (above 150 HU, the rest water), metal apart;
- polychromatic attenuation: a tungsten spectrum for the kVp (Kramers, through
  7 mm Al), energy-weighted as an integrating detector sees it, attenuated by
  water, bone and metal with their own energy dependence (mass attenuation
  coefficients after NIST XCOM, rounded);
- forward projection (180 degrees of parallel views), a head bowtie filter
  centred on the isocentre (so a head off-centre is noisier at one side);
- quantum noise (Gaussian with Poisson variance, quanta proportional to mAs
  and slice thickness) plus electronic noise; photon starvation behind metal
  clipped at one quantum;
- the scanner's water beam-hardening correction (a fraction of it: residual
  cupping) and a partial bone correction (residual streaks and dark bands
  between dense bones);
- motion as a translation and in-plane turn of the object through the views;
- filtered back-projection with a kernel (``soft``: brain, ``sharp``: bone).

The projector is a distance-driven sparse matrix with the conventions of
scikit-image's `radon`/`iradon` (same angles, detector and centre), which it
matches; ``projector="skimage"`` runs scikit-image itself (slower, the
reference). This is a model for realism of noise texture and artefacts, not
a dosimetry or image-quality simulator: one energy-integrating detector row
per slice, parallel beam, no scatter, no focal-spot or detector blur beyond
the kernel, no through-plane motion.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import numpy as np
from scipy import sparse
from scipy.ndimage import map_coordinates

F32 = np.float32

# mass attenuation coefficients mu/rho (cm^2/g), after NIST XCOM (rounded); densities g/cm^3
_E = np.array([20.0, 30.0, 40.0, 50.0, 60.0, 80.0, 100.0, 150.0])
_MU_RHO = {
    "water": [0.8096, 0.3756, 0.2683, 0.2269, 0.2059, 0.1837, 0.1707, 0.1505],
    "bone": [4.001, 1.331, 0.6655, 0.4242, 0.3148, 0.2229, 0.1855, 0.1480],  # ICRU cortical bone
    "aluminium": [3.441, 1.128, 0.5685, 0.3681, 0.2778, 0.2018, 0.1704, 0.1378],
    "titanium": [15.85, 4.972, 2.214, 1.213, 0.7661, 0.4052, 0.2721, 0.1649],  # clips, shunt valves
    "cocr": [25.68, 8.176, 3.629, 1.958, 1.205, 0.5952, 0.3717, 0.1964],  # cobalt-chrome/steel (iron values)
    "amalgam": [18.36, 27.43, 12.96, 7.168, 4.412, 2.055, 1.147, 0.4268],  # dental amalgam (silver values)
}
DENSITY = {"water": 1.0, "bone": 1.92, "aluminium": 2.699, "titanium": 4.5, "cocr": 8.3, "amalgam": 11.0}
METALS = ("titanium", "cocr", "amalgam")
SOFT_LIMIT_HU = 150.0  # below: water-like tissue of density 1 + HU/1000; above: water and cortical bone
KERNELS = ("soft", "sharp")


def _mu(material: str, energies: np.ndarray) -> np.ndarray:
    """Linear attenuation (1/mm) at ``energies`` keV, log-log interpolated."""
    mr = np.exp(np.interp(np.log(energies), np.log(_E), np.log(_MU_RHO[material])))
    return mr * DENSITY[material] / 10.0


@functools.lru_cache(maxsize=8)
def spectrum(kvp: float) -> tuple[np.ndarray, np.ndarray]:
    """Energies (keV) and energy-weighted detected fractions of a tungsten tube at ``kvp`` through 7 mm Al."""
    e = np.arange(16.0, kvp, 3.0) + 1.5
    n = (kvp - e) / e * np.exp(-_mu("aluminium", e) * 7.0)
    w = n * e
    return e, w / w.sum()


@dataclass(frozen=True)
class _Beam:
    """A spectrum's references: water and bone mu behind a typical head (1/mm), and the water correction."""

    energies: np.ndarray
    weights: np.ndarray
    mu_water: float
    hu_bone: float
    table_p: np.ndarray  # polychromatic water line integral ...
    table_ideal: np.ndarray  # ... and what the water correction maps it to


@functools.lru_cache(maxsize=8)
def beam(kvp: float) -> _Beam:
    e, w = spectrum(kvp)
    hard = w * np.exp(-_mu("water", e) * 150.0)  # the spectrum behind 15 cm of head
    hard /= hard.sum()
    mu_w = float(hard @ _mu("water", e))
    mu_b = float(hard @ _mu("bone", e))
    lengths = np.concatenate([np.linspace(0, 400, 401), np.linspace(410, 4000, 200)])
    p = -np.log(np.exp(-np.outer(lengths, _mu("water", e))) @ w)
    return _Beam(e, w, mu_w, 1000.0 * (mu_b / mu_w - 1.0), p, mu_w * lengths)


def effective_mu(material: str, kvp: float) -> float:
    """A material's mu (1/mm) at the water-corrected reference of ``kvp``, as the image shows it."""
    b = beam(kvp)
    hard = b.weights * np.exp(-_mu("water", b.energies) * 150.0)
    return float(hard @ _mu(material, b.energies) / hard.sum())


# --------------------------------------------------------------------------- projector


@functools.lru_cache(maxsize=2)
def _system(n: int, n_angles: int) -> tuple[sparse.csr_matrix, np.ndarray]:
    """Distance-driven parallel projector (rows: angle*n + detector) over the pixels inside the circle.

    Each pixel's shadow is a box max(|cos|, |sin|) bins wide, split over the (at most two) bins it covers:
    the shadows of a row tile the detector exactly, so a uniform object projects without the moire that
    pixel-driven (linear interpolation) forward projection leaves when pixels and bins are the same size.
    """
    c = n // 2
    yy, xx = np.mgrid[:n, :n]
    x, y = (xx - c).ravel(), (yy - c).ravel()
    inside = np.flatnonzero(x * x + y * y <= (n // 2 - 1) ** 2)
    x, y = x[inside].astype(np.float64), y[inside].astype(np.float64)
    cols = np.arange(inside.size, dtype=np.int32)
    rows, data, idx = [], [], []
    for a, th in enumerate(np.deg2rad(angles(n_angles))):
        w = max(abs(math.cos(th)), abs(math.sin(th)))  # the pixel's footprint: a box this wide (<= 1 bin)
        lo = x * math.cos(th) - y * math.sin(th) + c - w / 2
        i0 = np.floor(lo + 0.5).astype(np.int32)
        f = (np.maximum(lo + w - (i0 + 0.5), 0) / w).astype(F32)  # the part in the next bin
        for d, wgt in ((0, 1 - f), (1, f)):
            ok = (i0 + d >= 0) & (i0 + d < n)
            rows.append(a * n + i0[ok] + d)
            data.append(wgt[ok])
            idx.append(cols[ok])
    mat = sparse.csr_matrix((np.concatenate(data), (np.concatenate(rows), np.concatenate(idx))),
                            shape=(n_angles * n, inside.size), dtype=F32)
    return mat, inside


def angles(n_angles: int) -> np.ndarray:
    return np.linspace(0.0, 180.0, n_angles, endpoint=False)


def project(imgs: np.ndarray, n_angles: int, projector: str = "sparse") -> np.ndarray:
    """Line integrals (pixel units) of each (n, n) image: (k, n_angles, n). Zero outside the circle assumed."""
    k, n, _ = imgs.shape
    if projector == "skimage":
        from skimage.transform import radon

        return np.stack([radon(im, angles(n_angles), circle=True).T for im in imgs]).astype(F32)
    mat, inside = _system(n, n_angles)
    cols = imgs.reshape(k, n * n)[:, inside].T
    return np.ascontiguousarray((mat @ np.ascontiguousarray(cols, F32)).T.reshape(k, n_angles, n))


def backproject(sino: np.ndarray, projector: str = "sparse") -> np.ndarray:
    """Unfiltered back-projection of (k, n_angles, n) sinograms, scaled as scikit-image's `iradon`."""
    k, n_angles, n = sino.shape
    if projector == "skimage":
        from skimage.transform import iradon

        return np.stack([iradon(s.T, angles(n_angles), filter_name=None, circle=True) for s in sino]).astype(F32)
    mat, inside = _system(n, n_angles)
    out = np.zeros((k, n * n), F32)
    out[:, inside] = (mat.T @ np.ascontiguousarray(sino.reshape(k, -1).T, F32)).T
    return out.reshape(k, n, n) * F32(math.pi / (2 * n_angles))


def kernel_window(kernel: str, f: np.ndarray) -> np.ndarray:
    """The kernel's apodisation of the ramp at ``f`` cycles/mm.

    soft (brain kernels, e.g. H31s, STANDARD, UB, FC26): a Gaussian roll-off,
    MTF 50 % near 0.35 lp/mm; sharp (bone kernels, e.g. H70h, BONE, YC, FC35):
    an edge-enhancing rise to 0.7 lp/mm, then a cut-off near 1.2 lp/mm.
    """
    if kernel == "soft":
        return np.exp(-((f / 0.42) ** 2))
    if kernel == "sharp":
        return (1 + 0.8 * (f / 0.7) ** 2) * np.exp(-((f / 1.2) ** 6))
    raise ValueError(f"unknown kernel {kernel!r}; one of {KERNELS}")


def fbp(sino: np.ndarray, pixel: float, kernel: str, projector: str = "sparse") -> np.ndarray:
    """Filtered back-projection of line integrals (dimensionless) into mu (1/mm), ramp as scikit-image's."""
    k, n_angles, n = sino.shape
    size = max(64, int(2 ** math.ceil(math.log2(2 * n))))
    m = np.concatenate([np.arange(1, size / 2 + 1, 2, dtype=int), np.arange(size / 2 - 1, 0, -2, dtype=int)])
    h = np.zeros(size)
    h[0] = 0.25
    h[1::2] = -1 / (math.pi * m) ** 2
    ramp = 2 * np.real(np.fft.fft(h))  # the ramp with no DC offset (Kak & Slaney)
    filt = (ramp * kernel_window(kernel, np.abs(np.fft.fftfreq(size, d=pixel)))).astype(F32)
    spec = np.fft.fft(sino, n=size, axis=2)
    filtered = np.real(np.fft.ifft(spec * filt, axis=2))[:, :, :n].astype(F32)
    return backproject(filtered, projector) / F32(pixel)


# --------------------------------------------------------------------------- the scan


@dataclass(frozen=True)
class Motion:
    """Rigid in-plane motion through the views: a step (jerk) at ``at`` (fraction of the views), or a drift."""

    shift_mm: tuple[float, float] = (0.0, 0.0)
    turn_deg: float = 0.0
    at: float = 0.5
    ramp: float = 0.1  # fraction of the views over which it happens


@dataclass(frozen=True)
class Scan:
    """What a scanner varies, for one series of slices."""

    kvp: float = 120.0
    mas: float = 300.0
    thickness: float = 5.0  # mm: quanta per ray grow with it
    pixel: float = 0.9  # mm, of the projection grid
    electronic_sd: float = 6.0  # quanta per ray and view
    water_correction: float = 1.0  # fraction of the water beam hardening corrected (1 - residual cupping)
    bone_residual: float = 0.5  # fraction of the bone beam hardening left uncorrected
    iso_offset: tuple[float, float] = (0.0, 0.0)  # isocentre (x, y) from the grid centre, mm
    motion: Motion | None = None
    n_angles: int | None = None  # views over 180 degrees; None: as many as detector bins

    @property
    def quanta(self) -> float:
        """Quanta per ray and view without attenuation at the isocentre (calibrated: see `QUANTA_PER_MAS_MM`)."""
        return QUANTA_PER_MAS_MM * self.mas * self.thickness * (self.pixel / 0.9) * (256 / self.views(256))

    def views(self, n: int) -> int:
        return self.n_angles or n


# brain noise about 3.5 HU SD on a 5 mm soft-kernel slice at 300 mAs, 120 kVp, 0.9 mm pixels (typical of
# routine head CT at a CTDIvol near 55 mGy); calibrated once with `scan` on the synthetic head
QUANTA_PER_MAS_MM = 3200.0


def materials(hu: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Water density and cortical-bone volume fraction of each voxel (HU at the reference spectrum)."""
    b = beam(120.0)
    h = np.maximum(hu.astype(F32), F32(-1000))
    soft = 1 + SOFT_LIMIT_HU / 1000
    fb = np.clip((h - F32(SOFT_LIMIT_HU)) / F32(b.hu_bone - SOFT_LIMIT_HU), 0, None).astype(F32)
    water = np.where(h <= SOFT_LIMIT_HU, F32(1) + h / F32(1000), F32(soft) * np.maximum(F32(1) - fb, F32(0)))
    return water.astype(F32), fb


def _poly(b: _Beam, lw: np.ndarray, lb: np.ndarray, metal: dict[str, np.ndarray]) -> np.ndarray:
    """Energy-weighted transmitted fraction through water, bone and metal line integrals (mm of each)."""
    mw, mb = _mu("water", b.energies), _mu("bone", b.energies)
    mm = {k: _mu(k, b.energies) for k in metal}
    out = np.zeros(lw.shape, np.float64)
    for i, w in enumerate(b.weights):
        p = F32(mw[i]) * lw + F32(mb[i]) * lb
        for k, lm in metal.items():
            p += F32(mm[k][i]) * lm
        out += w * np.exp(-p)
    return out


def _move(sino: np.ndarray, motion: Motion, pixel: float) -> np.ndarray:
    """The sinogram of an object that moves through the views (in-plane shift and turn)."""
    k, na, n = sino.shape
    frac = np.clip((np.arange(na) / na - motion.at) / max(motion.ramp, 1e-3) + 0.5, 0, 1)
    th = np.deg2rad(angles(na))
    dx, dy = (frac * v / pixel for v in motion.shift_mm)
    dt = dx * np.cos(th) - dy * np.sin(th)
    da = frac * motion.turn_deg / (180.0 / na)
    ai, ti = np.meshgrid(np.arange(na) - da, np.arange(n), indexing="ij")
    ti = ti - dt[:, None]
    return np.stack([map_coordinates(s, [ai, ti], order=1, mode="nearest") for s in sino]).astype(F32)


def _bowtie(scan: Scan, na: int, n: int) -> np.ndarray:
    """Relative quanta through the head bowtie filter at each view and detector bin: (na, n)."""
    th = np.deg2rad(angles(na))[:, None]
    t = (np.arange(n) - n // 2)[None, :] * scan.pixel
    s = t + scan.iso_offset[0] * np.cos(th) - scan.iso_offset[1] * np.sin(th)  # from the isocentre, mm
    return np.exp(-beam(scan.kvp).mu_water * np.minimum(0.0045 * s * s, 70.0))


def scan(rng: np.random.Generator, hu: np.ndarray, scan: Scan, kernels: tuple[str, ...] = ("soft",),
         metal: dict[str, np.ndarray] | None = None, projector: str = "sparse") -> dict[str, np.ndarray]:
    """Reconstructed HU (float32, (k, n, n)) of each kernel from one noisy acquisition of the slab ``hu``.

    ``metal`` maps a metal of `METALS` to its volume fraction on the same grid.
    Pixels outside the reconstruction circle read -1000.
    """
    k, n, _ = hu.shape
    na = scan.views(n)
    b = beam(scan.kvp)
    water, bone = materials(hu)
    circle = np.hypot(*np.mgrid[:n, :n] - n // 2) <= n // 2 - 1
    stack = [water, bone] + [np.asarray(v, F32) for v in (metal or {}).values()]
    proj = project(np.concatenate(stack) * circle, na, projector) * F32(scan.pixel)
    if scan.motion is not None:
        proj = _move(proj, scan.motion, scan.pixel)
    lw, lb = proj[:k], proj[k:2 * k]
    lm = {name: proj[(2 + i) * k:(3 + i) * k] for i, name in enumerate(metal or {})}
    del proj
    ideal = F32(b.mu_water) * (lw + F32(1 + b.hu_bone / 1000) * lb)
    t_base = _poly(b, lw, lb, {})
    t_all = _poly(b, lw, lb, lm) if lm else t_base
    for name, l_m in lm.items():
        ideal += F32(effective_mu(name, scan.kvp)) * l_m
    n0 = scan.quanta * _bowtie(scan, na, n)[None]
    mean = n0 * t_all
    counts = mean + np.sqrt(mean + scan.electronic_sd**2) * rng.standard_normal(mean.shape, dtype=F32)
    p = -np.log(np.maximum(counts, 1.0) / n0)

    def water_corrected(q: np.ndarray, fraction: float = 1.0) -> np.ndarray:
        return q + fraction * (np.interp(q, b.table_p, b.table_ideal) - q)

    metal_ideal = sum((F32(effective_mu(m, scan.kvp)) * v for m, v in lm.items()), F32(0))
    bone_error = water_corrected(-np.log(t_base)) - (ideal - metal_ideal)  # what a bone correction removes
    sino = (water_corrected(p, scan.water_correction) - (1 - scan.bone_residual) * bone_error).astype(F32)
    out = {}
    for kern in kernels:
        mu = fbp(sino, scan.pixel, kern, projector)
        img = F32(1000) * (mu / F32(b.mu_water) - F32(1))
        img[:, ~circle] = -1000
        out[kern] = img
    return out
