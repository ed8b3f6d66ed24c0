"""The input guard: is a series inside the range its model was validated on?

A model card may declare a ``validated_range`` (`card.ValidatedRange`): the
kind of input (``ct_head``, ``ct_chest``, ``hand``) and, per named measure,
the range the model's training and validation data covered. `failures`
takes each declared measure from the loaded `Volume` (pixels and header) and
names every one outside its range, with the value and the range.
`TaskRunner` runs it after loading the series and before pre-processing and
raises `runner.OutsideValidatedRange` ("AI not applicable: outside the
model's validated range (...)"); the dispatcher records that as the job's
note with no result (state ``no_ai``), not as a failure to retry.

The measures are read from the pixels, never trusted from the header alone
(a contrast study whose contrast tags were removed is still a contrast
study). CT volumes are measured on at most `MAX_SLICES` evenly spread slices,
in-plane at about `PLANE_PX` pixels, so a check costs well under a second.
A measure that cannot be taken (no intracranial region, no age) is outside.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from functools import cached_property

import numpy as np
from scipy import ndimage

from radtriage.imaging.volume import Volume
from radtriage.inference.card import ModelCard, Range, ValidatedRange
from radtriage.inference.guard_hand import hand_count, wrist_cover_ratio

MAX_SLICES = 48
PLANE_PX = 256
BORDER = 0.04  # the outer ring of each slice read as the air outside the patient, as a fraction of the matrix
BONE_HU = 300.0  # above: bone (or, inside the skull, contrast-filled vessels: see `contrast_spots`)
BONE_MARGIN_MM = 5.0  # intracranial voxels this close to bone are left out (partial volume of the tables, skull base)
ENHANCING_HU = (100.0, 600.0)  # opacified vessels and sinuses, also in 5 mm slices; above blood, below bone


@dataclass
class _Ct:
    """One CT volume cut down for measuring, with its masks computed once."""

    a: np.ndarray  # (z, y, x) HU, subsampled
    spacing: tuple[float, float, float]  # mm of the subsampled array
    full: Volume

    @classmethod
    def of(cls, v: Volume) -> _Ct:
        nz = v.array.shape[0]
        zs = np.unique(np.linspace(0, nz - 1, min(nz, MAX_SLICES)).round().astype(int))
        k = max(1, int(round(max(v.array.shape[1:]) / PLANE_PX)))
        a = np.asarray(v.array[zs, ::k, ::k], dtype=np.float32)
        dz = float(v.spacing[0]) * (nz - 1) / max(len(zs) - 1, 1)
        return cls(a, (dz, float(v.spacing[1]) * k, float(v.spacing[2]) * k), v)

    @cached_property
    def voxel_ml(self) -> float:
        return float(np.prod(self.spacing)) / 1000.0

    @cached_property
    def bone(self) -> np.ndarray:
        return self.a > BONE_HU

    @cached_property
    def intracranial(self) -> np.ndarray:
        """Soft tissue enclosed by bone in its slice, at least `BONE_MARGIN_MM` from it."""
        it = max(1, int(round(BONE_MARGIN_MM / min(self.spacing[1:]))))
        inside = np.zeros_like(self.bone)
        for i, b in enumerate(self.bone):
            filled = ndimage.binary_fill_holes(b)
            inside[i] = filled & ~ndimage.binary_dilation(b, iterations=it)
        return inside & (self.a > -200)

    @cached_property
    def body(self) -> np.ndarray:
        """The patient (anything denser than -400 HU and what it encloses), per slice."""
        out = np.zeros(self.a.shape, bool)
        for i, s in enumerate(self.a > -400):
            out[i] = ndimage.binary_fill_holes(ndimage.binary_opening(s, iterations=2))
        return out


def _median(x: np.ndarray) -> float | None:
    return float(np.median(x)) if x.size else None


def air_hu(ct: _Ct) -> float | None:
    """Median of the outer ring of each slice below -400 HU: the air around the patient (about -1000)."""
    z, h, w = ct.a.shape
    r, c = max(2, int(h * BORDER)), max(2, int(w * BORDER))
    ring = np.concatenate([ct.a[:, :r].ravel(), ct.a[:, -r:].ravel(), ct.a[:, :, :c].ravel(), ct.a[:, :, -c:].ravel()])
    return _median(ring[ring < -400])


def brain_hu(ct: _Ct) -> float | None:
    """Median of the intracranial voxels (grey and white matter, about 25-45 HU)."""
    return _median(ct.a[ct.intracranial])


def csf_hu(ct: _Ct) -> float | None:
    """5th percentile of the intracranial voxels: the CSF of the ventricles and sulci (about 0-15 HU)."""
    x = ct.a[ct.intracranial]
    return round(float(np.percentile(x, 5)), 1) if x.size else None


def bone_hu(ct: _Ct) -> float | None:
    """Median of the voxels above 300 HU (skull or skeleton)."""
    return _median(ct.a[ct.bone])


def intracranial_ml(ct: _Ct) -> float | None:
    """Volume enclosed by the skull in the series (a head covers hundreds of ml; a chest nearly none)."""
    return round(float(ct.intracranial.sum()) * ct.voxel_ml, 1)


def contrast_spots(ct: _Ct) -> float | None:
    """Enhancing spots per slice of brain: 2D blobs at 100-600 HU inside the skull, 5 mm or more from bone.

    An arterial-phase head shows the cross-sections of its opacified arteries
    and sinuses in every slice (synthetic CTAs: 4.9-9.8 per slice in thin
    series, 1.4-5 in 5 mm ones); a plain head only a few calcifications
    (pineal, choroid plexus; synthetic plain heads, with or without
    haemorrhage, 0-0.65). Acute blood (50-90 HU) stays below the threshold.
    Slices with less than 20 cm2 of brain (skull base, vertex) are not counted.
    """
    enhancing = ct.intracranial & (ct.a >= ENHANCING_HU[0]) & (ct.a <= ENHANCING_HU[1])
    min_px = 2000.0 / (ct.spacing[1] * ct.spacing[2])
    counts = [ndimage.label(e)[1] for e, brain in zip(enhancing, ct.intracranial, strict=True) if brain.sum() >= min_px]
    return round(float(np.mean(counts)), 2) if counts else None


def noise_hu(ct: _Ct) -> float | None:
    """Image noise: robust SD (MAD) of neighbouring-pixel differences inside the skull, / sqrt(2).

    Measured at full resolution on the slices kept (the subsampled grid would
    change the noise's correlation).
    """
    v = ct.full
    nz = v.array.shape[0]
    zs = np.unique(np.linspace(0, nz - 1, min(nz, MAX_SLICES)).round().astype(int))
    k = max(1, int(round(max(v.array.shape[1:]) / PLANE_PX)))
    diffs = []
    for i, z in enumerate(zs):
        mask = ndimage.binary_erosion(ct.intracranial[i], iterations=1)
        if not mask.any():
            continue
        full = np.repeat(np.repeat(mask, k, 0), k, 1)[: v.array.shape[1], : v.array.shape[2]]
        s = np.asarray(v.array[z], dtype=np.float32)
        d = s[:, 1:] - s[:, :-1]
        diffs.append(d[full[:, 1:] & full[:, :-1]])
    x = np.concatenate(diffs) if diffs else np.empty(0)
    if x.size < 100:
        return None
    return round(float(np.median(np.abs(x - np.median(x)))) * 1.4826 / float(np.sqrt(2)), 2)


def lung_hu(ct: _Ct) -> float | None:
    """Median of the voxels inside the body below -400 HU: aerated lung (about -850)."""
    return _median(ct.a[ct.body & (ct.a < -400)])


def slice_spacing_mm(ct: _Ct) -> float | None:
    return round(float(ct.full.spacing[0]), 3)


def fov_mm(ct: _Ct) -> float | None:
    """The reconstructed field of view: the larger of rows x row spacing and columns x column spacing."""
    v = ct.full
    return round(max(v.array.shape[1] * float(v.spacing[1]), v.array.shape[2] * float(v.spacing[2])), 1)


# -- hands ----------------------------------------------------------------------------------------


def _hand(v: Volume) -> tuple[np.ndarray, np.ndarray]:
    """The radiograph scaled to [0, 1] (0.5-99.5th percentiles) at ~256 px, and its largest bright object."""
    k = max(1, max(v.array.shape) // PLANE_PX)
    img = np.asarray(v.array[::k, ::k], dtype=np.float32)
    lo, hi = np.percentile(img, (0.5, 99.5))
    img = np.clip((img - lo) / max(float(hi - lo), 1e-6), 0.0, 1.0)
    level = float(np.median(img))
    mask = ndimage.binary_opening(img > level + 0.2 * (float(np.percentile(img, 99)) - level), iterations=1)
    labels, n = ndimage.label(mask)
    if n == 0:
        return img, mask
    sizes = ndimage.sum(mask, labels, range(1, n + 1))
    return img, labels == 1 + int(np.argmax(sizes))


def foreground_fraction(v: Volume) -> float | None:
    """The share of the image covered by its largest bright object (the hand and forearm)."""
    _, obj = _hand(v)
    return round(float(obj.mean()), 4)


def foreground_contrast(v: Volume) -> float | None:
    """Median of that object minus median of the rest, on the [0, 1] scale (a hand against the background)."""
    img, obj = _hand(v)
    if not obj.any() or obj.all():
        return None
    return round(float(np.median(img[obj]) - np.median(img[~obj])), 4)


def age_months(v: Volume) -> float | None:
    from radtriage.inference.bone_age import chronological_age_months

    return chronological_age_months(v.meta)


CT_MEASURES: dict[str, Callable[[_Ct], float | None]] = {
    f.__name__: f for f in (air_hu, brain_hu, csf_hu, bone_hu, intracranial_ml, contrast_spots, noise_hu, lung_hu,
                            slice_spacing_mm, fov_mm)
}
XR_MEASURES: dict[str, Callable[[Volume], float | None]] = {
    f.__name__: f for f in (foreground_fraction, foreground_contrast, age_months, hand_count, wrist_cover_ratio)
}
KINDS = {"ct_head": CT_MEASURES, "ct_chest": CT_MEASURES, "hand": XR_MEASURES}


def card_problems(card: ModelCard) -> list[str]:
    """What is wrong with a card's ``validated_range`` (an unknown measure), for start-up to refuse."""
    vr = card.validated_range
    if vr is None:
        return []
    known = KINDS[vr.kind]
    return [f"validated_range: unknown measure {name!r} for {vr.kind}; known: {', '.join(known)}"
            for name in vr.checks if name not in known]


def measure(vr: ValidatedRange, volume: Volume) -> dict[str, float | None]:
    """Each declared measure of the volume (none when the volume is not of the card's kind: 2D vs 3D)."""
    if (vr.kind == "hand") != volume.is_2d:
        return {}  # the pre-processing ops refuse the wrong kind of image with their own reason
    if vr.kind == "hand":
        return {name: XR_MEASURES[name](volume) for name in vr.checks}
    ct = _Ct.of(volume)
    return {name: CT_MEASURES[name](ct) for name in vr.checks}


def _fmt(x: float | None) -> str:
    return "unknown" if x is None else f"{x:g}"


def failures(card: ModelCard, volume: Volume) -> list[str]:
    """Each declared measure outside the card's range, as "<measure> <value>, validated [<min>, <max>]"."""
    vr = card.validated_range
    if vr is None:
        return []
    out = []
    for name, value in measure(vr, volume).items():
        r = vr.checks[name]
        if value is None or not r.contains(value):
            out.append(f"{name} {_fmt(value)}, validated {r}")
    return out


def observed(kind: str, volumes: Iterable[Volume], source: str, margin: float = 0.1,
             names: Iterable[str] | None = None) -> tuple[ValidatedRange, dict[str, tuple[float, float, int]]]:
    """The validated range a set of volumes supports (a model's training or validation data, or a site's
    commissioning studies): per measure, the observed span widened by ``margin`` of it on each side.
    Also returns each measure's (lowest, highest, count measured). A measure never taken is left out."""
    measures = KINDS[kind]
    wanted = list(names) if names is not None else list(measures)
    seen: dict[str, list[float]] = {n: [] for n in wanted}
    probe = ValidatedRange(kind=kind, source=source, checks={n: Range() for n in wanted})
    for volume in volumes:
        for name, value in measure(probe, volume).items():
            if value is not None and np.isfinite(value):
                seen[name].append(float(value))
    checks, spans = {}, {}
    for name, values in seen.items():
        if not values:
            continue
        lo, hi = min(values), max(values)
        pad = margin * (hi - lo)
        checks[name] = Range(min=round(lo - pad, 3), max=round(hi + pad, 3))
        spans[name] = (lo, hi, len(values))
    return ValidatedRange(kind=kind, source=source, checks=checks), spans
