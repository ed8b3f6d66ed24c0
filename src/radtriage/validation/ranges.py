"""A model's validated input range measured on data: `radtriage models range PIPELINE --dataset DIR`.

The input guard (`radtriage.inference.guard`) refuses a series outside the range its model card declares.
That range should come from the data the model was validated on at this site: its training and
validation data, or the site's own commissioning studies. `measure_range` runs the guard's measures over a
labelled dataset (any layout `radtriage validate` reads) and gives the observed span of each measure,
widened by a margin; written into the card (``--write``), it becomes what the guard checks.
"""

from __future__ import annotations

from pathlib import Path

from radtriage.datasets.layouts import examples
from radtriage.inference import guard
from radtriage.inference.card import CARD_FILE, ModelCard, ValidatedRange, load_card, write_card

KIND_OF_TASK = {"ich": "ct_head", "lvo": "ct_head", "nodule": "ct_chest", "bone_age": "hand"}


def measure_range(model_dir: Path, dataset: Path, limit: int | None = None, margin: float = 0.1,
                  layout: str | None = None) -> tuple[ModelCard, ValidatedRange, dict[str, tuple[float, float, int]]]:
    """The card, the range ``dataset`` supports for its model (the measures the card declares, else all of
    its kind) and each measure's (lowest, highest, count)."""
    card = load_card(model_dir)
    declared = card.validated_range
    kind = declared.kind if declared is not None else KIND_OF_TASK[card.task]
    names = list(declared.checks) if declared is not None else None

    def volumes():
        for i, ex in enumerate(examples(dataset, card.task, layout)):
            if limit is not None and i >= limit:
                return
            yield ex.load()

    vr, spans = guard.observed(kind, volumes(), f"measured on {dataset.name} ({card.task} examples), "
                                                f"observed span plus {margin:.0%} each side", margin, names)
    return card, vr, spans


def write_range(model_dir: Path, card: ModelCard, vr: ValidatedRange) -> Path:
    """The card with ``vr`` as its validated range, written back (the model file and its sha256 unchanged)."""
    return write_card(model_dir, card.model_copy(update={"validated_range": vr}))


__all__ = ["CARD_FILE", "KIND_OF_TASK", "measure_range", "write_range"]
