"""Model cards: ``models/<id>/model.yaml`` beside ``model.onnx``.

A card says what a model is, what it takes and gives, how it was made and
measured, and what it is not for. The training scripts write it
(`write_card`); the service reads it (`load_card`), refusing a model whose
file does not match the card's sha256.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field

CARD_FILE = "model.yaml"
MODEL_FILE = "model.onnx"
INTENDED_USE = "research and demonstration; not validated on patient data; not for clinical use"


class TensorSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str
    shape: list[int | str]
    dtype: str = "float32"
    description: str


class Range(BaseModel):
    """A closed range; an open end is left out."""

    model_config = ConfigDict(extra="forbid")

    min: float | None = None
    max: float | None = None

    def contains(self, value: float) -> bool:
        return (self.min is None or value >= self.min) and (self.max is None or value <= self.max)

    def __str__(self) -> str:
        lo = "-inf" if self.min is None else f"{self.min:g}"
        hi = "inf" if self.max is None else f"{self.max:g}"
        return f"[{lo}, {hi}]"


class ValidatedRange(BaseModel):
    """The inputs a model was validated on (`radtriage.inference.guard` measures and checks them)."""

    model_config = ConfigDict(extra="forbid")

    kind: Literal["ct_head", "ct_chest", "hand"]
    source: str  # where the ranges come from (the training/validation data, a commissioning record)
    checks: dict[str, Range]


class ModelCard(BaseModel):
    """The contents of ``model.yaml``."""

    model_config = ConfigDict(extra="forbid")

    id: str
    version: str
    task: Literal["ich", "lvo", "nodule", "bone_age"]
    file: str = MODEL_FILE
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    size_bytes: int
    architecture: str
    inputs: list[TensorSpec]
    outputs: list[TensorSpec]
    preprocessing: dict[str, Any]
    thresholds: dict[str, float] = Field(default_factory=dict)
    metrics: dict[str, Any] = Field(default_factory=dict)
    training_data: dict[str, Any]
    training: dict[str, Any] = Field(default_factory=dict)
    intended_use: str = INTENDED_USE
    not_for: list[str] = Field(default_factory=list)
    limitations: list[str] = Field(default_factory=list)
    validated_range: ValidatedRange | None = None


class ModelCardError(ValueError):
    """A model folder whose card is missing, malformed or does not match its file."""


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def load_card(folder: Path) -> ModelCard:
    """Read and check a model folder's card (sha256 of the model file)."""
    try:
        data = yaml.safe_load((folder / CARD_FILE).read_text())
        card = ModelCard.model_validate(data)
    except (OSError, yaml.YAMLError, ValueError) as exc:
        raise ModelCardError(f"{folder / CARD_FILE}: {exc}") from exc
    model = folder / card.file
    if not model.is_file():
        raise ModelCardError(f"{folder}: {card.file} is missing")
    actual = file_sha256(model)
    if actual != card.sha256:
        raise ModelCardError(f"{model}: sha256 {actual[:16]}... does not match its card")
    return card


def write_card(folder: Path, card: ModelCard) -> Path:
    path = folder / CARD_FILE
    header = (
        f"# Model card of {card.id} {card.version}: trained on SYNTHETIC data only.\n"
        f"# Intended use: {card.intended_use}.\n"
    )
    path.write_text(header + yaml.safe_dump(card.model_dump(mode="json"), sort_keys=False, width=100))
    return path
