"""The site's dose settings (``configs/dose.yaml``): which DRL set judges, how an examination maps to the
set's examinations (rules in `radtriage.rules` on the examination's header: Modality, ProtocolName,
StudyDescription, BodyPartExamined with the RDSR's target regions, the clinical indication), what counts
as abdomen or pelvis for a pregnant patient, the site multiple and the repeat interval.

`load_dose_config` checks the file at start-up: a bad key, an examination the set lacks or a set that is
not there stops it, with the file and key named.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml
from pydantic import Field, model_validator

from radtriage.dose.drl import DrlError, DrlSet, load_set, validated
from radtriage.rules import Rule, Select, StrictModel, select_failures


class ExamMapping(StrictModel):
    """One examination of the DRL set and the rules an examination's header must pass to be it."""

    examination: str = Field(min_length=1, max_length=64)
    rules: list[Rule] = Field(min_length=1)

    def matches(self, header: Mapping[str, Any]) -> bool:
        return not select_failures(Select(rules=self.rules), header, 1)


class SetRef(StrictModel):
    name: str
    version: str


class DoseConfig(StrictModel):
    drl_files: list[Path] = Field(default_factory=list)  # imported at start-up when not in the database yet
    drl_set: SetRef
    flag_multiple: float = Field(default=1.0, ge=1.0)  # flagged above this multiple of the level
    urgent_multiple: float | None = Field(default=2.0, gt=1.0)  # "far above": told at once, night or day
    repeat_window_h: float = Field(default=24.0, gt=0)
    digest_hour: int = Field(default=8, ge=0, le=23)  # the daily digest leaves at this local hour
    abdomen_pelvis: list[Rule] = Field(min_length=1)
    examinations: list[ExamMapping] = Field(min_length=1)

    @model_validator(mode="after")
    def _multiples(self) -> DoseConfig:
        if self.urgent_multiple is not None and self.urgent_multiple < self.flag_multiple:
            raise ValueError("urgent_multiple is below flag_multiple")
        return self

    def examination_of(self, header: Mapping[str, Any]) -> str | None:
        """The DRL examination of an examination's header: the first mapping it passes; None if none."""
        return next((m.examination for m in self.examinations if m.matches(header)), None)

    def abdomen_or_pelvis(self, header: Mapping[str, Any]) -> bool:
        return not select_failures(Select(rules=self.abdomen_pelvis), header, 1)

    def check_against(self, drl: DrlSet, where: str) -> None:
        missing = sorted({m.examination for m in self.examinations} - drl.examinations)
        if missing:
            raise DrlError(f"{where}: examinations: {', '.join(missing)} not in the DRL set {drl.label}")


def parse_dose_config(data: Any, where: str) -> DoseConfig:
    return validated(DoseConfig, data, where)


def load_dose_config(path: Path) -> tuple[DoseConfig, list[tuple[DrlSet, str]]]:
    """The settings and the DRL files they name (relative to the file's folder's parent, the project root,
    or absolute), each checked; `DrlError` naming the file and key."""
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise DrlError(f"{path}: cannot read: {exc}") from None
    config = parse_dose_config(data, str(path))
    root = path.resolve().parent.parent
    files = [load_set(f if f.is_absolute() else root / f) for f in config.drl_files]
    return config, files
