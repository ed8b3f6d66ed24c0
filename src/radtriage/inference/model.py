"""A model folder (``model.onnx`` + ``model.yaml``) run with ONNX Runtime."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from radtriage.inference.card import ModelCard, load_card

os.environ.setdefault("ORT_DISABLE_TELEMETRY", "1")


class OnnxModel:
    """Loads a checked model card and its ONNX file; ``run`` maps inputs to outputs by name."""

    def __init__(self, folder: Path, threads: int = 2) -> None:
        import onnxruntime as ort

        self.folder = Path(folder)
        self.card: ModelCard = load_card(self.folder)
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = 1
        providers = [p for p in ("CUDAExecutionProvider", "CPUExecutionProvider") if p in ort.get_available_providers()]
        self.session = ort.InferenceSession(str(self.folder / self.card.file), opts, providers=providers)
        self.input_names = [i.name for i in self.session.get_inputs()]
        self.output_names = [o.name for o in self.session.get_outputs()]

    def run(self, **inputs: np.ndarray) -> dict[str, np.ndarray]:
        feed = {k: np.ascontiguousarray(v, dtype=np.float32) for k, v in inputs.items()}
        return dict(zip(self.output_names, self.session.run(self.output_names, feed), strict=True))
