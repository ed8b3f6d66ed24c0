"""Projection radiography physics the X-ray generators share: exposure, detector and the vendor's processing.

The chain, in the order a real image is made:

- exposure: a tungsten spectrum for the kVp through the tube's filtration
  (Kramers, no characteristic lines: they need > 69.5 kVp), with the heel
  effect as an intensity ramp along the anode-cathode axis;
- attenuation: path lengths (mm) through soft tissue, cortical-equivalent bone,
  cast material, metal and lead, each with its own energy dependence (mass
  attenuation after NIST XCOM, rounded; plaster and fibreglass approximated),
  energy-weighted as an energy-integrating detector sees it (`transmission`);
- scatter: a broad blur of what the object removed from the beam, scaled to a
  scatter-to-primary ratio, cut by a grid when there is one (`scatter`);
- detector: quanta per pixel for the exposure (air kerma, uGy) and the
  detector's DQE, Gaussian quantum noise with Poisson variance, electronic
  noise, CR plate grain or DR gain residue, saturation, and the detector blur
  (a Gaussian MTF, wider for CR) (`detect`);
- the vendor's processing: logarithm, histogram analysis of the collimated
  anatomy, equalisation (latitude reduction), unsharp masking, an S-shaped
  look-up table, shutter masking (`process`); stored with the vendor's bits
  as MONOCHROME1 or MONOCHROME2 (`quantise`).

A model for realism of contrast, noise texture and processing, not a
dosimetry simulator: no focal-spot blur or magnification, no off-focal
radiation, no lag or ghosting, scatter without angular or energy dependence.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import numpy as np
from scipy import ndimage

F32 = np.float32

# mass attenuation mu/rho (cm^2/g) after NIST XCOM (rounded) at these energies (keV); densities g/cm^3.
_E = np.array([10.0, 15.0, 20.0, 30.0, 40.0, 50.0, 60.0, 80.0, 100.0])
_MU_RHO = {
    "soft": [5.38, 1.70, 0.822, 0.378, 0.269, 0.227, 0.205, 0.183, 0.170],  # ICRU-44 soft tissue
    "bone": [28.5, 9.03, 4.00, 1.331, 0.666, 0.424, 0.315, 0.223, 0.186],  # ICRU cortical bone
    "aluminium": [26.2, 7.96, 3.44, 1.128, 0.569, 0.368, 0.278, 0.202, 0.170],
    "plaster": [32.8, 10.4, 4.60, 1.53, 0.75, 0.47, 0.34, 0.235, 0.19],  # CaSO4.2H2O, approximate
    "fibreglass": [21.0, 6.40, 2.80, 0.93, 0.48, 0.32, 0.25, 0.19, 0.165],  # glass + resin, approximate
    "gold": [118.0, 112.0, 78.8, 27.8, 13.0, 7.26, 4.53, 2.19, 5.16],
    "steel": [170.6, 57.1, 25.7, 8.18, 3.63, 1.96, 1.21, 0.595, 0.372],  # iron values
    "lead": [130.6, 111.6, 86.4, 30.3, 14.4, 8.04, 5.02, 2.42, 5.55],
}
DENSITY = {"soft": 1.04, "bone": 1.92, "aluminium": 2.699, "plaster": 1.1, "fibreglass": 0.9, "gold": 16.0,
           "steel": 7.9, "lead": 11.35}
QUANTA_PER_UGY_MM2 = 2.3e4  # photons per mm^2 per uGy air kerma, ~50-60 kVp (IEC RQA3-like beams)


def mu(material: str, energies: np.ndarray) -> np.ndarray:
    """Linear attenuation (1/mm) of ``material`` at ``energies`` keV, log-log interpolated."""
    mr = np.exp(np.interp(np.log(energies), np.log(_E), np.log(_MU_RHO[material])))
    return mr * DENSITY[material] / 10.0


@functools.lru_cache(maxsize=32)
def energy_groups(kvp: float, al_mm: float, n: int = 8) -> tuple[np.ndarray, np.ndarray]:
    """``n`` energies (keV) and weights: a tungsten spectrum through ``al_mm`` of aluminium, energy-weighted
    (an energy-integrating detector), merged into ``n`` groups of equal weight."""
    e = np.arange(10.5, kvp, 1.0)
    fluence = (kvp - e) / e * np.exp(-mu("aluminium", e) * al_mm)
    w = fluence * e
    w /= w.sum()
    edges = np.searchsorted(np.cumsum(w), np.linspace(0, 1, n + 1)[1:-1])
    groups = np.split(np.arange(e.size), edges)
    energies = np.array([float(w[g] @ e[g] / w[g].sum()) for g in groups if g.size])
    weights = np.array([float(w[g].sum()) for g in groups if g.size])
    return energies, weights


def transmission(paths: dict[str, np.ndarray], kvp: float, al_mm: float) -> np.ndarray:
    """Energy-weighted transmitted fraction through ``paths`` (material -> path length in mm, same shape)."""
    energies, weights = energy_groups(kvp, al_mm)
    shape = next(iter(paths.values())).shape
    out = np.zeros(shape, F32)
    for e, w in zip(energies, weights):
        line = np.zeros(shape, F32)
        for material, length in paths.items():
            line += F32(mu(material, np.array([e]))[0]) * length
        np.negative(line, out=line)
        np.exp(line, out=line)
        out += F32(w) * line
    return out


def lowpass(img: np.ndarray, sigma_px: float) -> np.ndarray:
    """A wide Gaussian low-pass, computed on a block-averaged copy (fast for large sigma)."""
    k = max(1, int(sigma_px // 3))
    if k == 1:
        return ndimage.gaussian_filter(img, sigma_px)
    h, w = img.shape
    hh, ww = -(-h // k) * k, -(-w // k) * k
    small = np.pad(img, ((0, hh - h), (0, ww - w)), mode="edge").reshape(hh // k, k, ww // k, k).mean((1, 3))
    small = ndimage.gaussian_filter(small, sigma_px / k)
    return ndimage.zoom(small, k, order=1, grid_mode=True, mode="nearest")[:h, :w].astype(F32)


def heel(shape: tuple[int, int], strength: float, along_rows: bool) -> np.ndarray:
    """The heel effect: intensity falling linearly by ``strength`` across the field toward the anode."""
    n = shape[0] if along_rows else shape[1]
    ramp = (1.0 - strength * np.linspace(-0.5, 0.5, n, dtype=F32))
    return ramp[:, None] if along_rows else ramp[None, :]


def scatter(primary: np.ndarray, incident: np.ndarray, spacing: float, spr: float, sigma_mm: float) -> np.ndarray:
    """Scatter reaching the detector: a broad blur of what the object took from the beam.

    Scaled so that behind ~25 mm of tissue (transmission ~0.4) scatter is ``spr`` of the primary.
    """
    removed = np.maximum(incident - primary, 0)
    return lowpass(removed, sigma_mm / spacing) * F32(spr * 0.4 / 0.6)


@dataclass(frozen=True)
class Detector:
    """A CR plate and reader or a DR flat panel."""

    kind: str  # "CR" or "DR"
    blur_mm: float  # Gaussian sigma of the presampling MTF
    dqe: float  # low-frequency DQE
    electronic: float  # electronic noise, quanta equivalent per pixel
    structure: float  # CR plate grain / DR gain residue, relative SD
    saturation_ugy: float  # kerma at which the pixel saturates


def draw_detector(rng: np.random.Generator, kind: str) -> Detector:
    if kind == "CR":
        return Detector("CR", rng.uniform(0.11, 0.16), rng.uniform(0.22, 0.35), rng.uniform(8, 20),
                        rng.uniform(0.004, 0.01), rng.uniform(80, 160))
    return Detector("DR", rng.uniform(0.07, 0.10), rng.uniform(0.55, 0.7), rng.uniform(2, 6),
                    rng.uniform(0.001, 0.004), rng.uniform(120, 250))


def detect(rng: np.random.Generator, signal: np.ndarray, kerma_ugy: float, pixel_mm: float,
           det: Detector) -> np.ndarray:
    """Detected signal (relative to the open field, 1 = ``kerma_ugy``) with quantum, electronic and structure
    noise, saturation and the detector blur; ``signal`` is the relative kerma at each pixel."""
    quanta = kerma_ugy * QUANTA_PER_UGY_MM2 * pixel_mm * pixel_mm * det.dqe
    sd = np.sqrt(np.maximum(signal, 0) * F32(quanta) + F32(det.electronic ** 2))
    noisy = signal * F32(quanta) + sd * rng.standard_normal(signal.shape, dtype=F32)
    grain = ndimage.gaussian_filter(rng.standard_normal(signal.shape, dtype=F32), 0.7)
    noisy *= 1 + F32(det.structure / max(float(grain.std()), 1e-6)) * grain
    if det.kind == "DR":  # residual row offsets after the gain/offset calibration
        noisy += F32(0.5 * det.electronic) * rng.standard_normal((signal.shape[0], 1), dtype=F32)
    sat = F32(quanta * det.saturation_ugy / kerma_ugy)
    np.minimum(noisy, sat, out=noisy)
    sigma = det.blur_mm / pixel_mm
    if sigma > 0.3:
        noisy = ndimage.gaussian_filter(noisy, sigma, truncate=3.0)
    return np.maximum(noisy, F32(0.5)) / F32(quanta)


@dataclass(frozen=True)
class Processing:
    """A vendor's image processing, as its parameters for one image."""

    vendor: str
    latitude: float  # equalisation strength (0: none)
    latitude_mm: float  # its low-pass sigma
    usm: float  # unsharp-mask gain
    usm_mm: float  # its kernel sigma
    contrast: float  # slope of the S-shaped LUT
    centre: float  # LUT centre in normalised density
    gamma: float
    black_mask: bool  # shutters rendered black instead of white
    lo_pct: float  # histogram percentiles that set the range
    hi_pct: float


# name -> ranges of (latitude, latitude_mm, usm, usm_mm, contrast, centre, gamma): each vendor's look
VENDOR_LOOKS = {
    "FCR PROFECT CS": ((0.1, 0.3), (8, 15), (0.3, 0.8), (1.0, 2.0), (3.5, 5.0), (0.45, 0.55), (0.9, 1.1)),
    "DRX-Evolution": ((0.3, 0.55), (6, 12), (0.5, 1.0), (0.6, 1.2), (3.0, 4.5), (0.5, 0.6), (0.8, 1.0)),
    "DigitalDiagnost": ((0.2, 0.45), (10, 20), (0.4, 0.9), (0.8, 1.6), (3.5, 5.0), (0.45, 0.55), (1.0, 1.25)),
    "CR 30-X": ((0.45, 0.7), (4, 10), (0.8, 1.5), (0.4, 1.0), (3.0, 4.0), (0.5, 0.6), (0.85, 1.05)),
}


def draw_processing(rng: np.random.Generator, vendor: str) -> Processing:
    look = VENDOR_LOOKS.get(vendor, VENDOR_LOOKS["DigitalDiagnost"])
    v = [float(rng.uniform(*r)) for r in look]
    return Processing(vendor, *v, black_mask=bool(rng.random() < 0.25), lo_pct=float(rng.uniform(0.5, 3.0)),
                      hi_pct=float(rng.uniform(99.0, 99.9)))


def process(detected: np.ndarray, anatomy: np.ndarray, field: np.ndarray, spacing: float,
            p: Processing) -> np.ndarray:
    """Display values in [0, 1] (1 = most attenuating) from the detected signal.

    ``anatomy``: where the histogram analysis looks (inside the collimation, not direct exposure);
    ``field``: the collimated field (1 inside, 0 under the shutters).
    """
    dens = -np.log(detected)
    step = max(1, int(round(0.5 / spacing)))
    sample = dens[::step, ::step][anatomy[::step, ::step]]
    if sample.size < 10:
        sample = dens[::step, ::step].ravel()
    lo, hi = np.percentile(sample, [p.lo_pct, p.hi_pct])
    u = (dens - F32(lo)) * F32(1.0 / max(hi - lo, 1e-3))
    if p.latitude > 0:  # equalisation inside the anatomy; direct exposure stays black
        base = lowpass(np.clip(u, 0, 1), p.latitude_mm / spacing)
        u -= F32(p.latitude) * (base - F32(0.5)) * np.clip(u * F32(5), 0, 1)
    if p.usm > 0:
        u += F32(p.usm) * (u - ndimage.gaussian_filter(u, p.usm_mm / spacing, truncate=3.0))
    lut = 1.0 / (1.0 + np.exp(-p.contrast * (np.clip(u, -1, 2) - p.centre)))
    top = 1.15  # the densest bone a little below white
    lo_l, hi_l = 1.0 / (1.0 + math.exp(p.contrast * p.centre)), 1.0 / (1.0 + math.exp(-p.contrast * (top - p.centre)))
    v = np.clip((lut - lo_l) / (hi_l - lo_l), 0, 1) ** p.gamma
    shutter = 0.0 if p.black_mask else 1.0
    return (v * field + F32(shutter) * (1 - field)).astype(F32)


def quantise(image: np.ndarray, bits: int) -> np.ndarray:
    """``image`` in [0, 1] rounded to ``bits`` bits (the values a file of that depth can hold), still in [0, 1]."""
    top = float(2**bits - 1)
    return (np.rint(np.clip(image, 0, 1) * top) / top).astype(F32)


def downsample(image: np.ndarray, factor: float) -> np.ndarray:
    """Area-averaged downsampling by ``factor`` (> 1), as an export to a small picture does."""
    sigma = max(0.0, 0.5 * (factor - 1))
    smooth = ndimage.gaussian_filter(image, sigma) if sigma > 0 else image
    shape = (max(1, int(round(image.shape[0] / factor))), max(1, int(round(image.shape[1] / factor))))
    return ndimage.zoom(smooth, (shape[0] / image.shape[0], shape[1] / image.shape[1]), order=1,
                        grid_mode=True, mode="nearest").astype(F32)
