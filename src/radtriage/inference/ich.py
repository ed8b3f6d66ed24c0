"""The `ich` task: haemorrhage (any + 5 RSNA subtypes) on a non-contrast CT head.

Pre-processing (shared with `radtriage.training.ich`): each axial slice in three
CT windows (brain, subdural, bone) at ``SIZE`` x ``SIZE``, plus the brain window
of the slices above and below (2.5D context): five channels per slice.

The prediction (`postprocess`, run by the ``ich_study_result`` op of
`radtriage.inference.ops`) gives:
- ``score``: the study's P(haemorrhage): the highest slice P(any)
- ``positive``: ``score >=`` the operating point (the pipeline's, else the card's ``thresholds["any"]``)
- ``subtype``: the subtype of highest probability on the key slice
- ``key_slice``: index (in the volume's inferior-to-superior order) of the highest P(any)
- ``slice_probs``: P(any) per slice; ``subtype_probs``: per subtype, its highest slice probability
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from radtriage.imaging.volume import Volume
from radtriage.inference.preprocess import HEAD_WINDOWS, ct_windows

SUBTYPES = ("epidural", "intraparenchymal", "intraventricular", "subarachnoid", "subdural")
OUTPUTS = (*SUBTYPES, "any")
SIZE = 160
CHANNELS = ("brain z-1", "brain", "subdural", "bone", "brain z+1")


def windows(hu: np.ndarray, size: int = SIZE,
            windows_hu: Sequence[tuple[float, float]] = HEAD_WINDOWS) -> np.ndarray:
    """(z, y, x) HU to (z, len(windows_hu), size, size) float32 windows in [0, 1] (the first: brain)."""
    return ct_windows(hu, windows_hu, size=size)


def neighbours(n: int) -> tuple[np.ndarray, np.ndarray]:
    """Indices of the slice below and above each of ``n`` slices (edges repeat)."""
    i = np.arange(n)
    return np.maximum(i - 1, 0), np.minimum(i + 1, n - 1)


def with_context(win: np.ndarray, idx: np.ndarray, below: np.ndarray, above: np.ndarray) -> np.ndarray:
    """Five-channel inputs for slices ``idx`` of ``win`` given their neighbour indices."""
    return np.concatenate([win[below, :1], win[idx], win[above, :1]], axis=1)


def preprocess(volume: Volume, size: int = SIZE,
               windows_hu: Sequence[tuple[float, float]] = HEAD_WINDOWS) -> np.ndarray:
    """A CT head volume to the model's (z, len(windows_hu) + 2, size, size) input (5 channels by default)."""
    if volume.is_2d:
        raise ValueError("ich needs a CT volume, not a radiograph")
    win = windows(volume.array, size, windows_hu)
    below, above = neighbours(len(win))
    return with_context(win, np.arange(len(win)), below, above)


def postprocess(probs: np.ndarray, threshold: float) -> dict[str, Any]:
    """Slice probabilities (z, 6) to the study's result."""
    key = int(np.argmax(probs[:, -1]))
    score = float(probs[key, -1])
    return {
        "score": score,
        "positive": score >= threshold,
        "subtype": SUBTYPES[int(np.argmax(probs[key, :5]))],
        "key_slice": key,
        "slice_probs": [round(float(p), 4) for p in probs[:, -1]],
        "subtype_probs": {s: round(float(probs[:, k].max()), 4) for k, s in enumerate(SUBTYPES)},
    }

