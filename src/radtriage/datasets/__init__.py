"""Labelled datasets for training and validation, in the layouts sites have.

Every loader yields `Example`s: an id, the task's label, subgroup keys, and a
``load()`` that reads the image only when asked (a validation set of CTs does
not fit in memory at once). Labels by task:

- ``ich``: ``{"positive": bool, "subtypes": [str], "slice_labels": {name: [z...]}}``
  (``slice_labels`` optional; slice indices in the loaded volume's order)
- ``lvo``: ``{"positive": bool, "side": "left"|"right"|None, "segment": str|None}``
- ``nodule``: ``{"nodules": [{"centre_mm": [x, y, z] (LPS), "diameter_mm": float, "type": str|None}]}``
- ``bone_age``: ``{"bone_age_months": float, "sex": "M"|"F", "chronological_age_months": float|None}``

Subgroup keys (``groups``), each optional: ``sex``, ``age_band``, ``scanner``,
``slice_thickness``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from radtriage.imaging.volume import Volume

TASKS = ("ich", "lvo", "nodule", "bone_age")


@dataclass(frozen=True)
class Example:
    id: str
    task: str
    label: dict[str, Any]
    load: Callable[[], Volume]
    groups: dict[str, str] = field(default_factory=dict)


def age_band(years: float | None) -> str:
    """Subgroup label of an age in years (adult bands; children by 5 years)."""
    if years is None:
        return "unknown"
    if years < 18:
        lo = int(years // 5) * 5
        return f"{lo}-{min(lo + 4, 17)}"
    for hi, name in ((40, "18-39"), (65, "40-64"), (80, "65-79")):
        if years < hi:
            return name
    return "80+"
