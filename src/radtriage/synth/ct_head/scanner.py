"""Scanner mode of the CT head: what a scanner varies, drawn per study, and the slab through `ct_physics.scan`.

On top of the phantom mode's draw (FOV, matrix, slice thickness, head size
and rotation, position) it draws kVp (100/120/140), mAs (200-400; noise
follows from the quanta, about 1/sqrt(mAs)), gantry tilt (a third of studies,
5-20 degrees, seen in the image as head pitch: the DICOM geometry stays
axial), more head rotation, the head off the isocentre (the bowtie then
gives one side more noise), motion (one study in eight: a jerk or drift of
a few mm and degrees within the rotation), electronic noise, and how much
of the water (cupping) and bone (streaks between the petrous bones) beam
hardening the scanner corrects. Metal comes with the mimics (clips, shunt
valves, dental fillings).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import numpy as np

from radtriage.synth import ct_physics
from radtriage.synth.ct_head.acquisition import _Acquisition
from radtriage.synth.ct_head.anatomy import _Anatomy
from radtriage.synth.ct_head.frame import A_IN, B_IN, C_UP, F32, _upsample2
from radtriage.synth.geometry import rotation


@dataclass(frozen=True)
class _ScannerDraw:
    scan: ct_physics.Scan
    kernel: str  # the main series' kernel
    gantry_tilt_deg: float
    extra_rotation_deg: tuple[float, float]  # yaw, roll beyond the phantom mode's


def draw_scanner(rng: np.random.Generator, o, an: _Anatomy, acq: _Acquisition) -> tuple[_Acquisition, _ScannerDraw]:
    """The scanner's draw (``o``: `CtHeadOptions`; its kvp, mas, kernel, motion force what they name)."""
    kvp = float(o.kvp if o.kvp is not None else rng.choice([100.0, 120.0, 120.0, 120.0, 140.0]))
    mas = float(o.mas if o.mas is not None else rng.uniform(200, 400))
    tilt = float(-rng.uniform(5, 20)) if rng.random() < 0.33 else 0.0
    yaw, roll = (float(np.clip(rng.normal(0, 3.0), -8, 8)) for _ in range(2))
    iso = (float(rng.normal(0, 6)), float(rng.normal(-12, 12)))  # isocentre from the head centre, mm
    moving = rng.random() < 0.12 if o.motion is None else bool(o.motion)
    motion = ct_physics.Motion(shift_mm=(float(rng.normal(0, 2.5)), float(rng.normal(0, 2.5))),
                               turn_deg=float(rng.normal(0, 2.5)), at=float(rng.uniform(0.2, 0.8)),
                               ramp=float(rng.uniform(0.02, 0.3)))
    electronic, water_fix, bone_left = float(rng.uniform(4, 10)), float(rng.uniform(0.9, 1.0)), float(rng.uniform(0.2, 0.8))
    rot = rotation(*(math.radians(v) for v in (yaw, tilt, roll))) @ acq.rot
    acq = _recover(replace(acq, rot=rot, kvp=kvp, mas=mas, ctdi_vol=0.183 * mas * (kvp / 120.0) ** 2.5,
                           rotation_deg=(acq.rotation_deg[0] + yaw, acq.rotation_deg[1] + tilt,
                                         acq.rotation_deg[2] + roll)), an, o.max_slices)
    off = (acq.centre[0] + iso[0] - acq.recon_centre[0], acq.centre[1] + iso[1] - acq.recon_centre[1])
    scan = ct_physics.Scan(kvp=kvp, mas=mas, thickness=acq.thickness, pixel=acq.pixel, electronic_sd=electronic,
                           water_correction=water_fix, bone_residual=bone_left, iso_offset=off,
                           motion=motion if moving else None)
    noise = 3.3 * math.sqrt(300.0 / mas * 5.0 / acq.thickness) * (120.0 / kvp) ** 1.2
    acq = replace(acq, noise_sd=noise)
    return acq, _ScannerDraw(scan, o.kernel or "soft", tilt, (yaw, roll))


def _recover(acq: _Acquisition, an: _Anatomy, max_slices: int | None) -> _Acquisition:
    """The slices again from the foramen magnum to the vertex for the head turned as it now is."""
    sc = np.array(an.scale)
    out = an.skull_t + an.scalp_t
    semi = sc * np.array([A_IN * 1.06 + out, B_IN + out, C_UP + out])
    z_top = acq.centre[2] + math.sqrt(float(np.sum((acq.rot[2] * semi) ** 2))) + 2.0
    z_start = min(acq.centre[2] + float(acq.rot[2] @ (sc * np.array(p)))
                  for p in ((0, 40, -62), (0, 15, -64), (30, 30, -58))) + 1.0
    n = int(math.ceil((z_top - z_start) / acq.thickness))
    if max_slices is not None and n > max_slices:
        z_start = acq.centre[2] + float(acq.rot[2] @ (sc * np.array([0, 0, 5.0]))) - max_slices * acq.thickness / 2
        n = max_slices
    return replace(acq, n_slices=n, origin=(acq.origin[0], acq.origin[1], z_start + acq.thickness / 2))


def cover_teeth(acq: _Acquisition, an: _Anatomy) -> _Acquisition:
    """Start the slices low enough to hold the upper teeth (as a scan from the occlusal plane does)."""
    z_teeth = acq.centre[2] + float(acq.rot[2] @ (np.array(an.scale) * np.array([0.0, -70.0, -88.0])))
    k = int(math.ceil((acq.origin[2] - z_teeth) / acq.thickness)) if acq.origin[2] > z_teeth else 0
    if k == 0:
        return acq
    o = acq.origin
    return replace(acq, n_slices=acq.n_slices + k, origin=(o[0], o[1], o[2] - k * acq.thickness))


def scan_head(rng: np.random.Generator, slab: np.ndarray, metal: dict[str, np.ndarray], acq: _Acquisition,
              factor: int, draw: _ScannerDraw, kernels: tuple[str, ...]) -> dict[str, np.ndarray]:
    """Each kernel's int16 HU series (n_slices, matrix, matrix) from one acquisition of the coarse slab."""
    scan = replace(draw.scan, pixel=acq.pixel * factor)
    images = ct_physics.scan(rng, slab, scan, kernels, metal=metal or None)
    m = acq.matrix
    yy, xx = np.mgrid[0:m, 0:m]
    outside = np.hypot(yy - (m - 1) / 2, xx - (m - 1) / 2) > m / 2
    out = {}
    for kern, img in images.items():
        full = _upsample2(img) if factor == 2 else img
        full = np.asarray(full, F32)
        full[:, outside] = -1024  # outside the reconstruction circle
        np.rint(full, out=full)
        np.clip(full, -1024, 3071, out=full)
        out[kern] = full.astype(np.int16)
    return out


def scanner_truth(draw: _ScannerDraw, factor: int, metal: dict[str, np.ndarray]) -> dict:
    s = draw.scan
    return {"kernel": draw.kernel, "kvp": s.kvp, "mas": round(s.mas, 1), "gantry_tilt_deg": round(draw.gantry_tilt_deg, 1),
            "isocentre_offset_mm": [round(float(v), 1) for v in s.iso_offset], "electronic_noise": round(s.electronic_sd, 2),
            "water_correction": round(s.water_correction, 3), "bone_residual": round(s.bone_residual, 3),
            "motion": None if s.motion is None else {"shift_mm": [round(v, 2) for v in s.motion.shift_mm],
                                                     "turn_deg": round(s.motion.turn_deg, 2), "at": round(s.motion.at, 2)},
            "metal": sorted(k for k, v in metal.items() if float(v.max()) > 0.05),
            "upsampled": factor}
