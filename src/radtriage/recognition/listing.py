"""The recognition list's format and loader."""

from __future__ import annotations

from pathlib import Path

import yaml
from pydantic import Field, ValidationError

from radtriage.rules import Rule, StrictModel


class RecognitionListError(ValueError):
    """A recognition list file that cannot be used: the file, the key and the problem."""


class Criterion(StrictModel):
    """One technical criterion: every rule must pass on the series, and its checks too."""

    name: str = Field(min_length=1, max_length=200)
    rules: list[Rule] = Field(default_factory=list)
    min_slices: int | None = Field(default=None, ge=1)
    dose_within_drl: bool = False  # the dose registry judged the examination not above its reference level


class Item(StrictModel):
    """An examination the participating hospitals recognise."""

    id: str = Field(min_length=1, max_length=64, pattern=r"^[a-z0-9][a-z0-9-]*$")
    title: str = Field(min_length=1, max_length=200)
    applies: list[Rule] = Field(min_length=1)
    criteria: list[Criterion] = Field(min_length=1)


class RecognitionList(StrictModel):
    name: str = Field(min_length=1, max_length=128)
    version: str = Field(min_length=1, max_length=32)
    source: str = Field(min_length=1, max_length=500)
    items: list[Item] = Field(min_length=1)


def load_list(path: Path) -> RecognitionList:
    """Read and check a recognition list; `RecognitionListError` names the file, the key and the problem."""
    try:
        data = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise RecognitionListError(f"{path}: {exc}") from exc
    try:
        listing = RecognitionList.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors())
        raise RecognitionListError(f"{path}: {problems}") from None
    ids = [i.id for i in listing.items]
    twice = sorted({i for i in ids if ids.count(i) > 1})
    if twice:
        raise RecognitionListError(f"{path}: items: ids used twice: {', '.join(twice)}")
    return listing
