"""The `lvo` task: large-vessel occlusion (ICA terminus, M1, M2) on a CT angiogram of the head.

Pre-processing (shared with `radtriage.training.lvo`, so the model sees at
inference exactly what it saw in training), `views`:

1. the volume is turned into the patient frame (array axes along superior,
   posterior and patient-left, whatever order and signs its direction
   cosines give: the nearest axis-aligned orientation; LPS x grows toward the
   patient's left);
2. sampled (trilinear) onto an isotropic ``MM`` mm grid;
3. bone is removed: voxels above ``BONE_HU`` and ``BONE_DILATE`` voxels around
   them are set to 0 HU (opacified arteries are 250-520 HU, bone 500-2200);
4. two maximum-intensity projections in a vessel window ``WINDOW_HU`` scaled
   to [0, 1]: an axial MIP of the whole coverage (``AXIAL`` pixels, centred
   on the head) above a coronal MIP (``CORONAL_Z`` rows, superior at the top,
   bottom-aligned unless the coverage is longer), the image then max-pooled
   ``POOL`` x ``POOL`` (``SHAPE``: 2 mm pixels). Both keep the columns
   along the patient's x, patient left on the image's right (radiological
   convention), so a left-right flip of the image is a mirror of the patient.

The model gives six logits: P(LVO) (sigmoid), side (left, right; softmax) and
segment (``SEGMENTS``, the generator's names; softmax).

The prediction (`postprocess`, run by the ``lvo_study_result`` op registered at
the end of this module) gives:
- ``score``: P(LVO); ``positive``: ``score >=`` the operating point (the pipeline's, else the card's ``thresholds["lvo"]``)
- ``side``: "left" | "right" and ``side_probs``
- ``segment``: "ica_t" | "m1" | "m2" (the generator's names) and ``segment_probs``;
  ``segment_label``: "ICA terminus" | "M1" | "M2" for display
The side and segment are the most probable ones whether or not the study is positive.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from pydantic import Field

from radtriage.imaging.volume import Volume
from radtriage.inference import findings as fx
from radtriage.inference.ops import OPS, POST, PRE, HuRange, KeyView, NoParams, Number, OpContext, Params, Slot

SIDES = ("left", "right")
SEGMENTS = ("ica_t", "m1", "m2")  # radtriage.synth.cta_head.SEGMENTS
SEGMENT_LABELS = {"ica_t": "ICA terminus", "m1": "M1", "m2": "M2"}
OUTPUTS = ("lvo", "side_left", "side_right", "segment_ica_t", "segment_m1", "segment_m2")

MM = 1.0  # grid of the projections, mm per pixel
AXIAL = 160  # axial MIP: AXIAL x AXIAL pixels (rows posterior-ward, columns toward the patient's left)
CORONAL_Z = 128  # coronal MIP: CORONAL_Z rows (superior at the top) x AXIAL columns
BONE_HU = 650.0
BONE_DILATE = 2  # voxels (of MM) removed around bone
WINDOW_HU = (0.0, 500.0)
HEAD_HU = -300.0  # above: inside the head (for centring)
POOL = 2  # the two MIPs are max-pooled POOL x POOL (thin bright vessels stay bright): POOL * MM mm pixels
SHAPE = (1, (AXIAL + CORONAL_Z) // POOL, AXIAL // POOL)  # model input per study (channels, rows, columns)
VERSION = "lvo-mip-v2"  # changes whenever `views` does (training caches are keyed on it)


def canonical(array: np.ndarray, spacing, direction) -> tuple[np.ndarray, tuple[float, float, float]]:
    """(z, y, x) array to axes (superior, posterior, patient-left) and their spacings.

    ``direction`` columns are the LPS directions of the array's x (columns),
    y (rows) and z (slices) axes (`Volume.direction`). Each array axis goes
    to the patient axis it is closest to; a flip where it points the other way.
    """
    d = np.asarray(direction, dtype=float)
    # LPS direction of array axes 0 (z), 1 (y), 2 (x)
    dirs = [d[:, 2], d[:, 1], d[:, 0]]
    lps_axis = [int(np.argmax(np.abs(v))) for v in dirs]  # 0: L (x), 1: P (y), 2: S (z)
    if sorted(lps_axis) != [0, 1, 2]:
        raise ValueError(f"cannot orient a volume with direction {d.tolist()}")
    # output axis 0 <- patient S (LPS 2), 1 <- P (LPS 1), 2 <- L (LPS 0)
    order = [lps_axis.index(2), lps_axis.index(1), lps_axis.index(0)]
    out = np.transpose(array, order)
    flips = [a for a, src in enumerate(order) if dirs[src][lps_axis[src]] < 0]
    if flips:
        out = np.flip(out, axis=flips)
    sp = tuple(float(spacing[src]) for src in order)
    return out, sp  # type: ignore[return-value]


def resample(array: np.ndarray, spacing, mm: float = MM, bone_hu: float = BONE_HU) -> tuple[np.ndarray, np.ndarray]:
    """A canonical volume on an isotropic ``mm`` grid (default ``MM``): (HU, bone mask).

    HU are sampled trilinearly (no averaging: the noise and the peak of thin
    vessels stay as the scanner's thin slices have them, whatever their
    matrix); a cell is bone above ``bone_hu`` (default ``BONE_HU``), grown by ``BONE_DILATE`` cells.
    """
    shape = tuple(max(1, int(round(n * s / mm))) for n, s in zip(array.shape, spacing))
    t = torch.from_numpy(np.ascontiguousarray(array, dtype=np.float32))[None, None]
    if shape != tuple(array.shape):
        t = F.interpolate(t, size=shape, mode="trilinear", align_corners=False)
    bone = (t > bone_hu).to(torch.float32)
    k, r = 2 * BONE_DILATE + 1, BONE_DILATE
    for kernel, pad in (((k, 1, 1), (r, 0, 0)), ((1, k, 1), (0, r, 0)), ((1, 1, k), (0, 0, r))):
        bone = F.max_pool3d(bone, kernel, stride=1, padding=pad)  # a box dilation, one axis at a time
    return t[0, 0].numpy(), bone[0, 0].numpy() > 0


def _place(image: np.ndarray, rows: int, cols: int, r0: int, c0: int) -> np.ndarray:
    """Crop/pad ``image`` into a (rows, cols) canvas whose pixel [0, 0] is image pixel [r0, c0] (fill 0)."""
    out = np.zeros((rows, cols), dtype=np.float32)
    ir0, ic0 = max(r0, 0), max(c0, 0)
    ir1, ic1 = min(r0 + rows, image.shape[0]), min(c0 + cols, image.shape[1])
    if ir1 > ir0 and ic1 > ic0:
        out[ir0 - r0 : ir1 - r0, ic0 - c0 : ic1 - c0] = image[ir0:ir1, ic0:ic1]
    return out


def views(array: np.ndarray, spacing, direction=None, *, mm: float = MM,
          window_hu: tuple[float, float] = WINDOW_HU, bone_hu: float = BONE_HU) -> np.ndarray:
    """A CTA volume (z, y, x) HU with its spacing and direction to the model's (1, rows, cols) input.

    ``mm``, ``window_hu`` and ``bone_hu`` are the projection grid, the vessel
    window and the bone threshold (defaults: the module's constants, what the
    reference model was trained with).
    """
    vol, sp = canonical(np.asarray(array), spacing, np.eye(3) if direction is None else direction)
    v, bone = resample(vol, sp, mm, bone_hu)
    # centre of the head in (posterior, left), from the voxels inside it
    inside = (v > HEAD_HU).sum(axis=0).astype(np.float64)
    total = inside.sum()
    if total > 0:
        cy = float((inside.sum(axis=1) * np.arange(v.shape[1])).sum() / total)
        cx = float((inside.sum(axis=0) * np.arange(v.shape[2])).sum() / total)
    else:
        cy, cx = v.shape[1] / 2, v.shape[2] / 2
    lo, hi = window_hu
    v = np.where(bone, 0.0, np.clip((v - lo) / (hi - lo), 0.0, 1.0)).astype(np.float32)  # a new array: never the caller's
    r0, c0 = int(round(cy - AXIAL / 2)), int(round(cx - AXIAL / 2))
    axial = _place(v.max(axis=0), AXIAL, AXIAL, r0, c0)
    coronal = v.max(axis=1)[::-1]  # (z, x), superior at the top
    nz = coronal.shape[0]
    if nz <= CORONAL_Z:
        z0 = nz - CORONAL_Z  # bottom-aligned: the lowest slice on the last row
    else:  # longer coverage: the CORONAL_Z rows richest in vessel-bright pixels
        prof = (coronal > 0.5).sum(axis=1).astype(float)
        prof = np.convolve(prof, np.ones(CORONAL_Z), mode="valid")
        z0 = int(np.argmax(prof))
    coronal = _place(coronal, CORONAL_Z, AXIAL, z0, c0)
    image = np.concatenate([axial, coronal], axis=0)
    image = image.reshape(SHAPE[1], POOL, SHAPE[2], POOL).max(axis=(1, 3))
    return image[None].astype(np.float32)


def preprocess(volume: Volume, **options: Any) -> np.ndarray:
    """A CTA head `Volume` to the model's (1, 1, rows, cols) input (``options``: those of `views`)."""
    if volume.is_2d:
        raise ValueError("lvo needs a CT angiography volume, not a radiograph")
    return views(volume.array, volume.spacing, volume.direction, **options)[None]


def _softmax(x: np.ndarray) -> np.ndarray:
    e = np.exp(x - x.max())
    return e / e.sum()


def postprocess(logits: np.ndarray, threshold: float) -> dict[str, Any]:
    """One study's six logits to its result."""
    logits = np.asarray(logits, dtype=np.float64).reshape(-1)
    score = float(1.0 / (1.0 + np.exp(-logits[0])))
    side_p, seg_p = _softmax(logits[1:3]), _softmax(logits[3:6])
    segment = SEGMENTS[int(np.argmax(seg_p))]
    return {
        "score": score,
        "positive": bool(score >= threshold),
        "side": SIDES[int(np.argmax(side_p))],
        "segment": segment,
        "segment_label": SEGMENT_LABELS[segment],
        "side_probs": {s: round(float(p), 4) for s, p in zip(SIDES, side_p)},
        "segment_probs": {s: round(float(p), 4) for s, p in zip(SEGMENTS, seg_p)},
    }


# --------------------------------------------------------------------------- ops
# The task's ops, registered on `radtriage.inference.ops.OPS` when this module is imported.


class LvoViews(Params):
    grid_mm: Number = Field(default=MM, gt=0.1, le=5.0)
    window_hu: HuRange = WINDOW_HU  # (low, high) scaled to [0, 1]
    bone_hu: Number = BONE_HU


@OPS.register("lvo_mip_views", PRE, LvoViews, needs={Slot.CT}, gives={Slot.INPUTS}, tasks={"lvo"},
              card_keys={"grid_mm": "mip_grid_mm", "window_hu": "window_hu", "bone_hu": "bone_hu"})
def lvo_mip_views(ctx: OpContext, p: LvoViews) -> None:
    """Bone-free axial and coronal MIPs of the CTA in a vessel window (`lvo.views`)."""
    ctx.inputs = {ctx.input_names[0]: preprocess(ctx.volume, mm=p.grid_mm, window_hu=p.window_hu,
                                                 bone_hu=p.bone_hu)}


LVO_WINDOW = (200.0, 600.0)  # opacified arteries on a key image


@OPS.register("lvo_study_result", POST, NoParams, needs={Slot.OUTPUTS},
              gives={Slot.PREDICTION, Slot.RESULT, Slot.FINDINGS}, tasks={"lvo"})
def lvo_study_result(ctx: OpContext, p: NoParams) -> None:
    """The study's P(LVO) (threshold ``lvo``), side and segment (`lvo.postprocess`)."""
    thr = ctx.threshold("lvo")
    pred = postprocess(ctx.output()[0], thr)
    ctx.prediction = pred
    ctx.positive = pred["positive"]
    ctx.scores = {"lvo": pred["score"], "threshold": thr}
    ctx.labels = {"side": str(pred["side"]), "segment": str(pred["segment"])}
    for f in fx.lvo_findings(pred):  # the key image: the slab with the most contrast
        arr = ctx.volume.array
        ctx.add_finding(f, KeyView(slice_index=int(arr.reshape(len(arr), -1).max(axis=1).argmax()), window=LVO_WINDOW))
