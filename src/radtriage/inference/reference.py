"""Clinical reference tables the post-processing uses (pure functions, no I/O).

- Bone age: the standard deviation of bone age about chronological age by age,
  as tabulated with the Greulich-Pyle atlas (Brush Foundation series; months).
  The synthetic hand generator draws from the same table.
- Lung-RADS v2022 (baseline screening) categories of one pulmonary nodule by
  type and mean diameter, and the overall category of a scan.
"""

from __future__ import annotations

import numpy as np

_SD_AGE_MONTHS = (0, 3, 6, 12, 18, 24, 36, 48, 60, 72, 96, 120, 144, 168, 192, 216)
_SD_MONTHS = (1.5, 2.5, 3.0, 4.5, 5.5, 6.5, 8.0, 9.0, 9.5, 10.0, 10.5, 11.0, 11.5, 11.0, 10.0, 9.0)


def bone_age_sd(age_months: float) -> float:
    """SD of bone age about chronological age (months) at ``age_months``."""
    return float(np.interp(age_months, _SD_AGE_MONTHS, _SD_MONTHS))


def bone_age_z(bone_age_months: float, chronological_months: float) -> float:
    """(bone age - chronological age) in SDs for that age; |z| > 2 is advanced or delayed."""
    return (bone_age_months - chronological_months) / bone_age_sd(chronological_months)


LUNG_RADS_ORDER = ("0", "1", "2", "3", "4A", "4B", "4X")


def lung_rads(nodule_type: str | None, mean_diameter_mm: float, solid_component_mm: float | None = None) -> str:
    """Lung-RADS v2022 baseline category of one nodule.

    ``nodule_type``: solid (the default when unknown), part-solid, ground-glass
    or calcified (benign pattern: category 1). Sizes are mean diameters in mm,
    rounded to one decimal as the guideline asks.
    """
    d = round(float(mean_diameter_mm), 1)
    kind = (nodule_type or "solid").lower()
    if kind == "calcified":
        return "1"
    if kind == "ground-glass":
        return "2" if d < 30 else "3"
    if kind == "part-solid":
        solid = round(float(solid_component_mm if solid_component_mm is not None else d), 1)
        if d < 6:
            return "2"
        if solid < 6:
            return "3"
        return "4A" if solid < 8 else "4B"
    if d < 6:
        return "2"
    if d < 8:
        return "3"
    return "4A" if d < 15 else "4B"


def overall_lung_rads(categories: list[str]) -> str:
    """The scan's category: its most suspicious nodule's, 1 when there is none."""
    return max(categories, key=LUNG_RADS_ORDER.index) if categories else "1"
