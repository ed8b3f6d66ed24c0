"""Domain randomisation of windowed CT slices at training time (what a scanner or a PACS may change).

The ICH model reads CT windows scaled to [0, 1]; these functions change a batch
of such inputs as a different scanner or archive would have changed the HU
before windowing, so that the model does not learn the generator's own
calibration, noise and sharpness:

- HU calibration: ``HU * scale + offset`` (offset within +-``hu_offset``, scale
  within 1 +- ``hu_scale``), the same for every channel of a slice;
- noise: correlated (Gaussian-filtered) noise of ``noise_hu`` SD in HU, one
  field for the slice's own windows and one for each neighbour;
- blur (a Gaussian of up to ``blur_px`` pixels) and, with probability
  ``p_lowres``, half resolution (average 2 x 2, then bilinear back);
- with probability ``p_lossy``, JPEG-like lossy compression: 8 x 8 block DCT
  coefficients quantised with steps of ``lossy_step_hu`` HU (growing with the
  frequency as a JPEG table does). Steps of 2.5-6 HU gave 8-15:1 on synthetic
  512 x 512 slices (12 bits stored against the zeroth-order entropy of the
  quantised coefficients; brain RMS error 2-3.3 HU): an approximation of a
  codec, not a codec.

A pixel the window clipped is taken as air (-1000 HU) or bone (1000 HU; the
bone window's own limits for it), so an offset or noise leaves the skull
clipped rather than turning it into blood-dense HU in the brain window: an
approximation of re-windowing the changed HU, exact inside the window.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F

DEFAULTS: dict = {"hu_offset": 10.0, "hu_scale": 0.03, "noise_hu": 6.0, "blur_px": 1.0, "p_lowres": 0.2,
                  "p_lossy": 0.3, "lossy_step_hu": (2.5, 6.0)}


def channel_windows(windows_hu: Sequence[tuple[float, float]], channels: Sequence[str]) -> tuple[torch.Tensor, torch.Tensor]:
    """(low HU, width) per input channel, shape (1, C, 1, 1) each; a channel named 'brain ...' reads the first window."""
    names = ("brain", "subdural", "bone")
    lo, width = [], []
    for ch in channels:
        centre, w = windows_hu[names.index(ch.split()[0])]
        lo.append(centre - w / 2)
        width.append(w)
    shape = (1, len(channels), 1, 1)
    return torch.tensor(lo, dtype=torch.float32).view(shape), torch.tensor(width, dtype=torch.float32).view(shape)


def _gaussian(x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
    """Each image of ``x`` (B, C, H, W) blurred by a Gaussian of its sample's ``sigma`` (B,) pixels (0: unchanged)."""
    r = 3
    t = torch.arange(-r, r + 1, dtype=torch.float32)
    k = torch.exp(-(t[None] ** 2) / (2 * sigma.clamp(min=1e-3)[:, None] ** 2))
    k = k / k.sum(1, keepdim=True)  # (B, 2r+1)
    b, c, h, w = x.shape
    y = x.reshape(1, b * c, h, w)
    kx = k.repeat_interleave(c, 0)[:, None, None, :]
    y = F.conv2d(F.pad(y, (r, r, 0, 0), mode="replicate"), kx, groups=b * c)
    y = F.conv2d(F.pad(y, (0, 0, r, r), mode="replicate"), kx.transpose(2, 3), groups=b * c)
    return y.reshape(b, c, h, w)


def _dct_matrix(n: int = 8) -> torch.Tensor:
    k = torch.arange(n, dtype=torch.float64)
    m = torch.cos(math.pi * (2 * k[None] + 1) * k[:, None] / (2 * n)) * math.sqrt(2 / n)
    m[0] /= math.sqrt(2)
    return m.float()


_DCT = _dct_matrix()
_FREQ = 1 + (torch.arange(8)[:, None] + torch.arange(8)[None]).float() / 2  # JPEG-like: coarser at high frequency


def block_dct_quantise(hu: torch.Tensor, step_hu: torch.Tensor) -> torch.Tensor:
    """(B, C, H, W) values (HU) through 8 x 8 DCT quantisation with base step ``step_hu`` (B,); H, W multiples of 8."""
    b, c, h, w = hu.shape
    blocks = hu.reshape(b, c, h // 8, 8, w // 8, 8).permute(0, 1, 2, 4, 3, 5)
    coef = _DCT @ blocks @ _DCT.T
    q = step_hu.view(b, 1, 1, 1, 1, 1) * _FREQ
    coef = torch.round(coef / q) * q
    out = _DCT.T @ coef @ _DCT
    return out.permute(0, 1, 2, 4, 3, 5).reshape(b, c, h, w)


def randomise(x: torch.Tensor, rng: np.random.Generator, lo: torch.Tensor, width: torch.Tensor,
              hu_offset: float = 10.0, hu_scale: float = 0.03, noise_hu: float = 6.0, blur_px: float = 1.0,
              p_lowres: float = 0.2, p_lossy: float = 0.3, lossy_step_hu: Sequence[float] = (2.5, 6.0)) -> torch.Tensor:
    """A batch of windowed inputs ``x`` (B, C, H, W in [0, 1]) as another scanner/archive would give them."""
    b = x.shape[0]

    def per_sample(a: float, z: float) -> torch.Tensor:
        return torch.as_tensor(rng.uniform(a, z, b), dtype=torch.float32)

    hu = x * width + lo  # inside the window: the HU
    # clipped pixels stand for air/fat or bone: far outside the window, so a shift or noise leaves them clipped
    hu = torch.where(x <= 0, torch.minimum(lo - 1, torch.tensor(-1000.0)), hu)
    hu = torch.where(x >= 1, torch.maximum(lo + width + 1, torch.tensor(1000.0)), hu)
    scale = per_sample(1 - hu_scale, 1 + hu_scale).view(b, 1, 1, 1)
    hu = hu * scale + per_sample(-hu_offset, hu_offset).view(b, 1, 1, 1)
    if noise_hu > 0:
        gen = torch.Generator().manual_seed(int(rng.integers(2**31)))
        fields = torch.randn((b, 3, *x.shape[2:]), generator=gen)
        fields = _gaussian(fields, torch.full((b,), 0.8)) * 2.2  # correlated, SD about 1 again
        own = fields[:, 1:2].expand(-1, x.shape[1] - 2, -1, -1)
        hu = hu + torch.cat([fields[:, :1], own, fields[:, 2:]], 1) * per_sample(0, noise_hu).view(b, 1, 1, 1)
    if blur_px > 0:
        hu = _gaussian(hu, per_sample(0, blur_px))
    low = torch.as_tensor(rng.random(b) < p_lowres)
    if low.any():
        small = F.avg_pool2d(hu[low], 2)
        hu[low] = F.interpolate(small, size=hu.shape[2:], mode="bilinear", align_corners=False)
    lossy = torch.as_tensor(rng.random(b) < p_lossy)
    if lossy.any() and hu.shape[2] % 8 == 0 and hu.shape[3] % 8 == 0:
        hu[lossy] = block_dct_quantise(hu[lossy], per_sample(*lossy_step_hu)[lossy])
    return ((hu - lo) / width).clamp(0, 1)
