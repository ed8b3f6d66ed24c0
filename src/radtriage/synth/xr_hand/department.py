"""What real departments produce: positioning, casts, jewellery, lead markers, collimation, exposure, exports.

Each condition is drawn with its own probability (`PROBABILITIES`, per
image; estimates for a paediatric bone-age service, not measured) or forced
(`draw_conditions(rng, forced)`), and recorded in truth with where it lies in
the image. Shapes are drawn as path lengths (mm) of their material, in the
hand's template frame (`_View.window`) or on the plate.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import numpy as np
from PIL import Image, ImageDraw, ImageFont
from scipy import ndimage

from radtriage.synth.xr_hand.projection import _View
from radtriage.synth.xr_hand.skeleton import _Tube
from radtriage.synth.xr_hand.subject import _RAYS, Subject

PROBABILITIES: dict[str, float] = {
    "collimation": 0.75, "marker": 0.7, "initials": 0.3, "ring": 0.05, "bracelet": 0.03, "cast": 0.04,
    "splint": 0.03, "second_hand": 0.08, "off_centre": 0.25, "rotated": 0.2, "fingers_together": 0.2,
    "fingers_spread": 0.2, "thumb_odd": 0.15, "low_exposure": 0.08, "over_exposure": 0.06, "grid": 0.15,
    "low_resolution": 0.1, "8bit": 0.15,
}
CONDITIONS = tuple(PROBABILITIES)
# at most one of each group (the first drawn wins)
_EXCLUSIVE = (("fingers_together", "fingers_spread"), ("low_exposure", "over_exposure"), ("cast", "splint"))


def draw_conditions(rng: np.random.Generator, forced: tuple[str, ...] | None = None) -> frozenset[str]:
    """The conditions of one image: each drawn with its probability, or exactly ``forced``."""
    draws = rng.random(len(CONDITIONS))
    if forced is not None:
        unknown = set(forced) - set(CONDITIONS)
        if unknown:
            raise ValueError(f"unknown conditions {sorted(unknown)}; known: {', '.join(CONDITIONS)}")
        chosen = set(forced)
    else:
        chosen = {c for c, u in zip(CONDITIONS, draws) if u < PROBABILITIES[c]}
    for group in _EXCLUSIVE:
        present = [c for c in group if c in chosen]
        chosen -= set(present[1:])
    if "initials" in chosen:
        chosen.add("marker")
    return frozenset(chosen)


def pose(rng: np.random.Generator, subject: Subject, conditions: frozenset[str]) -> Subject:
    """Fingers together or spread, the thumb adducted across the palm or abducted far out."""
    spread = np.array(subject.finger_spread)
    angles = np.array([_RAYS[d][1] * (1.0 if d == 1 else 1.3) for d in range(1, 6)])
    if "fingers_together" in conditions:
        spread[1:] = -angles[1:] * rng.uniform(0.7, 1.0) + rng.normal(0, 1.0, 4)
    if "fingers_spread" in conditions:
        spread[1:] += angles[1:] * rng.uniform(0.8, 1.6)
    if "thumb_odd" in conditions:
        spread[0] = rng.uniform(-32, -20) if rng.random() < 0.5 else rng.uniform(15, 30)
    return replace(subject, finger_spread=tuple(float(v) for v in spread))


def box_of(mask: np.ndarray) -> list[int] | None:
    """[r0, r1, c0, c1) around the nonzero pixels of ``mask``."""
    rows, cols = np.flatnonzero(mask.any(1)), np.flatnonzero(mask.any(0))
    if not rows.size:
        return None
    return [int(rows[0]), int(rows[-1]) + 1, int(cols[0]), int(cols[-1]) + 1]


def _shell(r2_out: np.ndarray, r2_in: np.ndarray, depth: float) -> np.ndarray:
    """Path length through a hollow elliptic cylinder seen side-on (squared distances from its axis)."""
    return 2 * depth * (np.sqrt(np.maximum(r2_out, 0)) - np.sqrt(np.maximum(r2_in, 0)))


def _band(geo: _View, out: np.ndarray, p0, u, length: float, r_in: float, wall: float, depth: float) -> None:
    """A hollow cylinder (ring, bracelet, cast) along ``u`` from ``p0`` for ``length`` (template mm)."""
    u = np.asarray(u, float) / np.hypot(*u)
    n = np.array([-u[1], u[0]])
    r_out = r_in + wall
    corners = [np.asarray(p0) + a * u + b * n for a in (0, length) for b in (-r_out, r_out)]
    win = geo.window(np.array(corners))
    if win is None:
        return
    rows, cols, x, y = win
    a = (x - p0[0]) * u[0] + (y - p0[1]) * u[1]
    d = (x - p0[0]) * n[0] + (y - p0[1]) * n[1]
    px = geo.spacing / geo.size
    along = np.clip(np.minimum(a, length - a) / px + 0.5, 0, 1)
    out[rows, cols] += _shell(r_out * r_out - d * d, r_in * r_in - d * d, depth) * along * geo.size


@dataclass(frozen=True)
class Extras:
    """Material paths (mm) the department adds, and where each thing lies (truth)."""

    paths: dict[str, np.ndarray]
    truth: dict[str, dict]


def _add(paths: dict[str, np.ndarray], material: str, shape) -> np.ndarray:
    if material not in paths:
        paths[material] = np.zeros(shape, np.float32)
    return paths[material]


def jewellery_and_casts(rng: np.random.Generator, conditions: frozenset[str], tubes: list[_Tube],
                        geo: _View) -> Extras:
    """Rings, bracelets, casts and splints as path lengths, with their boxes in pixels."""
    paths: dict[str, np.ndarray] = {}
    truth: dict[str, dict] = {}
    by_name = {t.name: t for t in tubes}
    if "ring" in conditions:
        digit = int(rng.choice((4, 4, 3, 5, 2)))
        pp = by_name[f"pp{digit}"]
        material = "gold" if rng.random() < 0.7 else "steel"
        r_in = _RAYS[digit][4] * 0.78
        start = np.array(pp.p0) + np.array(pp.u) * pp.length * rng.uniform(0.3, 0.5)
        out = _add(paths, material, geo.shape)
        before = out.copy()
        _band(geo, out, start, pp.u, rng.uniform(2.0, 5.0), r_in, rng.uniform(1.0, 1.8), 1.0)
        truth["ring"] = {"digit": digit, "material": material, "box_px": box_of(out > before + 0.05)}
    if "bracelet" in conditions:
        material = "gold" if rng.random() < 0.5 else "steel"
        out = _add(paths, material, geo.shape)
        before = out.copy()
        _band(geo, out, (-3.0, rng.uniform(-30, -15)), (0.0, -1.0), rng.uniform(2.0, 6.0), 33.0,
              rng.uniform(0.6, 1.2), 0.6)
        truth["bracelet"] = {"material": material, "box_px": box_of(out > before + 0.05)}
    if "cast" in conditions or "splint" in conditions:
        _cast(rng, conditions, geo, paths, truth)
    return Extras(paths, truth)


def _cast(rng, conditions, geo: _View, paths: dict, truth: dict) -> None:
    """A circumferential cast (plaster or fibreglass) from the metacarpals down the forearm, or a volar slab."""
    top = rng.uniform(45.0, 75.0)  # template y of its distal end (the heads of the metacarpals are ~100)
    if "cast" in conditions:
        material = "plaster" if rng.random() < 0.6 else "fibreglass"
        wall = rng.uniform(4.0, 9.0) if material == "plaster" else rng.uniform(2.5, 4.5)
        out = _add(paths, material, geo.shape)
        _band(geo, out, (-3.0, top), (0.0, -1.0), top + 400.0, 43.0 * rng.uniform(0.95, 1.1), wall, 0.55)
        texture = ndimage.gaussian_filter(rng.standard_normal(geo.shape, dtype=np.float32), 1.2)
        out *= 1 + 0.15 * texture / max(float(texture.std()), 1e-6) * (out > 0)
        truth["cast"] = {"material": material, "wall_mm": round(wall, 1), "box_px": box_of(out > 0.5)}
        return
    material = "plaster"
    win = geo.window(np.array([[-48.0, top], [42.0, top], [-48.0, -400.0], [42.0, -400.0]]))
    out = _add(paths, material, geo.shape)
    if win is not None:
        rows, cols, x, y = win
        px = geo.spacing / geo.size
        inside = (np.clip((top - y) / px, 0, 1) * np.clip((40.0 - np.abs(x + 3.0)) / px, 0, 1))
        out[rows, cols] += inside * rng.uniform(6.0, 12.0)
    truth["splint"] = {"material": material, "box_px": box_of(out > 0.5)}


def _glyphs(text: str, height_px: int, mirrored: bool) -> np.ndarray:
    font = ImageFont.load_default(size=max(8, height_px))
    left, top, right, bottom = font.getbbox(text)
    img = Image.new("L", (right - left + 4, bottom - top + 4), 0)
    ImageDraw.Draw(img).text((2 - left, 2 - top), text, fill=255, font=font,
                             stroke_width=max(1, height_px // 10), stroke_fill=255)
    a = np.asarray(img, np.float32) / 255.0
    return a[:, ::-1] if mirrored else a


def markers(rng: np.random.Generator, conditions: frozenset[str], soft: np.ndarray, field: list[int],
            spacing: float, side: str = "L") -> Extras:
    """A lead side marker (L or R) in a free corner of the collimated field, and technologist initials."""
    paths: dict[str, np.ndarray] = {}
    truth: dict[str, dict] = {}
    lead = np.zeros(soft.shape, np.float32)
    holder = np.zeros(soft.shape, np.float32)
    texts = [("marker", side)] if "marker" in conditions else []
    if "initials" in conditions:
        letters = "ABCDEHJKLMNPRSTW"
        picks = rng.integers(len(letters), size=int(rng.integers(2, 4)))
        texts.append(("initials", "".join(letters[int(i)] for i in picks)))
    corners = [int(k) for k in rng.permutation(4)]
    for name, text in texts:
        glyph = _glyphs(text, int(round(rng.uniform(8, 12) / spacing)), mirrored=rng.random() < 0.1)
        margin = int(rng.uniform(4, 12) / spacing)
        h, w = glyph.shape
        while corners:
            k = corners.pop()
            r0 = field[0] + margin if k < 2 else field[1] - margin - h
            c0 = field[2] + margin if k % 2 == 0 else field[3] - margin - w
            if r0 < 0 or c0 < 0 or r0 + h > soft.shape[0] or c0 + w > soft.shape[1]:
                continue
            if soft[r0:r0 + h, c0:c0 + w].max(initial=0) > 0.5:
                continue
            lead[r0:r0 + h, c0:c0 + w] += glyph * 1.0  # ~1 mm of lead
            holder[max(r0 - 3, 0):r0 + h + 3, max(c0 - 3, 0):c0 + w + 3] += 3.0  # acrylic holder
            truth[name] = {"text": text, "box_px": [r0, r0 + h, c0, c0 + w]}
            break
    if truth:
        paths = {"lead": lead, "soft": holder}
    return Extras(paths, truth)


def collimation(rng: np.random.Generator, shape: tuple[int, int], hand_box, spacing: float,
                second_hand: bool) -> tuple[np.ndarray, list[int]]:
    """The collimated field (1 inside, 0 under the shutters, a penumbra of ~1 mm) and its box [r0, r1, c0, c1).

    The shutters never cut the hand; the forearm runs out of the field at the bottom.
    """
    (x0, y0), (x1, _) = hand_box
    m = rng.uniform(0.02, 0.1, 4)
    r0 = int(min(m[0] * shape[0], y0 / spacing * 0.8))
    r1 = shape[0] - int(m[1] * 0.4 * shape[0])
    c0 = int(min(m[2] * shape[1], x0 / spacing * 0.8))
    right_hand = shape[1] - x0 / spacing if second_hand else shape[1] - x1 / spacing
    c1 = shape[1] - int(min(m[3] * shape[1], right_hand * 0.8))
    pen = max(1.0 / spacing, 1.0)
    i = np.arange(shape[0], dtype=np.float32)
    j = np.arange(shape[1], dtype=np.float32)
    ry = np.clip(np.minimum(i - r0, r1 - i) / pen + 0.5, 0, 1)
    rx = np.clip(np.minimum(j - c0, c1 - j) / pen + 0.5, 0, 1)
    return (ry[:, None] * rx[None, :]).astype(np.float32), [r0, r1, c0, c1]


def grid_lines(shape: tuple[int, int], spacing: float, lines_per_cm: float, along_rows: bool,
               amplitude: float) -> np.ndarray:
    """A stationary grid's line shadows, sampled at the pixel pitch (aliasing into moire when coarse)."""
    n = shape[1] if along_rows else shape[0]
    pos = np.arange(n, dtype=np.float64) * spacing
    # a pixel integrates the lines across its width: a sinc-damped sinusoid
    f = lines_per_cm / 10.0
    damp = abs(np.sinc(f * spacing))
    wave = (1 - amplitude * damp * (0.5 + 0.5 * np.cos(2 * math.pi * f * pos))).astype(np.float32)
    return wave[None, :] if along_rows else wave[:, None]
