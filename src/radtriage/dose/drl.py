"""Diagnostic reference level sets as data: a versioned file of levels (examination, age or weight band,
quantity, phantom, value, unit, source, table, page), validated on load, placed in a band by age and weight.

A set is a YAML or JSON document (`DrlSet`); `radtriage dose drl import FILE` keeps it in the database
(`radtriage.db.dose.import_set`). Values are held in the registry's units (`radtriage.dose.model`) whatever
unit the table printed. CTDIvol and DLP levels name their phantom, so a 16 cm value is never compared
with a 32 cm one. radtriage ships ``drl/example.yaml`` (``EXAMPLE - not a published DRL``: made-up values
for tests and demonstrations) and ``drl/uk-ndrl-2024-11.yaml`` (the UK national DRLs, adult CT; docs/dose.md).
"""

from __future__ import annotations

import hashlib
import json
from functools import cached_property
from pathlib import Path
from typing import Any, Literal, TypeVar

import yaml
from pydantic import Field, ValidationError, model_validator

from radtriage.dose.model import CT_QUANTITIES, QUANTITIES, to_unit
from radtriage.rules import Range, StrictModel

EXAMPLE_MARK = "EXAMPLE"
M = TypeVar("M", bound=StrictModel)


class DrlError(ValueError):
    """A DRL file that cannot be used; the message names the file and the problem."""


class Band(StrictModel):
    """An age and/or weight band; a patient is in it when every range given holds."""

    name: str = Field(min_length=1, max_length=32)
    age_years: Range | None = None
    weight_kg: Range | None = None

    def holds(self, age: float | None, weight: float | None) -> bool:
        if self.age_years is None and self.weight_kg is None:
            return True
        if self.weight_kg is not None and (weight is None or not self.weight_kg.holds(weight)):
            return False
        return self.age_years is None or (age is not None and self.age_years.holds(age))


class Level(StrictModel):
    examination: str = Field(min_length=1, max_length=64)
    band: str
    quantity: Literal["CTDIvol", "DLP", "DAP", "EntranceDose"]
    phantom_cm: Literal[16, 32] | None = None
    value: float = Field(gt=0)
    unit: str
    source: str = Field(min_length=1)
    table: str = Field(min_length=1)
    page: str = Field(min_length=1)

    @model_validator(mode="after")
    def _unit(self) -> Level:
        to_unit(self.quantity, self.value, self.unit)  # a unit it cannot convert is an error here
        if (self.quantity in CT_QUANTITIES) != (self.phantom_cm is not None):
            raise ValueError(f"{self.examination} {self.quantity}: CTDIvol and DLP name their phantom (16 or 32), "
                             "no other quantity does")
        return self

    @property
    def registry_value(self) -> float:
        return to_unit(self.quantity, self.value, self.unit)


class DrlSet(StrictModel):
    name: str = Field(min_length=1, max_length=128)
    version: str = Field(min_length=1, max_length=32)
    source: str = Field(min_length=1)
    example: bool = False
    note: str | None = None
    bands: list[Band] = Field(min_length=1)
    levels: list[Level] = Field(min_length=1)

    @model_validator(mode="after")
    def _consistent(self) -> DrlSet:
        names = [b.name for b in self.bands]
        if len(set(names)) != len(names):
            raise ValueError("bands: a band name is given twice")
        for i, level in enumerate(self.levels):
            if level.band not in names:
                raise ValueError(f"levels.{i}: band {level.band!r} is not one of bands")
        keys = [(lv.examination, lv.band, lv.quantity, lv.phantom_cm) for lv in self.levels]
        if len(set(keys)) != len(keys):
            raise ValueError("levels: one examination, band, quantity and phantom given twice")
        if self.example != (EXAMPLE_MARK in self.name.upper()):
            raise ValueError(f"an example set says so in its name ({EXAMPLE_MARK!r}) and with example: true")
        return self

    @cached_property
    def examinations(self) -> frozenset[str]:
        return frozenset(lv.examination for lv in self.levels)

    def band_for(self, examination: str, age: float | None, weight: float | None) -> str | None:
        """The band of ``examination`` a patient is in: a weight band where the weight is known and one holds,
        else an age band; None when no band of that examination holds (not judged)."""
        used = {lv.band for lv in self.levels if lv.examination == examination}
        bands = [b for b in self.bands if b.name in used]
        by_weight = [b for b in bands if b.weight_kg is not None and b.holds(age, weight)]
        by_age = [b for b in bands if b.weight_kg is None and b.holds(age, weight)]
        return next((b.name for b in by_weight + by_age), None)

    def levels_for(self, examination: str, band: str | None) -> list[Level]:
        return [lv for lv in self.levels if lv.examination == examination and lv.band == band]

    def level(self, examination: str, band: str | None, quantity: str, phantom_cm: int | None) -> Level | None:
        """The level to compare with, or None (no level; or CT values on the other phantom)."""
        return next((lv for lv in self.levels_for(examination, band)
                     if lv.quantity == quantity and lv.phantom_cm == (phantom_cm if quantity in CT_QUANTITIES
                                                                        else None)), None)

    @property
    def label(self) -> str:
        return f"{self.name} v{self.version}"


def validated(model: type[M], data: Any, where: str) -> M:
    """``data`` as ``model``, or `DrlError` naming ``where`` and each problem's key."""
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(str(p) for p in e['loc']) or '(top)'}: {e['msg']}" for e in exc.errors())
        raise DrlError(f"{where}: {problems}") from None


def parse_set(data: Any, where: str) -> DrlSet:
    return validated(DrlSet, data, where)


def load_set(path: Path) -> tuple[DrlSet, str]:
    """A DRL file (YAML or JSON) as a `DrlSet`, and the sha256 of its bytes; `DrlError` naming the problem."""
    try:
        raw = path.read_bytes()
        data = json.loads(raw) if path.suffix.lower() == ".json" else yaml.safe_load(raw)
    except (OSError, ValueError, yaml.YAMLError) as exc:
        raise DrlError(f"{path}: cannot read: {exc}") from None
    return parse_set(data, str(path)), hashlib.sha256(raw).hexdigest()


def quantity_unit(quantity: str) -> str:
    return QUANTITIES[quantity][0]
