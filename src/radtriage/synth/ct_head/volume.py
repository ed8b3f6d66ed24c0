"""`sample`: one CT head drawn from its four streams, reconstructed, with its truth."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from radtriage.synth.acquisition import substreams
from radtriage.synth.ct_head.acquisition import (
    _Acquisition, _draw_acquisition, _noise_map, _reconstruct, _render_slices,
)
from radtriage.synth.ct_head.anatomy import _Anatomy, _draw_anatomy
from radtriage.synth.ct_head.frame import F32, _upsample2
from radtriage.synth.ct_head.lesions import SLICE_MIN_ML, SUBTYPE_CODE, SUBTYPES, _Bleed, _draw_bleeds
from radtriage.synth.ct_head.mimics import METAL_HU, as_child, draw_child, draw_mimics, mimic_truth
from radtriage.synth.ct_head.scanner import cover_teeth, draw_scanner, scan_head, scanner_truth
from radtriage.synth.options import CtOptions

@dataclass(frozen=True, eq=False)
class CtHeadSample:
    """One synthetic CT head, as the main (soft-tissue kernel) series holds it.

    ``hu`` is (z, y, x) int16 HU; slice 0 is the most caudal, x grows to the
    patient's left, y to posterior (DICOM LPS, ImageOrientationPatient
    1\\0\\0\\0\\1\\0). ``spacing`` is (slice interval, row, column) mm and
    ``origin`` the patient (x, y, z) mm of voxel (0, 0, 0). ``labels`` holds
    the subtype code (`SUBTYPE_CODE`) where a voxel is at least half blood.
    ``bone`` is the bone-kernel reconstruction of the same slices when asked for.
    """

    hu: np.ndarray
    spacing: tuple[float, float, float]
    origin: tuple[float, float, float]
    slice_thickness: float
    labels: np.ndarray
    truth: dict[str, Any]
    bone: np.ndarray | None = None

    def voxel_to_mm(self, zyx: Sequence[float]) -> tuple[float, float, float]:
        z, y, x = zyx
        return (self.origin[0] + x * self.spacing[2], self.origin[1] + y * self.spacing[1],
                self.origin[2] + z * self.spacing[0])


@dataclass(frozen=True, kw_only=True)
class CtHeadOptions(CtOptions):
    """What `sample` may be asked for (each None: drawn).

    positive: force a study with (True) or without (False) haemorrhage; None
    draws it with probability ``p_positive``. subtypes: exactly these
    haemorrhages (RSNA names, see `SUBTYPES`), one of each. matrix: output rows
    and columns (512 as scanners write; 128 or 256 for training).
    slice_thickness: mm; None draws 2.5-5 mm; 0.625-1.25 mm gives a thin
    series. age: years (None draws an adult stroke/trauma population, 18-96).
    max_slices: cover at most this many slices, centred on the brain (small
    tests). bone_kernel: also reconstruct the bone-kernel twin (``bone``).

    acquisition: "phantom" (the default, as the reference models were trained:
    the phantom blurred, with noise of a ramp-shaped spectrum) or "scanner"
    (`scanner`: polychromatic projection, quantum and electronic noise, beam
    hardening, metal, motion, filtered back-projection; normal mimics and
    children drawn). mimics: exactly these (`mimics.MIMICS`); None draws
    them in scanner mode and adds none in phantom mode. kvp, mas, kernel
    ("soft"/"sharp", the main series), motion: force the scanner's draw.
    """

    positive: bool | None = None
    subtypes: Sequence[str] | None = None
    p_positive: float = 0.5
    slice_thickness: float | None = None
    age: float | None = None
    max_slices: int | None = None
    bone_kernel: bool = False
    acquisition: str = "phantom"
    mimics: Sequence[str] | None = None
    kvp: float | None = None
    mas: float | None = None
    kernel: str | None = None
    motion: bool | None = None


def sample(rng: np.random.Generator, **options: Any) -> CtHeadSample:
    """Draw one synthetic non-contrast CT head (no I/O); ``options`` are `CtHeadOptions`.

    ``rng`` is the only source of randomness; the same seed gives the same
    study. Anatomy, acquisition, haemorrhage and noise come from four
    independent streams, so forcing ``positive`` changes only the haemorrhage:
    the same seed with and without it differs only in and near the blood.
    """
    return _sample(rng, CtHeadOptions(**options))[0]


def _sample(rng: np.random.Generator, o: CtHeadOptions) -> tuple[CtHeadSample, _Anatomy, _Acquisition]:
    if o.matrix < 64:
        raise ValueError("matrix must be at least 64")
    if o.acquisition not in ("phantom", "scanner"):
        raise ValueError("acquisition must be 'phantom' or 'scanner'")
    seeds, (r_anat, r_acq, r_bleed, r_noise) = substreams(rng, 4)
    scanner = o.acquisition == "scanner"
    with_mimics = scanner or o.mimics is not None
    # the new draws come from streams of their own, so the phantom mode draws exactly as before
    r_mimic, r_scan = (np.random.default_rng([int(seeds[i]), 1]) for i in (0, 1))
    age = o.age
    if age is None:
        age = float(np.clip(r_anat.normal(64, 17), 18, 96))
        child = draw_child(r_mimic) if scanner and o.mimics is None else None
        age = child if child is not None else age
    an = _draw_anatomy(r_anat, float(age))
    if with_mimics:
        an = draw_mimics(r_mimic, as_child(an) if age < 16 else an, None if o.mimics is None else tuple(o.mimics))
    acq = _draw_acquisition(r_acq, an, o.matrix, o.slice_thickness, o.max_slices)
    draw = None
    if scanner:
        acq, draw = draw_scanner(r_scan, o, an, acq)
    if any(m.name == "teeth_and_fillings" for m in an.mimics) and o.max_slices is None:
        acq = cover_teeth(acq, an)
    bleeds = _draw_bleeds(r_bleed, an, o.positive, o.subtypes, o.p_positive)
    factor = 2 if acq.pixel < 0.6 and o.matrix % 2 == 0 else 1
    slab, occupancy, hbox, metal = _render_slices(an, acq, bleeds, factor)
    bone = None
    if draw is not None:
        kernels = (draw.kernel,) + (("sharp",) if o.bone_kernel else ())
        images = scan_head(r_noise, slab, metal, acq, factor, draw, kernels)
        hu, bone = images[draw.kernel], images.get("sharp") if o.bone_kernel else None
    else:
        for occ in metal.values():  # the phantom mode shows metal saturated, without streaks
            slab += occ * (F32(METAL_HU) - slab)
        noise_map = _noise_map(acq, an)
        hu = _reconstruct(r_noise, slab, acq, factor, hbox, noise_map, psf_mm=acq.psf_mm, noise_sd=acq.noise_sd,
                          fc=0.42)
        if o.bone_kernel:
            bone = _reconstruct(np.random.default_rng(int(seeds[3]) + 1), slab, acq, factor, hbox, noise_map,
                                psf_mm=0.25, noise_sd=acq.noise_sd * 3.2, fc=0.9, sharpen=0.8)
    labels, truth_bleeds = _bleed_truth(bleeds, _occupancy_blocks(occupancy, factor), acq, an.scale)
    truth = _truth(an, acq, bleeds, truth_bleeds, acq.n_slices)
    if with_mimics:
        truth["acquisition_mode"] = o.acquisition
        truth["mimics"] = mimic_truth(an, acq, draw is not None, metal)
    if draw is not None:
        truth["scanner"] = scanner_truth(draw, factor, metal)
    smp = CtHeadSample(hu=hu, spacing=(acq.thickness, acq.pixel, acq.pixel), origin=acq.origin,
                       slice_thickness=acq.thickness, labels=labels, truth=truth, bone=bone)
    return smp, an, acq


def _occupancy_blocks(occupancy: list[np.ndarray], factor: int):
    """Each bleed's occupancy on the output grid, as (box, block) around where it is non-zero."""
    blocks = []
    for occ in occupancy:
        nz = [np.flatnonzero(occ.any(axis=ax)) for ax in ((1, 2), (0, 2), (0, 1))]
        if any(len(v) == 0 for v in nz):
            blocks.append(None)
            continue
        lo = [max(int(v[0]) - 1, 0) for v in nz]
        hi = [min(int(v[-1]) + 2, n) for v, n in zip(nz, occ.shape)]
        block = occ[lo[0]:hi[0], lo[1]:hi[1], lo[2]:hi[2]]
        if factor == 2:
            block = _upsample2(block)
        box = (slice(lo[0], hi[0]), slice(lo[1] * factor, hi[1] * factor), slice(lo[2] * factor, hi[2] * factor))
        blocks.append((box, block))
    return blocks


def _bleed_truth(bleeds: Sequence[_Bleed], blocks, acq: _Acquisition, scale: Sequence[float]):
    """Label volume and per-bleed truth (slices, centre, volume) from the occupancy blocks."""
    voxel_ml = acq.thickness * acq.pixel * acq.pixel / 1000.0
    labels = np.zeros((acq.n_slices, acq.matrix, acq.matrix), np.uint8)
    best = np.zeros(labels.shape, F32)
    out = []
    for b, item in zip(bleeds, blocks):
        entry: dict[str, Any] = dict(subtype=b.subtype, location=b.location, side=b.side,
                                     density_hu=round(b.density, 1), volume_ml=0.0, slices=[])
        if b.subtype in ("subdural", "epidural"):
            entry["max_thickness_mm"] = round(b.geom["t_max"] * float(np.mean(scale)), 1)
        out.append(entry)
        if item is None:
            continue
        box, occ = item
        z0, y0, x0 = box[0].start, box[1].start, box[2].start
        mask = (occ >= 0.5) & (occ > best[box])
        labels[box][mask] = SUBTYPE_CODE[b.subtype]
        np.maximum(best[box], occ, out=best[box])
        per_slice = occ.sum(axis=(1, 2), dtype=np.float64) * voxel_ml
        entry["volume_ml"] = round(float(per_slice.sum()), 2)
        entry["slices"] = [int(z0 + k) for k in np.flatnonzero(per_slice >= SLICE_MIN_ML)]
        zz, yy, xx = np.nonzero(occ > 0.05)
        if len(zz) == 0:
            continue
        wts = occ[zz, yy, xx]
        cz, cy, cx = (float(np.average(v, weights=wts)) for v in (zz, yy, xx))
        cand = np.flatnonzero(occ.ravel() >= min(0.5, float(occ.max()) * 0.9))
        cz_, cy_, cx_ = np.unravel_index(cand, occ.shape)
        d2 = ((cz_ - cz) * acq.thickness) ** 2 + ((cy_ - cy) * acq.pixel) ** 2 + ((cx_ - cx) * acq.pixel) ** 2
        k = int(np.argmin(d2))
        v = (int(z0 + cz_[k]), int(y0 + cy_[k]), int(x0 + cx_[k]))
        entry["centre_voxel"] = list(v)
        entry["centre_mm"] = [round(acq.origin[0] + v[2] * acq.pixel, 2), round(acq.origin[1] + v[1] * acq.pixel, 2),
                              round(acq.origin[2] + v[0] * acq.thickness, 2)]
        entry["centroid_mm"] = [round(acq.origin[0] + (x0 + cx) * acq.pixel, 2),
                                round(acq.origin[1] + (y0 + cy) * acq.pixel, 2),
                                round(acq.origin[2] + (z0 + cz) * acq.thickness, 2)]
    return labels, out


def _truth(an: _Anatomy, acq: _Acquisition, bleeds, truth_bleeds, n_slices: int) -> dict[str, Any]:
    slice_labels: dict[str, list[int]] = {s: [] for s in SUBTYPES}
    for t in truth_bleeds:
        slice_labels[t["subtype"]] = sorted(set(slice_labels[t["subtype"]]) | set(t["slices"]))
    any_slices = sorted({k for t in truth_bleeds for k in t["slices"]})
    return {
        "present": bool(truth_bleeds),
        "subtypes": sorted({t["subtype"] for t in truth_bleeds}),
        "haemorrhages": truth_bleeds,
        "slice_labels": {"any": any_slices, **slice_labels},
        "n_slices": n_slices,
        "slice_thickness_mm": acq.thickness,
        "pixel_spacing_mm": round(acq.pixel, 6),
        "matrix": acq.matrix,
        "age_years": round(an.age, 1),
        "head": {"scale": [round(v, 3) for v in an.scale], "rotation_deg": [round(v, 2) for v in acq.rotation_deg],
                 "ventricle_scale": round(an.vent, 3), "atrophy": round(an.atrophy, 3),
                 "calcifications": sorted({c[0] for c in an.calcs}),
                 "scalp_haematoma": an.scalp_haematoma is not None},
        "noise_sd_hu": round(acq.noise_sd, 2),
        "acquisition": {"kvp": acq.kvp, "mas": round(acq.mas, 1), "ma": round(acq.mas, 1),
                        "ctdi_vol_mgy": round(acq.ctdi_vol, 2),
                        "dlp_mgycm": round(acq.ctdi_vol * acq.n_slices * acq.thickness / 10, 1),
                        "fov_mm": round(acq.fov, 2), "psf_mm": round(acq.psf_mm, 3)},
        "midline_shift_mm": round(max([b.geom.get("shift", 0.0) for b in bleeds] or [0.0]), 1),
    }
