"""The task predictors: one module per task, each with ``predict(model, volume) -> dict``.

A predictor runs the task's pre-processing (the same functions its training
used), the ONNX model and the post-processing, and returns the task's
prediction (see each module's docstring for its keys).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any

from radtriage.imaging.volume import Volume
from radtriage.inference.model import OnnxModel

PREDICTOR_MODULES = {
    "ich": "radtriage.inference.ich",
    "lvo": "radtriage.inference.lvo",
    "nodule": "radtriage.inference.nodule",
    "bone_age": "radtriage.inference.bone_age",
}

Predictor = Callable[[OnnxModel, Volume], dict[str, Any]]


def predictor(task: str) -> Predictor:
    if task not in PREDICTOR_MODULES:
        raise KeyError(f"unknown task {task!r}; known: {', '.join(PREDICTOR_MODULES)}")
    return importlib.import_module(PREDICTOR_MODULES[task]).predict
