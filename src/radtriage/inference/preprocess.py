"""Pre-processing shared by training and inference, built on MONAI transforms.

Training (`radtriage.training`) and the service's pipelines call the same
functions, so a model sees at inference exactly what it saw in training.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from monai.transforms import Resize, ScaleIntensityRange

# (level, width) in HU: brain, subdural, bone - the three windows radiologists
# page through for haemorrhage, used as three input channels.
HEAD_WINDOWS: tuple[tuple[float, float], ...] = ((40.0, 80.0), (80.0, 200.0), (600.0, 2800.0))


def ct_windows(
    hu: np.ndarray,
    windows: Sequence[tuple[float, float]] = HEAD_WINDOWS,
    size: int = 160,
) -> np.ndarray:
    """Slices (z, y, x) in HU to (z, len(windows), size, size) float32 in [0, 1]."""
    vol = torch.as_tensor(np.asarray(hu, dtype=np.float32))
    if vol.shape[-2:] != (size, size):
        # Resize works per channel: treat slices as channels of one 2D image
        vol = Resize((size, size), mode="area")(vol)
    chans = [
        ScaleIntensityRange(level - width / 2, level + width / 2, 0.0, 1.0, clip=True)(vol)
        for level, width in windows
    ]
    return torch.stack([torch.as_tensor(c) for c in chans], dim=1).numpy().astype(np.float32)
