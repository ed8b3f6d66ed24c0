"""Task predictions to findings in words and numbers (the radiologist's reading of a result).

Each ``*_findings`` function takes a predictor's output (see the task modules)
and gives `Finding`s whose text is what the worklist shows: "ICH -
intraparenchymal, 12 mL", "LVO - left M1", "Lung-RADS 4B, 14 mm",
"bone age +26 mo, z 2.3". Pure functions of their inputs; no I/O.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from scipy import ndimage

from radtriage.domain.case import Finding
from radtriage.imaging.volume import Volume
from radtriage.inference.reference import bone_age_z, lung_rads, overall_lung_rads

BLOOD_HU = (50.0, 90.0)  # acute blood, as the generator and the literature put it


def blood_volume_ml(volume: Volume, slices: list[int], blood_hu: tuple[float, float] = BLOOD_HU) -> float:
    """Estimated haemorrhage volume: connected blood-density voxels inside the skull on ``slices``.

    A rough, classical estimate (threshold ``blood_hu``, 50-90 HU by default,
    intracranial mask from the skull, specks removed); it is labelled an
    estimate wherever it is shown.
    """
    if not slices:
        return 0.0
    hu = volume.array[slices]
    skull = hu > 300
    inside = ndimage.binary_fill_holes(skull, structure=np.ones((1, 3, 3))) & ~ndimage.binary_dilation(
        skull, structure=np.ones((1, 3, 3)), iterations=2)
    blood = inside & (hu >= blood_hu[0]) & (hu <= blood_hu[1])
    blood = ndimage.binary_opening(blood, structure=np.ones((1, 3, 3)))
    voxel_ml = float(np.prod(volume.spacing)) / 1000.0
    return round(float(blood.sum()) * voxel_ml, 1)


def ich_findings(pred: dict[str, Any], volume: Volume, threshold: float,
                 blood_hu: tuple[float, float] = BLOOD_HU) -> list[Finding]:
    """The haemorrhage of a positive study, with its volume estimated on the slices at or above ``threshold``."""
    if not pred["positive"]:
        return []
    probs = np.asarray(pred["slice_probs"])
    slices = [int(z) for z in np.flatnonzero(probs >= threshold)]
    ml = blood_volume_ml(volume, slices, blood_hu)
    return [Finding(
        code="ich",
        text=f"ICH - {pred['subtype']}, ~{ml:g} mL",
        probability=round(float(pred["score"]), 4),
        measurements={"estimated_volume_ml": ml, "key_slice": float(pred["key_slice"]),
                      "slices_above_threshold": float(len(slices))},
    )]


def lvo_findings(pred: dict[str, Any]) -> list[Finding]:
    if not pred["positive"]:
        return []
    return [Finding(code="lvo", text=f"LVO - {pred['side']} {pred.get('segment_label', pred['segment'])}",
                    probability=round(float(pred["score"]), 4))]


def nodule_findings(pred: dict[str, Any], min_score: float) -> list[Finding]:
    """One finding per nodule scoring at least ``min_score``, with its Lung-RADS category."""
    out = []
    for n in pred["nodules"]:
        if n["score"] < min_score:
            continue
        mean_d = float(n.get("mean_diameter_mm", n["diameter_mm"]))
        category = lung_rads(n.get("type"), mean_d)
        out.append(Finding(
            code="nodule",
            text=f"Lung-RADS {category}, {n['diameter_mm']:.0f} mm",
            probability=round(float(n["score"]), 4),
            measurements={"longest_diameter_mm": round(float(n["diameter_mm"]), 1), "mean_diameter_mm": round(mean_d, 1),
                          "volume_mm3": round(float(n.get("volume_mm3", 0.0)), 1),
                          "x_mm": n["centre_mm"][0], "y_mm": n["centre_mm"][1], "z_mm": n["centre_mm"][2]},
        ))
    return out


def scan_lung_rads(findings: list[Finding]) -> str:
    return overall_lung_rads([f.text.split()[1].rstrip(",") for f in findings if f.code == "nodule"])


def bone_age_findings(pred: dict[str, Any]) -> list[Finding]:
    ba, age = pred["bone_age_months"], pred.get("chronological_age_months")
    if age is None:
        return [Finding(code="bone_age", text=f"bone age {ba:.0f} mo (chronological age unknown)",
                        measurements={"bone_age_months": ba})]
    z = bone_age_z(ba, age)
    diff = ba - age
    return [Finding(
        code="bone_age_flag" if abs(z) > 2 else "bone_age",
        text=f"bone age {diff:+.0f} mo, z {z:+.1f}" + (" (advanced)" if z > 2 else " (delayed)" if z < -2 else ""),
        measurements={"bone_age_months": ba, "chronological_age_months": age, "difference_months": round(diff, 1),
                      "z_score": round(z, 2)},
    )]
