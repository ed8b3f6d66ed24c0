"""Each task's reference op chain as a predictor: ``predict(model, volume) -> prediction``.

A predictor runs the task's registered ops (`radtriage.inference.ops`) with
the parameters the model card's ``preprocessing`` gives (the defaults, what
the reference models were trained with, for the others) and the card's
operating points, outside any pipeline file: validation, benchmarks and
tests use it. It is the same chain the reference
``pipelines/*.yaml`` declare (a test keeps the two in step), so it gives what
the service gives. The prediction's keys are the task module's (see
`radtriage.inference.ich`, `lvo`, `nodule`, `bone_age`).

`OPS` here is the complete op registry: each task module registers its ops
when imported, and this module imports all four, so whoever builds or checks
a chain (the runner, start-up's pipeline check) takes `OPS` from here.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from radtriage.imaging.volume import Volume
from radtriage.inference import bone_age, ich, lvo, nodule  # noqa: F401 - importing a task registers its ops
from radtriage.inference.model import Model
from radtriage.inference.ops import OPS

__all__ = ["OPS", "REFERENCE_CHAINS", "Predictor", "predictor"]

REFERENCE_CHAINS: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "ich": (("ct_hu_volume", "ich_windows"), ("ich_study_result", "ich_volume_ml")),
    "lvo": (("ct_hu_volume", "lvo_mip_views"), ("lvo_study_result",)),
    "nodule": (("ct_hu_volume", "nodule_candidates"), ("nodule_measure", "lung_rads")),
    "bone_age": (("radiograph", "bone_age_input"), ("bone_age_z",)),
}
"""Task -> (preprocess op names, postprocess op names) of its reference pipeline."""

Predictor = Callable[[Model, Volume], dict[str, Any]]


def predictor(task: str) -> Predictor:
    if task not in REFERENCE_CHAINS:
        raise KeyError(f"unknown task {task!r}; known: {', '.join(REFERENCE_CHAINS)}")
    pre, post = REFERENCE_CHAINS[task]

    def predict(model: Model, volume: Volume) -> dict[str, Any]:
        card = model.card
        chain = OPS.chain(task, [(n, OPS.card_params(n, card)) for n in pre],
                          [(n, OPS.card_params(n, card)) for n in post])
        return chain.run(model, volume, card.thresholds).prediction

    return predict
