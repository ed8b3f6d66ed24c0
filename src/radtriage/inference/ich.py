"""The `ich` task: haemorrhage (any + 5 RSNA subtypes) on a non-contrast CT head.

Pre-processing (shared with `radtriage.training.ich`): each axial slice in three
CT windows (brain, subdural, bone) at ``SIZE`` x ``SIZE``, plus the brain window
of the slices above and below (2.5D context): five channels per slice.

The prediction (`postprocess`, run by the ``ich_study_result`` op registered at
the end of this module) gives:
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
from pydantic import Field, StrictInt

from radtriage.imaging.volume import Volume
from radtriage.inference import findings as fx
from radtriage.inference.ops import (OPS, POST, PRE, HuRange, KeyView, NoParams, OpContext, Params, Slot, Window,
                                     sigmoid)
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


# --------------------------------------------------------------------------- ops
# The task's ops, registered on `radtriage.inference.ops.OPS` when this module is imported.


class IchWindows(Params):
    size: StrictInt = Field(default=SIZE, ge=16, le=1024)
    windows_hu: tuple[Window, ...] = Field(default=HEAD_WINDOWS, min_length=1)  # the first: brain
    batch: StrictInt = Field(default=16, ge=1)


@OPS.register("ich_windows", PRE, IchWindows, needs={Slot.CT}, gives={Slot.INPUTS}, tasks={"ich"},
              card_keys={"size": "size", "windows_hu": "windows_hu"})
def ich_windows(ctx: OpContext, p: IchWindows) -> None:
    """Each slice in the CT windows at ``size`` x ``size``, with its neighbours' brain window (`ich.preprocess`)."""
    ctx.inputs = {ctx.input_names[0]: preprocess(ctx.volume, p.size, p.windows_hu)}
    ctx.batch = p.batch


@OPS.register("ich_study_result", POST, NoParams, needs={Slot.OUTPUTS}, gives={Slot.PREDICTION, Slot.RESULT},
              tasks={"ich"})
def ich_study_result(ctx: OpContext, p: NoParams) -> None:
    """Slice probabilities to the study's decision (threshold ``any``), subtype and key slice (`ich.postprocess`)."""
    thr = ctx.threshold("any")
    pred = postprocess(sigmoid(ctx.output()), thr)
    ctx.prediction = pred
    ctx.positive = pred["positive"]
    ctx.scores = {"ich": pred["score"], "threshold": thr}
    ctx.labels = {"subtype": pred["subtype"]}


class IchVolume(Params):
    blood_hu: HuRange = fx.BLOOD_HU


@OPS.register("ich_volume_ml", POST, IchVolume, needs={Slot.CT, Slot.PREDICTION}, gives={Slot.FINDINGS},
              tasks={"ich"})
def ich_volume_ml(ctx: OpContext, p: IchVolume) -> None:
    """The haemorrhage finding with its volume estimated from blood-density voxels (``blood_hu``) in mL."""
    view = KeyView(slice_index=int(ctx.prediction["key_slice"]), window=HEAD_WINDOWS[0])
    for f in fx.ich_findings(ctx.prediction, ctx.volume, ctx.threshold("any"), p.blood_hu):
        ctx.add_finding(f, view)
