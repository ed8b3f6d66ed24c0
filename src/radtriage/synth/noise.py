"""Random fields and image noise shared by the synthetic generators.

Each function draws from the ``rng`` it is given and nothing else, in a
fixed order, so a generator's output depends only on its seed.
"""

from __future__ import annotations

import math

import numpy as np

F32 = np.float32


def random_field(rng: np.random.Generator, shape: tuple[int, ...], sigma_cells: float) -> np.ndarray:
    """Zero-mean, unit-SD Gaussian-filtered white noise (periodic)."""
    spec = np.fft.rfftn(rng.standard_normal(shape, dtype=F32))
    k2 = np.zeros(spec.shape)
    for axis, n in enumerate(shape):
        f = np.fft.rfftfreq(n) if axis == len(shape) - 1 else np.fft.fftfreq(n)
        k2 = k2 + (f**2).reshape([-1 if a == axis else 1 for a in range(len(shape))])
    g = np.fft.irfftn(spec * np.exp(-2.0 * (np.pi * sigma_cells) ** 2 * k2), s=shape)
    return ((g - g.mean()) / g.std()).astype(F32)


def fbp_noise(rng: np.random.Generator, shape: tuple[int, int, int], pixel: float, fc: float) -> np.ndarray:
    """Unit-SD noise with an FBP-like power spectrum (ramp x smooth apodisation), independent per slice."""
    nz, ny, nx = shape
    fy = np.fft.fftfreq(ny, d=pixel)[:, None]
    fx = np.fft.rfftfreq(nx, d=pixel)[None, :]
    f = np.sqrt(fy * fy + fx * fx)
    amp = np.sqrt((f + 0.04 * fc) * np.exp(-((f / fc) ** 2))).astype(F32)
    spec = rng.standard_normal((nz, ny, nx // 2 + 1, 2), dtype=F32).view(np.complex64)[..., 0]
    spec *= amp
    out = np.fft.irfft2(spec, s=(ny, nx)).astype(F32, copy=False)
    out *= F32(1.0 / float(out[: max(1, nz // 4)].std()))
    return out


def binomial_noise(rng: np.random.Generator, shape: tuple[int, int, int]) -> np.ndarray:
    """Unit-variance CT-like noise: white noise through a [1 2 1] x [1 2 1] in-plane kernel.

    The white noise is the sum of two uniform bytes (cheap to draw); after the
    9-tap kernel its distribution is Gaussian to within a few per cent.
    """
    nz, ny, nx = shape
    n = nz * (ny + 2) * (nx + 2)
    w = np.frombuffer(rng.bytes(n), np.int8).astype(np.int16)
    w += np.frombuffer(rng.bytes(n), np.int8)
    w = w.reshape(nz, ny + 2, nx + 2)
    a = w[:, :-1, :] + w[:, 1:, :]
    a = a[:, :-1, :] + a[:, 1:, :]
    a = a[:, :, :-1] + a[:, :, 1:]
    a = a[:, :, :-1] + a[:, :, 1:]
    out = a.astype(np.float32)
    out *= np.float32(1.0 / (6.0 * math.sqrt(2 * (256.0**2 - 1) / 12.0)))
    return out
