"""Acquisition: the view on the plate, exposure, collimation, noise, detector processing; `render` and `sample`."""

from __future__ import annotations

import math
from dataclasses import dataclass, fields
from typing import Any

import numpy as np
from scipy import ndimage

from radtriage.synth.xr_hand.detector import render_detector
from radtriage.synth.xr_hand.projection import (
    _blob_attenuation, _soft_tissue, _tube_attenuation, _View,
)
from radtriage.synth.xr_hand.skeleton import _skeleton, _stage
from radtriage.synth.xr_hand.subject import (
    CARPAL_ORDER, MU_SOFT, TEMPLATE_HAND_LENGTH, Subject, SubjectOptions, draw_subject,
)
from radtriage.synth.xr_physics import lowpass

@dataclass(frozen=True)
class HandSample:
    """One synthetic radiograph: ``image`` float32 (rows, cols) in [0, 1], 1 = most attenuating."""

    image: np.ndarray
    pixel_spacing: float  # mm, square pixels
    truth: dict[str, Any]


@dataclass(frozen=True)
class Layout:
    """Where the hand lies on the plate, when chosen beforehand (detector mode): rotation, the fractions of
    the free space above and to the left of it, and room for a second (mirrored) hand on the right."""

    rotation_deg: float
    top: float
    left: float
    two_hands: bool = False


def _make_view(rng, subject: Subject, marks, view: str, pixel_spacing: float | None, size: int | None,
               binning: int, layout: Layout | None = None) -> tuple[_View, dict]:
    theta = math.radians(rng.uniform(-12, 12) if layout is None else layout.rotation_deg)
    cx = 1.0 if view == "PA" else rng.uniform(0.6, 0.72)
    s = subject.size
    rot = np.array([[math.cos(theta), -math.sin(theta)], [math.sin(theta), math.cos(theta)]])
    matrix = s * rot @ np.diag([cx, -1.0])
    tips = [marks[f"tip{d}"] for d in range(1, 6)]
    key = np.array(tips + [(-45.0, 60.0), (45.0, 50.0), (-36.0, 0.0), (30.0, 0.0)])
    pts = (matrix @ key.T).T
    lo, hi = pts.min(0) - 14 * s, pts.max(0) + 14 * s
    ext_w, ext_h = hi - lo
    fov_h = float(np.clip(ext_h * rng.uniform(1.1, 1.4), 180, 290))  # ~18x24 to 24x30 cm plates
    fov_w = float(max(fov_h * rng.uniform(0.74, 0.84), ext_w * (1.15 if layout is None or not layout.two_hands
                                                                 else 2.3)))
    drawn_spacing = float(rng.choice((0.1, 0.139, 0.143, 0.15)))
    native = pixel_spacing or drawn_spacing
    spacing = native * binning
    top = (rng.uniform(0.05, 0.35) if layout is None else layout.top) * max(fov_h - ext_h, 0)
    left = (fov_w - ext_w) * (rng.uniform(0.3, 0.7) if layout is None else layout.left)
    origin = np.array([left - lo[0], top - lo[1]])
    if size is not None:  # square training image; same field of view, letterboxed across
        fov = max(fov_h, fov_w)
        origin = origin + np.array([(fov - fov_w) / 2, (fov - fov_h) / 2])
        spacing, shape = fov / size, (size, size)
    else:
        shape = (int(round(fov_h / spacing)), int(round(fov_w / spacing)))
    hand_box = (origin + lo, origin + hi)  # image mm
    info = {"rotation_deg": math.degrees(theta), "hand_box": hand_box, "native_spacing": native}
    return _View(matrix, np.linalg.inv(matrix), origin, spacing, shape, s), info


def _add_marker(att: np.ndarray, spacing: float, field: tuple[int, int, int, int], soft: np.ndarray,
                rng: np.random.Generator) -> None:
    """A lead 'L' in a free corner of the collimated ``field`` (r0, r1, c0, c1)."""
    h = rng.uniform(9, 13) / spacing
    w, stroke = 0.7 * h, max(0.2 * h, 1.0)
    margin = rng.uniform(4, 10) / spacing
    for k in rng.permutation(4):
        r0 = field[0] + margin if k < 2 else field[1] - margin - h
        c0 = field[2] + margin if k % 2 == 0 else field[3] - margin - w
        rs = slice(max(int(r0 - stroke), 0), int(r0 + h + stroke) + 1)
        cs = slice(max(int(c0 - stroke), 0), int(c0 + w + stroke) + 1)
        if r0 < stroke or c0 < stroke or soft[rs, cs].max(initial=0) > 0.5:
            continue
        rr = np.arange(rs.start, rs.stop)[:, None]
        cc = np.arange(cs.start, cs.stop)[None, :]
        vert = (rr >= r0) & (rr < r0 + h) & (cc >= c0) & (cc < c0 + stroke)
        foot = (rr >= r0 + h - stroke) & (rr < r0 + h) & (cc >= c0) & (cc < c0 + w)
        att[rs, cs] += 6.0 * (vert | foot) + 0.08  # lead letter in a plastic holder
        return


def _ramp(n: int, lo: int, hi: int) -> np.ndarray:
    """1 inside [lo, hi), 0 outside, with a pixel of penumbra."""
    i = np.arange(n, dtype=np.float32)
    return np.clip(np.minimum(i - lo + 1.0, hi - i), 0, 1) * 1.0



@dataclass(frozen=True)
class _Exposure:
    """The radiographer's and the system's choices for one image, drawn in this order."""

    blur_mm: float
    dose: float  # relative detector exposure
    heel: np.ndarray
    gamma: float
    edge: float
    headroom: float
    floor: float
    texture_amp: float
    collimate: bool
    shutter_level: float
    shutter_margin: np.ndarray


def _draw_exposure(rng: np.random.Generator) -> _Exposure:
    blur_mm = rng.uniform(0.07, 0.15)
    dose = rng.uniform(0.6, 1.6)
    heel = rng.normal(0, 0.03, 2)
    gamma, edge = rng.uniform(0.5, 0.8), rng.uniform(0.0, 0.6)
    headroom, floor = rng.uniform(1.0, 1.12), rng.uniform(0.0, 0.06)
    texture_amp = rng.uniform(0.15, 0.3)
    collimate = rng.random() < 0.5
    shutter_level, shutter_margin = rng.uniform(0.8, 0.97), rng.uniform(0.02, 0.08, 4)
    return _Exposure(blur_mm, dose, heel, gamma, edge, headroom, floor, texture_amp, collimate, shutter_level,
                     shutter_margin)


def render(
    rng: np.random.Generator,
    subject: Subject,
    *,
    view: str = "PA",
    size: int | None = None,
    pixel_spacing: float | None = None,
    binning: int = 1,
) -> HandSample:
    """Render one view of ``subject``; all random choices come from ``rng``.

    ``pixel_spacing`` is the detector pitch (drawn when None); ``binning``
    averages n x n detector pixels (cheap extra views); ``size`` instead
    gives a square ``size`` x ``size`` image of the same field.
    """
    if view not in ("PA", "oblique"):
        raise ValueError("view is 'PA' or 'oblique'")
    tubes, blobs, marks = _skeleton(subject)
    geo, info = _make_view(rng, subject, marks, view, pixel_spacing, size, binning)
    ex = _draw_exposure(rng)
    mineral = 0.8 + 0.2 * float(np.clip(subject.bone_age_months / 144.0, 0, 1))
    att, soft = _attenuation(rng, subject, tubes, blobs, geo, mineral, ex)
    shape = geo.shape
    # collimator field (r0, r1, c0, c1): never over the hand, except the forearm below
    (x0, y0), (x1, _) = info["hand_box"]
    if ex.collimate:
        m = ex.shutter_margin * np.array([shape[0], shape[0], shape[1], shape[1]])
        field = (int(min(m[0], y0 / geo.spacing * 0.8)), shape[0] - int(m[1] * 0.4),
                 int(min(m[2], x0 / geo.spacing * 0.8)), shape[1] - int(min(m[3], (shape[1] - x1 / geo.spacing) * 0.8)))
    else:
        field = (0, shape[0], 0, shape[1])
    _add_marker(att, geo.spacing, field, soft, rng)
    image = _detector(rng, att, soft, geo, info["native_spacing"], ex, field)
    return HandSample(image, float(geo.spacing), _truth(subject, geo, marks, info, view))


def _attenuation(rng: np.random.Generator, subject: Subject, tubes, blobs, geo: _View, mineral: float,
                 ex: _Exposure) -> tuple[np.ndarray, np.ndarray]:
    """Attenuation (line integral) of bone with its trabecular texture and of soft tissue, with the heel effect."""
    shape = geo.shape
    att = _bone(rng, tubes, blobs, geo, mineral, ex.texture_amp)
    soft = _soft_tissue(subject, tubes, geo)
    att += MU_SOFT * soft
    yy = np.linspace(-0.5, 0.5, shape[0], dtype=np.float32)[:, None]
    xx = np.linspace(-0.5, 0.5, shape[1], dtype=np.float32)[None, :]
    att += ex.heel[0] * yy + ex.heel[1] * xx
    return att, soft


def _bone(rng: np.random.Generator, tubes, blobs, geo: _View, mineral: float, texture_amp: float) -> np.ndarray:
    """Attenuation of bone above soft tissue (at ~35 keV), with its trabecular texture where there is bone."""
    att = np.zeros(geo.shape, np.float32)
    medullary = np.zeros(geo.shape, np.float32)
    boxes = [_tube_attenuation(t, geo, att, medullary, mineral) for t in tubes]
    boxes += [_blob_attenuation(b, geo, att, medullary, mineral) for b in blobs]
    boxes = [b for b in boxes if b is not None]
    r0, r1 = min(b[0].start for b in boxes), max(b[0].stop for b in boxes)
    c0, c1 = min(b[1].start for b in boxes), max(b[1].stop for b in boxes)
    noise = rng.standard_normal((r1 - r0, c1 - c0), dtype=np.float32)
    tex = ndimage.gaussian_filter(noise, max(0.35 / geo.spacing, 0.6), truncate=3.0)
    tex *= texture_amp / max(float(tex.std()), 1e-6)
    att[r0:r1, c0:c1] += medullary[r0:r1, c0:c1] * tex
    return att


def _detector(rng: np.random.Generator, att: np.ndarray, soft: np.ndarray, geo: _View, native: float,
              ex: _Exposure, field: tuple[int, int, int, int]) -> np.ndarray:
    """Quantum and electronic noise, detector blur, then processing: range, tone curve, edges, shutters."""
    shape = geo.shape
    # quantum noise (log domain, larger behind dense parts) + electronic noise, then detector blur
    sigma0 = 0.03 / math.sqrt(ex.dose) * (native / geo.spacing)
    sd = np.exp(np.minimum(att, 4.0) * 0.5)
    sd *= sigma0
    sd += 0.01
    sd *= rng.standard_normal(shape, dtype=np.float32)
    sd += att
    noisy = ndimage.gaussian_filter(sd, max(ex.blur_mm / geo.spacing, 0.5), truncate=3.0)
    # processing: histogram-based range, tone curve, edge enhancement
    step = max(1, int(round(0.4 / geo.spacing)))
    sub_soft, sub = soft[::step, ::step], noisy[::step, ::step]
    hand = sub_soft > 1.0
    hi = float(np.percentile(sub[hand], 99.7)) * ex.headroom if hand.any() else 1.0
    v = np.clip(noisy * (1.0 / hi), 0, 1)
    v **= ex.gamma
    v *= 1 - ex.floor
    v += ex.floor
    if ex.edge > 0:
        v += ex.edge * (v - lowpass(v, 1.5 / geo.spacing))
    if ex.collimate:
        ry = _ramp(shape[0], field[0], field[1])
        rx = _ramp(shape[1], field[2], field[3])
        inside = ry[:, None] * rx[None, :]
        v = v * inside + ex.shutter_level * (1 - inside)
    return np.clip(v, 0, 1).astype(np.float32)

def _truth(subject: Subject, geo: _View, marks, info, view: str) -> dict[str, Any]:
    ba = subject.bone_age_months
    centres, physes = {}, {}
    for name, p in marks["centres"].items():
        onset = subject.onsets[name]
        centres[name] = {"present": ba >= onset, "onset_months": round(onset, 1),
                         "px": [round(c, 2) for c in geo.to_px(p)]}
    for name, (x, y, u) in marks["physes"].items():
        _, _, status = _stage(subject, name)
        r0, c0 = geo.to_px((x, y))
        r1, c1 = geo.to_px((x + u[0], y + u[1]))
        norm = math.hypot(r1 - r0, c1 - c0)
        physes[name] = {"status": status, "fusion_months": round(subject.fusions[name], 1),
                        "px": [round(r0, 2), round(c0, 2)],
                        "axis_px": [round((r1 - r0) / norm, 4), round((c1 - c0) / norm, 4)]}
    present = sorted(n for n, c in centres.items() if c["present"])
    z = subject.bone_age_z
    return {
        "bone_age_months": round(ba, 2),
        "chronological_age_months": round(subject.age_months, 2),
        "sex": subject.sex,
        "bone_age_sd_months": round(subject.bone_age_sd, 2),
        "bone_age_z": round(z, 3),
        "maturation": "advanced" if z > 2 else ("delayed" if z < -2 else "normal"),
        "view": view,
        "laterality": "L",
        "ossification_centres": present,
        "carpal_count": sum(1 for n in CARPAL_ORDER if centres[n]["present"]),
        "fused_physes": sorted(n for n, p in physes.items() if p["status"] == "fused"),
        "centres": centres,
        "physes": physes,
        "hand_length_mm": round(subject.size * TEMPLATE_HAND_LENGTH, 1),
        "rotation_deg": round(info["rotation_deg"], 2),
        "pixel_spacing_mm": round(geo.spacing, 5),
        "image_shape": list(geo.shape),
    }


@dataclass(frozen=True, kw_only=True)
class HandOptions(SubjectOptions):
    """What `sample` may be asked for: the child (`SubjectOptions`) and the image.

    ``size`` gives a square ``size`` x ``size`` image of the same field (for
    training); ``None`` gives the detector's own matrix (~1200-2850 rows at
    ``pixel_spacing`` mm, drawn from 0.1-0.15 when not given).
    """

    size: int | None = None
    pixel_spacing: float | None = None
    view: str = "PA"
    # "phantom" (the default, as the reference model was trained) or "detector" (`detector.py`); the rest
    # apply to the detector mode: ``conditions`` / ``variants`` force exactly those (None: each drawn with
    # its probability), ``vendor`` a system model, ``kerma_ugy`` the open-field exposure at the detector,
    # ``photometric`` MONOCHROME1 or MONOCHROME2 (None: as the system writes)
    acquisition: str = "phantom"
    conditions: tuple[str, ...] | None = None
    variants: tuple[str, ...] | None = None
    vendor: str | None = None
    kerma_ugy: float | None = None
    photometric: str | None = None


DETECTOR_OPTIONS = ("conditions", "variants", "vendor", "kerma_ugy", "photometric")


def sample(rng: np.random.Generator, **options: Any) -> HandSample:
    """Draw a child and render one radiograph (pure; no I/O); ``options`` are `HandOptions`."""
    o = HandOptions(**options)
    if o.acquisition not in ("phantom", "detector"):
        raise ValueError("acquisition must be 'phantom' or 'detector'")
    subject = draw_subject(rng, **{f.name: getattr(o, f.name) for f in fields(SubjectOptions)})
    if o.acquisition == "detector":
        extra = {("variant_names" if k == "variants" else k): getattr(o, k) for k in DETECTOR_OPTIONS}
        return HandSample(*render_detector(rng, subject, view=o.view, size=o.size, pixel_spacing=o.pixel_spacing,
                                           **extra))
    return render(rng, subject, view=o.view, size=o.size, pixel_spacing=o.pixel_spacing)
