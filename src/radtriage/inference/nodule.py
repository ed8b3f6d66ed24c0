"""The `nodule` predictor: lung nodule detection on chest CT.

Two stages, sharing every step with training (`radtriage.training.nodule`):

1. Candidate generation (classical, documented here, no learning): the CT
   is resampled to an isotropic grid of ``GRID_MM`` (trilinear, corner
   aligned so grid index -> original voxel index is an exact scale); a lung
   mask is made at twice that spacing (air below -400 HU not connected to
   the in-plane border of the scan, components >= 50 mL, holes filled slice
   by slice, closed with a 15 mm ball so juxtapleural nodules fall inside,
   plus a ``BAND_MM`` band outside it for nodules half embedded in the
   pleura); outside that the image is set to lung (-850 HU), and HU is
   clipped to [-1000, -450] (so solid vessels outshine ground glass less).
   Blobs are the local maxima of the scale-normalised Laplacian of Gaussian
   (as differences of Gaussians) inside the mask at three pyramid levels
   (grid, half and quarter resolution: blob radii ~2.5-15 mm), ranked by
   response times a blobness factor from the Hessian's eigenvalues (tubes
   such as vessels rank low), with a quota per level (``LEVELS``), none
   within the radius of a stronger one.
2. False-positive reduction: the ONNX model (a small MONAI 3D CNN) scores a
   ``PATCH``^3 patch at ``GRID_MM`` around each candidate (HU window
   [-1000, 400] scaled to [0, 1]); sigmoid of its logit is the score.

Size (post-processing): the nodule is segmented in its patch by a threshold
half way between the lung around it and its core (so ground glass works),
the connected part holding the centre inside the lung mask (and band), cut
by a ball of 1.25x the blob radius + 2 mm so attached vessels do not run
away. ``volume_mm3`` is its voxel count times the voxel volume, ``diameter_mm`` its longest 3D extent, and
``mean_diameter_mm`` the mean of its long and perpendicular short axis on
the axial plane of largest area (Lung-RADS style). The centre is the
segment's centroid when within half the blob radius of the blob maximum
(else the maximum).

The prediction (`nodules`, run by the ``nodule_measure`` op registered at the
end of this module on the model's scores of the candidates' patches)
is ``{"nodules": [{"centre_mm": [x, y, z] LPS,
"centre_voxel": [z, y, x] (indices of the input volume, float),
"diameter_mm", "mean_diameter_mm", "volume_mm3", "score"}, ...]}``,
highest score first: candidates scoring at least ``MIN_SCORE``, at most
``MAX_FINDINGS``. The card's ``thresholds["nodule"]`` is the operating point
(chosen on validation data); lower-scoring findings are there for FROC
analysis and review.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch
from monai.transforms import Resize, ScaleIntensityRange
from pydantic import Field, StrictInt
from scipy import ndimage

from radtriage.domain.case import Finding
from radtriage.imaging.volume import Volume
from radtriage.inference import findings as fx
from radtriage.inference.ops import OPS, POST, PRE, KeyView, Number, OpContext, Params, Slot, sigmoid

GRID_MM = 1.25  # isotropic grid of candidate generation and patches
PATCH = 32  # patch edge (voxels of GRID_MM): 40 mm
PATCH_WINDOW_HU = (-1000.0, 400.0)
CLIP_HU = (-1000.0, -450.0)  # vessels and solid nodules no brighter than ground glass
LUNG_FILL_HU = -850.0
BAND_MM = 5.0  # candidates are looked for this far outside the lung too (pleural bumps)
# pyramid levels: (downsampling of the grid, Gaussian sigmas in its voxels (DoG of neighbours), quota)
LEVELS = ((1, (1.0, 1.4, 2.0), 120), (2, (1.0, 1.4, 2.0, 2.8), 45), (4, (1.0, 1.4, 2.0), 20))
MIN_RESPONSE = 30.0  # normalised DoG (HU) a maximum must reach
BLOBNESS_FLOOR = 0.15  # rank = DoG * (floor + sqrt(smallest / largest Hessian eigenvalue)): tubes rank low
MIN_SCORE = 0.02
MAX_FINDINGS = 40
PREPROCESSING_VERSION = "nodule-pre-1"


@dataclass
class Candidates:
    """Candidates of one volume: positions in the grid, original voxels and LPS, and their patches."""

    grid_zyx: np.ndarray  # (n, 3) int, indices in the isotropic grid
    voxel_zyx: np.ndarray  # (n, 3) float, indices in the input volume
    lps: np.ndarray  # (n, 3) float, LPS mm
    radius_mm: np.ndarray  # (n,) LoG blob radius
    response: np.ndarray  # (n,) normalised LoG response
    patches: np.ndarray  # (n, PATCH, PATCH, PATCH) float32 in [0, 1]
    masks: np.ndarray  # (n, PATCH, PATCH, PATCH) bool, the lung mask around each candidate
    grid_spacing: tuple[float, float, float]
    scale: np.ndarray  # (3,) original voxel index per grid index


# --------------------------------------------------------------------------- pre-processing


def resample(volume: Volume, grid_mm: float = GRID_MM) -> tuple[np.ndarray, np.ndarray, tuple[float, float, float]]:
    """HU volume -> (isotropic grid float32, scale: original index per grid index (z,y,x), grid spacing).

    Corner-aligned trilinear (MONAI Resize), so grid index i maps to original
    index ``i * scale`` exactly; the grid spacing is within a voxel's
    rounding of ``grid_mm``.
    """
    arr = np.asarray(volume.array, dtype=np.float32)
    sp = np.asarray(volume.spacing[:3], dtype=float)
    shape_in = np.array(arr.shape)
    extent = (shape_in - 1) * sp
    shape_out = np.maximum(2, np.round(extent / grid_mm).astype(int) + 1)
    scale = (shape_in - 1) / (shape_out - 1)
    if np.allclose(shape_out, shape_in):
        iso = arr
    else:
        iso = Resize(tuple(int(s) for s in shape_out), mode="trilinear", align_corners=True)(
            torch.as_tensor(arr)[None])[0]
        iso = np.asarray(iso, dtype=np.float32)
    return iso, scale, tuple(float(s) for s in sp * scale)


def _ball(r: int) -> np.ndarray:
    g = np.mgrid[-r:r + 1, -r:r + 1, -r:r + 1]
    return (g ** 2).sum(0) <= r * r + 0.5


def lung_mask(iso: np.ndarray, spacing: tuple[float, float, float]) -> np.ndarray:
    """Lung mask on the grid, uint8: 2 lung (nodules and vessels inside), 1 a ``BAND_MM`` band
    outside it (where nodules half embedded in the pleura sit), 0 elsewhere."""
    # work at half resolution (block mean)
    z, y, x = (s // 2 * 2 for s in iso.shape)
    small = iso[:z, :y, :x].reshape(z // 2, 2, y // 2, 2, x // 2, 2).mean((1, 3, 5))
    sp2 = np.asarray(spacing) * 2
    air = small < -400
    lab, n = ndimage.label(air)
    if n == 0:
        return np.zeros(iso.shape, np.uint8)
    border = np.unique(np.concatenate([lab[:, 0, :].ravel(), lab[:, -1, :].ravel(),
                                       lab[:, :, 0].ravel(), lab[:, :, -1].ravel()]))
    sizes = ndimage.sum_labels(np.ones_like(lab), lab, index=np.arange(1, n + 1)) * float(np.prod(sp2))
    keep = np.zeros(n + 1, bool)
    keep[1:] = sizes >= 50_000.0  # 50 mL
    keep[border] = False
    keep[0] = False
    mask = keep[lab]
    if not mask.any():
        return np.zeros(iso.shape, np.uint8)
    for k in range(mask.shape[0]):
        if mask[k].any():
            mask[k] = ndimage.binary_fill_holes(mask[k])
    # close with a ~15 mm ball at quarter resolution (fast), OR-ed back in
    z4, y4, x4 = (max(2, s // 2 * 2) for s in mask.shape)
    q = mask[:z4, :y4, :x4].reshape(z4 // 2, 2, y4 // 2, 2, x4 // 2, 2).any((1, 3, 5))
    r = max(1, int(round(15.0 / (2 * sp2[1]))))
    q = ndimage.binary_closing(np.pad(q, r + 1), _ball(r))[r + 1:-r - 1, r + 1:-r - 1, r + 1:-r - 1]
    m = mask.copy()
    m[:z4, :y4, :x4] |= q.repeat(2, 0).repeat(2, 1).repeat(2, 2)
    band = ndimage.binary_dilation(m, iterations=max(1, int(round(BAND_MM / sp2[1]))))
    m = m.astype(np.uint8) + band.astype(np.uint8)
    # back to the full grid (nearest), edges padded
    full = np.zeros(iso.shape, np.uint8)
    up = m.repeat(2, 0).repeat(2, 1).repeat(2, 2)
    full[:up.shape[0], :up.shape[1], :up.shape[2]] = up
    if iso.shape[0] > up.shape[0]:
        full[up.shape[0]:] = full[up.shape[0] - 1]
    if iso.shape[1] > up.shape[1]:
        full[:, up.shape[1]:] = full[:, up.shape[1] - 1:up.shape[1]]
    if iso.shape[2] > up.shape[2]:
        full[:, :, up.shape[2]:] = full[:, :, up.shape[2] - 1:up.shape[2]]
    return full


def _bbox(mask: np.ndarray, margin: int) -> tuple[slice, ...] | None:
    idx = np.nonzero(mask.any((1, 2)))[0], np.nonzero(mask.any((0, 2)))[0], np.nonzero(mask.any((0, 1)))[0]
    if any(len(i) == 0 for i in idx):
        return None
    return tuple(slice(max(0, int(i[0]) - margin), min(n, int(i[-1]) + margin + 1))
                 for i, n in zip(idx, mask.shape))


def _dog_peaks(img: np.ndarray, mask: np.ndarray, sigmas_vox: tuple[float, ...], g_mm: float,
               quota: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Scale-normalised difference-of-Gaussians maxima (~ -s^2 LoG(s)) of one pyramid level."""
    blurred = [ndimage.gaussian_filter(img, s, mode="nearest", truncate=3.0) for s in sigmas_vox]
    best = np.full(img.shape, -np.inf, np.float32)
    best_k = np.zeros(img.shape, np.uint8)
    for k, (a, b, s0, s1) in enumerate(zip(blurred, blurred[1:], sigmas_vox, sigmas_vox[1:])):
        k2 = (s1 / s0) ** 2
        r = (a - b) * np.float32(2.0 / (k2 - 1.0))
        better = r > best
        best[better] = r[better]
        best_k[better] = k
    peaks = (best == ndimage.maximum_filter(best, size=3, mode="nearest")) & mask & (best >= MIN_RESPONSE)
    zyx = np.argwhere(peaks)
    zyx = zyx[np.all((zyx >= 1) & (zyx < np.array(img.shape) - 1), axis=1)]
    resp = best[tuple(zyx.T)]
    ks = best_k[tuple(zyx.T)]
    scales = np.array([math.sqrt(a * b) for a, b in zip(sigmas_vox, sigmas_vox[1:])])
    rad = scales[ks] * g_mm * math.sqrt(3)
    # shape: eigenvalues of the Hessian at the peak (finite differences of the blur at its scale)
    shape_f = np.zeros(len(zyx))
    for k in np.unique(ks):
        sel = np.nonzero(ks == k)[0]
        b = (blurred[k] + blurred[k + 1]) * 0.5 if len(sel) > 2000 else None
        img_k = b if b is not None else None
        z, y, x = zyx[sel].T

        def v(dz, dy, dx, z=z, y=y, x=x, k=k, img_k=img_k):
            if img_k is not None:
                return img_k[z + dz, y + dy, x + dx]
            return 0.5 * (blurred[k][z + dz, y + dy, x + dx] + blurred[k + 1][z + dz, y + dy, x + dx])

        c = v(0, 0, 0)
        h = np.empty((len(sel), 3, 3))
        h[:, 0, 0] = v(1, 0, 0) - 2 * c + v(-1, 0, 0)
        h[:, 1, 1] = v(0, 1, 0) - 2 * c + v(0, -1, 0)
        h[:, 2, 2] = v(0, 0, 1) - 2 * c + v(0, 0, -1)
        h[:, 0, 1] = h[:, 1, 0] = (v(1, 1, 0) - v(1, -1, 0) - v(-1, 1, 0) + v(-1, -1, 0)) / 4
        h[:, 0, 2] = h[:, 2, 0] = (v(1, 0, 1) - v(1, 0, -1) - v(-1, 0, 1) + v(-1, 0, -1)) / 4
        h[:, 1, 2] = h[:, 2, 1] = (v(0, 1, 1) - v(0, 1, -1) - v(0, -1, 1) + v(0, -1, -1)) / 4
        ev = np.linalg.eigvalsh(-h)  # ascending; a bright blob has three positive, a tube one ~0
        shape_f[sel] = np.clip(ev[:, 0], 0, None) / np.maximum(ev[:, 2], 1e-6)
    resp = resp * (BLOBNESS_FLOOR + np.sqrt(shape_f))
    order = np.argsort(-resp)
    zyx, resp, rad = zyx[order], resp[order], rad[order]
    keep: list[int] = []
    pts = zyx * g_mm
    for i in range(len(zyx)):  # suppress weaker maxima within the radius of a stronger one
        if keep:
            d = np.linalg.norm(pts[keep] - pts[i], axis=1)
            if np.any(d < np.maximum(rad[keep], 3.0)):
                continue
        keep.append(i)
        if len(keep) >= quota:
            break
    return zyx[keep], rad[keep], resp[keep]


def _down(img: np.ndarray, f: int, how: str = "mean") -> np.ndarray:
    if f == 1:
        return img
    z, y, x = (max(f, n // f * f) for n in img.shape)
    if any(n < f for n in img.shape):
        return img[::f, ::f, ::f]
    blocks = img[:z, :y, :x].reshape(z // f, f, y // f, f, x // f, f)
    return blocks.mean((1, 3, 5), dtype=np.float32) if how == "mean" else blocks.any((1, 3, 5))


def blobs(iso: np.ndarray, mask: np.ndarray, spacing: tuple[float, float, float]
          ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Multi-scale blobs inside ``mask``: (grid zyx (n, 3) int, radius mm (n,), rank (n,)).

    One pyramid level per entry of ``LEVELS`` (grid, half and quarter
    resolution: blob radius ~2.5-4, 5-10 and 10-15 mm), each with its own
    quota of strongest maxima, so the many small vessel cross-sections
    cannot crowd out large faint (ground-glass) nodules.
    """
    box = _bbox(mask > 0, 4)
    if box is None:
        return np.zeros((0, 3), int), np.zeros(0), np.zeros(0)
    sub = np.clip(iso[box], *CLIP_HU)
    m = mask[box] > 0
    sub = np.where(m, sub, np.float32(LUNG_FILL_HU)).astype(np.float32)
    g = float(np.mean(spacing))
    offset = np.array([b.start for b in box])
    out_z, out_r, out_s = [], [], []
    for f, sigmas, quota in LEVELS:
        img, mk = _down(sub, f), _down(m, f, "any")
        if min(img.shape) < 4:
            continue
        z, r, sc = _dog_peaks(img, mk, sigmas, f * g, quota)
        out_z.append(np.minimum(z * f + f // 2, np.array(sub.shape) - 1) + offset)  # block centre (rounded)
        out_r.append(r)
        out_s.append(sc)
    if not out_z:
        return np.zeros((0, 3), int), np.zeros(0), np.zeros(0)
    return np.concatenate(out_z).astype(int), np.concatenate(out_r), np.concatenate(out_s)


def normalise(iso: np.ndarray) -> np.ndarray:
    """HU -> [0, 1] over the patch window (MONAI ScaleIntensityRange)."""
    lo, hi = PATCH_WINDOW_HU
    return np.asarray(ScaleIntensityRange(lo, hi, 0.0, 1.0, clip=True)(iso), dtype=np.float32)


def extract_patches(grid: np.ndarray, centres: np.ndarray, size: int = PATCH, fill: float = 0.0) -> np.ndarray:
    """(n, size, size, size) patches of a grid around integer centres (edges padded with ``fill``)."""
    h = size // 2
    pad = np.pad(grid, h, mode="constant", constant_values=fill)
    out = np.empty((len(centres), size, size, size), np.float32)
    for i, (z, y, x) in enumerate(np.asarray(centres, int)):
        out[i] = pad[z:z + size, y:y + size, x:x + size]
    return out


def candidates(volume: Volume, grid_mm: float = GRID_MM, patch: int = PATCH) -> Candidates:
    """Stage 1 for one CT volume: candidates and their ``patch``^3 patches on a ``grid_mm`` grid (no model)."""
    iso, scale, spacing = resample(volume, grid_mm)
    mask = lung_mask(iso, spacing)
    zyx, rad, resp = blobs(iso, mask, spacing)
    vox = zyx * scale
    lps = volume.voxel_to_lps(vox) if len(vox) else np.zeros((0, 3))
    patches = normalise(extract_patches(iso, zyx, size=patch, fill=PATCH_WINDOW_HU[0]))
    masks = extract_patches((mask > 0).astype(np.float32), zyx, size=patch) > 0.5
    return Candidates(zyx, vox, np.asarray(lps, float).reshape(-1, 3), rad, resp, patches, masks, spacing, scale)


# --------------------------------------------------------------------------- measurement


def measure(patch01: np.ndarray, spacing: tuple[float, float, float], radius_mm: float,
            lung: np.ndarray | None = None) -> dict | None:
    """Segment the nodule at the centre of a normalised patch; sizes in mm (None when nothing is there).

    ``lung``: the lung mask of the patch; the segment stays inside it (so a
    juxtapleural nodule does not run into the chest wall).
    """
    lo, hi = PATCH_WINDOW_HU
    hu = patch01 * (hi - lo) + lo
    c = patch01.shape[0] // 2
    sm = ndimage.uniform_filter(hu, 3)
    core = float(sm[c, c, c])
    g = np.asarray(spacing)
    zz, yy, xx = np.mgrid[:hu.shape[0], :hu.shape[1], :hu.shape[2]]
    dist = np.sqrt(((zz - c) * g[0]) ** 2 + ((yy - c) * g[1]) ** 2 + ((xx - c) * g[2]) ** 2)
    shell = (dist > radius_mm * 1.5 + 2) & (dist < radius_mm * 1.5 + 6)
    bg = float(np.median(hu[shell])) if shell.any() else LUNG_FILL_HU
    bg = min(bg, -700.0)
    if core - bg < 150:
        return None
    seg = (hu >= (core + bg) / 2) & (dist <= radius_mm * 1.25 + 2)
    if lung is not None:
        seg &= lung
    lab, _ = ndimage.label(seg)
    if lab[c, c, c] == 0:
        return None
    seg = lab == lab[c, c, c]
    pts = np.argwhere(seg) * g
    n = len(pts)
    centroid = pts.mean(0) / g
    # longest 3D extent: over surface points (subsampled)
    surf = np.argwhere(seg & ~ndimage.binary_erosion(seg)) * g
    if len(surf) > 600:
        surf = surf[np.linspace(0, len(surf) - 1, 600).astype(int)]
    d = np.sqrt(((surf[:, None] - surf[None]) ** 2).sum(-1))
    longest = float(d.max()) + float(np.mean(g))
    # axial long and short axis on the slice of largest area
    areas = seg.sum((1, 2))
    k = int(np.argmax(areas))
    p2 = np.argwhere(seg[k]) * g[1:]
    if len(p2) >= 2:
        d2 = np.sqrt(((p2[:, None] - p2[None]) ** 2).sum(-1))
        i, j = np.unravel_index(np.argmax(d2), d2.shape)
        axis = p2[j] - p2[i]
        long_ax = float(d2[i, j])
        u = axis / (np.linalg.norm(axis) or 1.0)
        perp = p2 @ np.array([-u[1], u[0]])
        short_ax = float(perp.max() - perp.min())
        mean_d = (long_ax + short_ax) / 2 + float(g[1])
    else:
        mean_d = float(g[1])
    return {"centroid": centroid, "diameter_mm": longest, "mean_diameter_mm": mean_d,
            "volume_mm3": float(n * np.prod(g))}


# --------------------------------------------------------------------------- post-processing (after the model's scores)


def describe(volume: Volume, cands: Candidates, i: int) -> dict:
    """Position and size of candidate ``i`` (model-free post-processing; no score)."""
    m = measure(cands.patches[i], cands.grid_spacing, float(cands.radius_mm[i]), cands.masks[i])
    grid = cands.grid_zyx[i].astype(float)
    if m is not None:
        shift = m["centroid"] - cands.patches.shape[1] // 2
        if np.linalg.norm(shift * np.asarray(cands.grid_spacing)) <= 0.5 * float(cands.radius_mm[i]):
            grid = grid + shift
        diam, mean_d, vol = m["diameter_mm"], m["mean_diameter_mm"], m["volume_mm3"]
    else:
        diam = mean_d = 2 * float(cands.radius_mm[i])
        vol = math.pi / 6 * diam ** 3
    vox = grid * cands.scale
    lps = volume.voxel_to_lps(vox)
    return {
        "centre_mm": [round(float(v), 2) for v in lps],
        "centre_voxel": [round(float(v), 2) for v in vox],
        "diameter_mm": round(float(diam), 1),
        "mean_diameter_mm": round(float(mean_d), 1),
        "volume_mm3": round(float(vol), 1),
    }


def finalize(described: list[dict | None], scores: np.ndarray, min_score: float = MIN_SCORE,
             max_findings: int = MAX_FINDINGS) -> list[dict]:
    """Findings from described candidates and scores: score >= ``min_score``, highest first, a
    finding whose centre lies within the radius of a higher-scored one dropped, at most ``max_findings``."""
    out: list[dict] = []
    for i in np.argsort(-np.asarray(scores), kind="stable"):
        if scores[i] < min_score or len(out) >= max_findings:
            break
        d = described[i]
        if d is None:
            continue
        c = np.asarray(d["centre_mm"])
        if any(np.linalg.norm(c - np.asarray(o["centre_mm"])) <= o["diameter_mm"] / 2 for o in out):
            continue
        out.append({**d, "score": round(float(scores[i]), 4)})
    return out


def nodules(volume: Volume, cands: Candidates, scores: np.ndarray, min_score: float = MIN_SCORE,
            max_findings: int = MAX_FINDINGS) -> dict:
    """The prediction of one volume from its candidates and their scores (see the module docstring)."""
    described: list[dict | None] = [None] * len(scores)
    for i in [int(i) for i in np.argsort(-scores) if scores[i] >= min_score][:2 * max_findings]:
        described[i] = describe(volume, cands, i)
    return {"nodules": finalize(described, scores, min_score, max_findings), "n_candidates": int(len(scores))}


# --------------------------------------------------------------------------- ops
# The task's ops, registered on `radtriage.inference.ops.OPS` when this module is imported.


class NoduleCandidates(Params):
    grid_mm: Number = Field(default=GRID_MM, gt=0.25, le=5.0)
    patch: StrictInt = Field(default=PATCH, ge=8, le=128)
    batch: StrictInt = Field(default=64, ge=1)


@OPS.register("nodule_candidates", PRE, NoduleCandidates, needs={Slot.CT}, gives={Slot.INPUTS, Slot.CANDIDATES},
              tasks={"nodule"}, card_keys={"grid_mm": "grid_mm", "patch": "patch"})
def nodule_candidates(ctx: OpContext, p: NoduleCandidates) -> None:
    """Blob candidates in the lungs and a ``patch``^3 patch around each on a ``grid_mm`` grid (`nodule.candidates`)."""
    ctx.candidates = candidates(ctx.volume, p.grid_mm, p.patch)
    ctx.inputs = {ctx.input_names[0]: ctx.candidates.patches[:, None]}
    ctx.batch = p.batch


class NoduleMeasure(Params):
    min_score: Number = Field(default=MIN_SCORE, ge=0.0, le=1.0)
    max_findings: StrictInt = Field(default=MAX_FINDINGS, ge=1, le=500)


@OPS.register("nodule_measure", POST, NoduleMeasure, needs={Slot.OUTPUTS, Slot.CANDIDATES},
              gives={Slot.PREDICTION}, tasks={"nodule"})
def nodule_measure(ctx: OpContext, p: NoduleMeasure) -> None:
    """Candidates scoring at least ``min_score``: position, diameters and volume (`nodule.nodules`)."""
    assert ctx.candidates is not None  # the chain check puts nodule_candidates first
    scores = sigmoid(ctx.output().reshape(-1))
    ctx.prediction = nodules(ctx.volume, ctx.candidates, scores, p.min_score, p.max_findings)


class LungRads(Params):
    version: Literal["2022"] = "2022"


LUNG_WINDOW = (-600.0, 1500.0)


def _nodule_view(volume: Volume, f: Finding) -> KeyView:
    m = f.measurements
    z, y, x = volume.lps_to_voxel([m["x_mm"], m["y_mm"], m["z_mm"]])
    r = m["longest_diameter_mm"] / 2 / volume.spacing[1] + 3
    return KeyView(slice_index=int(round(z)), box=(y - r, y + r, x - r, x + r), window=LUNG_WINDOW)


@OPS.register("lung_rads", POST, LungRads, needs={Slot.PREDICTION}, gives={Slot.RESULT, Slot.FINDINGS},
              tasks={"nodule"})
def lung_rads(ctx: OpContext, p: LungRads) -> None:
    """Nodules scoring at least the threshold ``nodule``, each with its Lung-RADS category; the scan's category."""
    found = fx.nodule_findings(ctx.prediction, ctx.threshold("nodule"))
    ctx.positive = bool(found)
    ctx.scores = {"nodule": max((n["score"] for n in ctx.prediction["nodules"]), default=0.0),
                  "nodules": float(len(found))}
    ctx.labels = {"lung_rads": fx.scan_lung_rads(found)}
    for f in found:
        ctx.add_finding(f, _nodule_view(ctx.volume, f))
