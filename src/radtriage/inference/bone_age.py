"""The `bone_age` task: bone age in months from a paediatric PA hand radiograph and sex.

Pre-processing (shared with `radtriage.training.bone_age`): the radiograph,
denser brighter (MONOCHROME1 already inverted by `imaging.decode`), is scaled
to [0, 1] between its 0.5th and 99.5th intensity percentiles, padded to a
square around the hand and forearm (found as the largest bright object; 0 outside the image) and resized to ``SIZE`` x ``SIZE``.

The prediction (the ``bone_age_z`` op registered at the end of this module) gives
``bone_age_months``, the ``sex`` it used (from PatientSex; the model needs it,
so an unknown sex is an error), and ``chronological_age_months`` from
PatientAge or PatientBirthDate and StudyDate when the header has them.
"""

from __future__ import annotations

import datetime as dt
from typing import Any, Literal

import numpy as np
import torch
from scipy import ndimage
from monai.transforms import Resize
from pydantic import Field, StrictInt

from radtriage.inference import findings as fx
from radtriage.inference.ops import OPS, POST, PRE, KeyView, NoParams, OpContext, Params, Slot


SIZE = 192
DAYS_PER_MONTH = 365.25 / 12


def bright_objects(img: np.ndarray, px: int = 128) -> tuple[np.ndarray, np.ndarray, tuple[int, int], int]:
    """The objects brighter than the background in a [0, 1] radiograph cut down to ~``px`` (every k-th pixel).

    Collimator shutters (bright bands along the edges) are trimmed first: border
    rows and columns whose median is bright. Returns the labels of the objects
    inside the open field, their sizes (pixels), the field's (row, column) offset
    and k.
    """
    k = max(1, min(img.shape) // px)
    small = img[::k, ::k]
    rows, cols = np.median(small, axis=1), np.median(small, axis=0)

    def inner(profile: np.ndarray) -> tuple[int, int]:
        dark = np.flatnonzero(profile < 0.5)
        return (int(dark[0]), int(dark[-1]) + 1) if len(dark) else (0, len(profile))

    (r0, r1), (c0, c1) = inner(rows), inner(cols)
    region = small[r0:r1, c0:c1]
    level = float(np.median(region))
    mask = ndimage.binary_opening(region > level + 0.2 * (float(np.percentile(region, 99)) - level), iterations=1)
    labels, n = ndimage.label(mask)
    return labels, np.asarray(ndimage.sum(mask, labels, range(1, n + 1))).reshape(n), (r0, c0), k


def hand_box(img: np.ndarray) -> tuple[int, int, int, int]:
    """Rows and columns (r0, r1, c0, c1) of the hand and forearm in a [0, 1] radiograph: the largest
    object of `bright_objects` (on the image cut down to ~128 px)."""
    labels, sizes, (r0, c0), k = bright_objects(img)
    if not sizes.size:
        return 0, img.shape[0], 0, img.shape[1]
    rs, cs = ndimage.find_objects(labels)[int(np.argmax(sizes))]
    return ((r0 + rs.start) * k, min((r0 + rs.stop) * k, img.shape[0]),
            (c0 + cs.start) * k, min((c0 + cs.stop) * k, img.shape[1]))


def to_input(image: np.ndarray, size: int = SIZE) -> np.ndarray:
    """A 2D radiograph (denser brighter) to (1, size, size) float32 in [0, 1], cropped to the hand."""
    img = np.asarray(image, dtype=np.float32)
    lo, hi = np.percentile(img, (0.5, 99.5))
    img = np.clip((img - lo) / max(float(hi - lo), 1e-6), 0.0, 1.0)
    r0, r1, c0, c1 = hand_box(img)
    n = int(max(r1 - r0, c1 - c0) * 1.1) + 1
    cr, cc = (r0 + r1) // 2, (c0 + c1) // 2
    square = np.zeros((n, n), np.float32)
    sr, sc = cr - n // 2, cc - n // 2  # top-left of the square in image coordinates
    ir0, ir1, ic0, ic1 = max(sr, 0), min(sr + n, img.shape[0]), max(sc, 0), min(sc + n, img.shape[1])
    square[ir0 - sr : ir1 - sr, ic0 - sc : ic1 - sc] = img[ir0:ir1, ic0:ic1]
    if n != size:
        square = np.asarray(Resize((size, size), mode="area")(torch.as_tensor(square[None])))[0]
    return square[None].astype(np.float32)


def sex_code(sex: str | None) -> float:
    s = (sex or "").strip().upper()[:1]
    if s not in ("M", "F"):
        raise ValueError("bone age needs the patient's sex (PatientSex M or F)")
    return 1.0 if s == "M" else 0.0


def chronological_age_months(meta: dict[str, Any]) -> float | None:
    """Age at the study from PatientBirthDate + StudyDate, else from PatientAge (nnnD/W/M/Y)."""
    birth, study = meta.get("PatientBirthDate"), meta.get("StudyDate")
    try:
        if birth and study:
            days = (dt.datetime.strptime(str(study), "%Y%m%d") - dt.datetime.strptime(str(birth), "%Y%m%d")).days
            return round(days / DAYS_PER_MONTH, 1)
    except ValueError:
        pass
    age = str(meta.get("PatientAge") or "")
    if len(age) == 4 and age[:3].isdigit() and age[3] in "DWMY":
        n = int(age[:3])
        return float(round({"D": n / DAYS_PER_MONTH, "W": n * 7 / DAYS_PER_MONTH, "M": n, "Y": n * 12}[age[3]], 1))
    return None


# --------------------------------------------------------------------------- ops
# The task's ops, registered on `radtriage.inference.ops.OPS` when this module is imported.


class BoneAgeInput(Params):
    size: StrictInt = Field(default=SIZE, ge=32, le=1024)


@OPS.register("bone_age_input", PRE, BoneAgeInput, needs={Slot.RADIOGRAPH}, gives={Slot.INPUTS},
              tasks={"bone_age"}, card_keys={"size": "size"})
def bone_age_input(ctx: OpContext, p: BoneAgeInput) -> None:
    """The hand cropped and scaled to ``size`` x ``size`` (`bone_age.to_input`), and the patient's sex."""
    sex = sex_code(ctx.volume.meta.get("PatientSex"))
    ctx.inputs = {"image": to_input(ctx.volume.array, p.size)[None], "sex": np.array([[sex]], np.float32)}


class BoneAgeZ(Params):
    reference: Literal["greulich-pyle"] = "greulich-pyle"


@OPS.register("bone_age_z", POST, BoneAgeZ, needs={Slot.OUTPUTS, Slot.RADIOGRAPH},
              gives={Slot.PREDICTION, Slot.RESULT, Slot.FINDINGS}, tasks={"bone_age"})
def bone_age_z(ctx: OpContext, p: BoneAgeZ) -> None:
    """Bone age against the chronological age as a z-score (Greulich-Pyle SDs); flagged when |z| > 2."""
    sex = float(np.ravel(ctx.inputs["sex"])[0])
    pred = {"bone_age_months": round(float(np.ravel(ctx.output())[0]), 1), "sex": "M" if sex else "F",
            "chronological_age_months": chronological_age_months(ctx.volume.meta)}
    ctx.prediction = pred
    (found,) = fx.bone_age_findings(pred)
    m = found.measurements
    ctx.scores = {"bone_age_months": pred["bone_age_months"]}
    if "z_score" in m:
        ctx.scores.update(bone_age_z=m["z_score"], difference_months=m["difference_months"],
                          chronological_age_months=m["chronological_age_months"])
    ctx.positive = found.code == "bone_age_flag"
    ctx.labels = {"sex": pred["sex"]}
    ctx.add_finding(found, KeyView())
