"""Detector mode (``acquisition="detector"``): the hand through a real exposure, detector and vendor processing.

The skeleton and soft tissue are those of the default mode; what differs:
bone and soft tissue become path lengths of their materials, exposed with a
polychromatic spectrum (`synth/xr_physics.py`), with scatter (and a grid, or
none as on most table-top hands), the heel effect, quantum and electronic
noise at the exposure drawn, CR or DR detector blur, and the vendor's
processing and stored depth. What departments add (`department.py`) and the
normal variants of growing hands (`variants.py`) are drawn here, each from
its own random stream, so forcing one leaves the others as drawn.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from radtriage.synth import xr_physics as phys
from radtriage.synth.acquisition import pick, substreams
from radtriage.synth.dicom import XR_SCANNERS
from radtriage.synth.xr_hand import department, variants
from radtriage.synth.xr_hand.projection import _soft_tissue, _View
from radtriage.synth.xr_hand.skeleton import _skeleton
from radtriage.synth.xr_hand.subject import MU_CORTEX, MU_SOFT, Subject

BITS_STORED = {"FCR PROFECT CS": 10, "DRX-Evolution": 12, "DigitalDiagnost": 14, "CR 30-X": 12}
VENDORS = tuple(model for _, model, _ in XR_SCANNERS)
DETECTOR_KIND = {model: ("CR" if modality == "CR" else "DR") for _, model, modality in XR_SCANNERS}


@dataclass(frozen=True)
class _Beam:
    kvp: float
    al_mm: float
    kerma_ugy: float  # open-field air kerma at the detector
    heel: float
    heel_along_rows: bool
    grid: bool
    grid_lines_per_cm: float
    spr: float  # scatter-to-primary ratio behind ~25 mm of tissue, before any grid
    scatter_mm: float
    leak: float  # what reaches the plate under the shutters


def _draw_beam(rng: np.random.Generator, det: phys.Detector, conditions: frozenset[str],
               kerma: float | None) -> _Beam:
    kvp, al_mm = rng.uniform(46, 60), rng.uniform(2.5, 4.0)
    drawn = math.exp(rng.normal(math.log(10.0 if det.kind == "DR" else 20.0), 0.35))
    if "low_exposure" in conditions:
        drawn *= rng.uniform(0.06, 0.2)
    if "over_exposure" in conditions:  # the detector saturates behind thin soft tissue, not behind bone
        drawn = det.saturation_ugy * rng.uniform(1.3, 2.2)
    return _Beam(kvp, al_mm, float(kerma if kerma is not None else drawn), rng.uniform(0.04, 0.15),
                 bool(rng.random() < 0.7), "grid" in conditions, rng.uniform(36, 80), rng.uniform(0.15, 0.35),
                 rng.uniform(15, 35), rng.uniform(0.01, 0.04))


def _layout(rng: np.random.Generator, conditions: frozenset[str]) -> "Layout":
    from radtriage.synth.xr_hand.acquisition import Layout

    rot = rng.uniform(-10, 10)
    if "rotated" in conditions:
        rot = rng.choice((-1.0, 1.0)) * rng.uniform(15, 35)
    top, left = rng.uniform(0.1, 0.35), rng.uniform(0.35, 0.65)
    if "off_centre" in conditions:
        top, left = rng.uniform(0.0, 1.0), float(rng.choice((rng.uniform(0.0, 0.1), rng.uniform(0.9, 1.0))))
    if "second_hand" in conditions:
        left = rng.uniform(0.0, 0.06)
    return Layout(float(rot), float(top), float(left), "second_hand" in conditions)


def _paths(r_anat, r_dept, subject: Subject, conds, var, geo: _View, tubes, blobs) -> tuple[dict, dict, np.ndarray]:
    """Material path lengths (mm) of the hand (and its mirror twin), its jewellery and cast; their truth."""
    from radtriage.synth.xr_hand.acquisition import _bone

    mineral = 0.8 + 0.2 * float(np.clip(subject.bone_age_months / 144.0, 0, 1))
    bone_att = _bone(r_anat, tubes, blobs, geo, mineral, r_anat.uniform(0.15, 0.3))
    variants.clefts(var, subject, tubes, geo, bone_att)
    bone = np.maximum(bone_att, 0) * np.float32(1.0 / (MU_CORTEX - MU_SOFT))
    soft = _soft_tissue(subject, tubes, geo)
    truth: dict[str, dict] = {}
    if "second_hand" in conds:
        twin = soft[:, ::-1]
        truth["second_hand"] = {"side": "right", "box_px": department.box_of(twin > 2.0)}
        soft = np.maximum(soft, twin)
        bone = bone + bone[:, ::-1]
    anatomy = soft.copy()
    extras = department.jewellery_and_casts(r_dept, conds, tubes, geo)
    truth.update(extras.truth)
    paths = {"soft": np.maximum(soft - bone, 0), "bone": bone, **extras.paths}
    return paths, truth, anatomy


def render_detector(rng: np.random.Generator, subject: Subject, *, view: str = "PA", size: int | None = None,
                    pixel_spacing: float | None = None, binning: int = 1, conditions: tuple[str, ...] | None = None,
                    variant_names: tuple[str, ...] | None = None, vendor: str | None = None,
                    kerma_ugy: float | None = None, photometric: str | None = None) -> tuple[np.ndarray, float, dict]:
    """(image in [0, 1] with 1 = most attenuating, at its stored depth; spacing mm; truth)."""
    from radtriage.synth.xr_hand.acquisition import _make_view, _truth

    _, (r_cond, r_layout, r_anat, r_dept, r_exp, r_noise) = substreams(rng, 6)
    conds = department.draw_conditions(r_cond, conditions)
    if size is not None:
        conds = conds - {"low_resolution"}
    subject = department.pose(r_cond, subject, conds)
    var = variants.draw_variants(r_anat, variant_names)
    tubes, blobs, marks = _skeleton(subject)
    blobs = blobs + variants.blobs(var, subject, tubes)
    geo, info = _make_view(r_layout, subject, marks, view, pixel_spacing, size, binning, _layout(r_layout, conds))
    paths, art, anatomy = _paths(r_anat, r_dept, subject, conds, var, geo, tubes, blobs)
    vendor = vendor or pick(r_exp, VENDORS)
    det = phys.draw_detector(r_exp, DETECTOR_KIND.get(vendor, "DR"))
    beam = _draw_beam(r_exp, det, conds, kerma_ugy)
    proc = phys.draw_processing(r_exp, vendor)
    if "collimation" in conds:
        field, box = department.collimation(r_dept, geo.shape, info["hand_box"], geo.spacing, "second_hand" in conds)
        art["collimation"] = {"field_px": box}
    else:
        field, box = np.ones(geo.shape, np.float32), [0, geo.shape[0], 0, geo.shape[1]]
    marks_ = department.markers(r_dept, conds, anatomy, box, geo.spacing)
    art.update(marks_.truth)
    for material, length in marks_.paths.items():
        paths[material] = paths.get(material, 0) + length
    incident = phys.heel(geo.shape, beam.heel, beam.heel_along_rows) * (field + beam.leak * (1 - field))
    if beam.grid:
        incident = incident * department.grid_lines(geo.shape, geo.spacing, beam.grid_lines_per_cm,
                                                    r_exp.random() < 0.5, 0.04)
    primary = incident * phys.transmission(paths, beam.kvp, beam.al_mm)
    scat = phys.scatter(primary, incident, geo.spacing, beam.spr, beam.scatter_mm)
    signal = primary + scat * np.float32(0.12 if beam.grid else 1.0)
    detected = phys.detect(r_noise, signal, beam.kerma_ugy, geo.spacing, det)
    image = phys.process(detected, (field > 0.5) & (anatomy > 2.0), field, geo.spacing, proc)
    image, geo, art = _export(r_exp, image, geo, art, conds)
    bits = 8 if "8bit" in conds else (16 if r_exp.random() < 0.1 else BITS_STORED.get(vendor, 12))
    mono1 = (det.kind == "CR") == (r_exp.random() < 0.85)
    photometric = photometric or ("MONOCHROME1" if mono1 else "MONOCHROME2")
    truth = _truth(subject, geo, marks, info, view)
    truth.update(
        acquisition={"mode": "detector", "vendor": vendor, "detector": det.kind, "kvp": round(beam.kvp, 1),
                     "filtration_mm_al": round(beam.al_mm, 2), "kerma_ugy": round(beam.kerma_ugy, 3),
                     "grid": beam.grid, "scatter_to_primary": round(beam.spr * (0.12 if beam.grid else 1), 3),
                     "heel": round(beam.heel, 3), "detector_blur_mm": round(det.blur_mm, 3),
                     "processing": {k: (round(v, 3) if isinstance(v, float) else v)
                                    for k, v in proc.__dict__.items()},
                     "bits_stored": bits, "photometric": photometric},
        conditions=sorted(conds), artefacts=art,
        variants=variants.centres_px(var, subject, tubes, geo),
        finger_spread_deg=[round(v, 1) for v in subject.finger_spread],
    )
    return phys.quantise(image, bits), float(geo.spacing), truth


def _export(rng: np.random.Generator, image: np.ndarray, geo: _View, art: dict[str, Any],
            conds: frozenset[str]) -> tuple[np.ndarray, _View, dict[str, Any]]:
    """A low-resolution export (a few hundred pixels tall): the image, its geometry and the boxes, rescaled."""
    if "low_resolution" not in conds:
        return image, geo, art
    rows = int(rng.uniform(200, 520))
    f = image.shape[0] / rows
    small = phys.downsample(image, f)
    f = image.shape[0] / small.shape[0]
    shift = (0.5 * f - 0.5) * geo.spacing
    out = replace(geo, origin=geo.origin - shift, spacing=geo.spacing * f, shape=small.shape)

    def scale(v):
        if isinstance(v, dict):
            return {k: scale(x) for k, x in v.items()}
        if isinstance(v, list) and len(v) == 4 and all(isinstance(x, int) for x in v):
            return [int(math.floor(v[0] / f)), int(math.ceil(v[1] / f)), int(math.floor(v[2] / f)),
                    int(math.ceil(v[3] / f))]
        return v

    return small, out, scale(art)
