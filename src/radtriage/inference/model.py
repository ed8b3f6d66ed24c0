"""Model runners: a model folder's checked card and the network it names.

Two kinds of folder, told apart by what they hold (`load_model`):

- ONNX (`OnnxModel`): ``model.yaml`` + ``model.onnx``, run with ONNX Runtime.
- MONAI bundle (`MonaiBundleModel`): ``model.yaml`` at the root with
  ``file: models/model.ts``, the TorchScript network in ``models/``, and
  ``configs/metadata.json`` + ``configs/inference.json`` beside it, run with
  PyTorch.

The device follows the deployment's resources (`choose_providers`): a
replica given GPUs (``num_gpus`` > 0) runs on CUDA and refuses to start where
CUDA is missing (a GPU node without ``onnxruntime-gpu``, say) rather than run
slowly on the CPU unnoticed; a replica given none runs on the CPU even where a
GPU is present, since Ray has not given it one. ``provider`` says which ran.

Either way the card's sha256 of the model file is checked at load
(`radtriage.inference.card.load_card`), and ``run(**inputs)`` maps input
names to numpy arrays by the card's (or the ONNX graph's) names.
"""

from __future__ import annotations

import json
import logging
import os
import warnings
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np

from radtriage.inference.card import ModelCard, ModelCardError, load_card

os.environ.setdefault("ORT_DISABLE_TELEMETRY", "1")
log = logging.getLogger("radtriage.inference")

BUNDLE_INFERENCE = "configs/inference.json"
BUNDLE_METADATA = "configs/metadata.json"
BUNDLE_MODEL_FILE = "models/model.ts"
TORCHSCRIPT_SUFFIXES = (".ts",)


CUDA, CPU = "CUDAExecutionProvider", "CPUExecutionProvider"


class DeviceError(ModelCardError):
    """A deployment asked for a GPU that this node's runtime cannot use."""


def choose_providers(gpus: float, available: list[str] | tuple[str, ...]) -> list[str]:
    """ONNX Runtime execution providers for a replica given ``gpus`` GPUs, from those ``available``."""
    if gpus > 0:
        if CUDA not in available:
            raise DeviceError(f"the deployment asks for {gpus:g} GPU but ONNX Runtime here offers "
                              f"{', '.join(available) or 'no provider'}: install onnxruntime-gpu on GPU nodes "
                              "(docs/operations.md, GPUs), or set num_gpus: 0")
        return [CUDA, CPU]
    return [CPU]


@runtime_checkable
class Model(Protocol):
    """What a predictor needs of a loaded model."""

    card: ModelCard
    input_names: list[str]
    output_names: list[str]
    provider: str  # where it runs: an ONNX Runtime execution provider, or torch:cpu / torch:cuda

    def run(self, **inputs: np.ndarray) -> dict[str, np.ndarray]: ...


class OnnxModel:
    """Loads a checked model card and its ONNX file; ``run`` maps inputs to outputs by name."""

    def __init__(self, folder: Path, threads: int = 2, gpus: float = 0.0) -> None:
        import onnxruntime as ort

        self.folder = Path(folder)
        self.card: ModelCard = load_card(self.folder)
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = 1
        providers = choose_providers(gpus, ort.get_available_providers())
        self.session = ort.InferenceSession(str(self.folder / self.card.file), opts, providers=providers)
        self.provider = self.session.get_providers()[0]
        if gpus > 0 and self.provider != CUDA:
            raise DeviceError(f"model {self.card.id}: asked for a GPU, ONNX Runtime fell back to {self.provider}")
        self.input_names = [i.name for i in self.session.get_inputs()]
        self.output_names = [o.name for o in self.session.get_outputs()]

    def run(self, **inputs: np.ndarray) -> dict[str, np.ndarray]:
        feed = {k: np.ascontiguousarray(v, dtype=np.float32) for k, v in inputs.items()}
        return dict(zip(self.output_names, self.session.run(self.output_names, feed), strict=True))


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise ModelCardError(f"{path}: {exc}") from exc
    if not isinstance(data, dict):
        raise ModelCardError(f"{path}: not a JSON object")
    return data


class MonaiBundleModel:
    """A MONAI bundle folder whose network is a TorchScript file named (and checked) by its card.

    The bundle's ``configs/inference.json`` is read (with `monai.bundle.ConfigParser`)
    and must name the card's network file, but its expressions are not
    evaluated: nothing from the folder runs but the checked TorchScript network.
    The network takes the card's inputs positionally, in the card's order, and
    returns a tensor (one output), a tuple/list (outputs in the card's order) or
    a dict keyed by output name.
    """

    def __init__(self, folder: Path, threads: int = 2, gpus: float = 0.0) -> None:
        import torch
        from monai.bundle import ConfigParser

        self.folder = Path(folder)
        self.card: ModelCard = load_card(self.folder)
        if not self.card.file.endswith(TORCHSCRIPT_SUFFIXES):
            raise ModelCardError(f"{self.folder}: {self.card.file} is not a TorchScript file ({', '.join(TORCHSCRIPT_SUFFIXES)})")
        for rel in (BUNDLE_METADATA, BUNDLE_INFERENCE):
            if not (self.folder / rel).is_file():
                raise ModelCardError(f"{self.folder}: not a MONAI bundle ({rel} is missing)")
        self.metadata = _read_json(self.folder / BUNDLE_METADATA)
        _read_json(self.folder / BUNDLE_INFERENCE)  # a clear error for malformed JSON before MONAI's parser
        parser = ConfigParser()
        try:
            parser.read_config(str(self.folder / BUNDLE_INFERENCE))
        except Exception as exc:  # noqa: BLE001 - MONAI's own parse errors
            raise ModelCardError(f"{self.folder / BUNDLE_INFERENCE}: {exc}") from exc
        self.inference_config: dict[str, Any] = parser.get() or {}
        if self.card.file not in json.dumps(self.inference_config):
            raise ModelCardError(f"{self.folder / BUNDLE_INFERENCE} does not name the card's network file {self.card.file}")
        for key, want in (("name", self.card.id), ("version", self.card.version)):
            if key in self.metadata and str(self.metadata[key]) != want:
                raise ModelCardError(f"{self.folder / BUNDLE_METADATA}: {key} {self.metadata[key]!r} is not the card's {want!r}")

        self.threads = threads
        torch.set_num_threads(threads)
        if gpus > 0 and not torch.cuda.is_available():
            raise DeviceError(f"the deployment asks for {gpus:g} GPU but PyTorch here has no CUDA device")
        self.device = torch.device("cuda" if gpus > 0 else "cpu")
        self.provider = f"torch:{self.device.type}"
        try:
            with warnings.catch_warnings():  # TorchScript is deprecated in torch 2.x but still the bundle format
                warnings.filterwarnings("ignore", category=DeprecationWarning, message=r".*torch\.jit")
                self.network = torch.jit.load(str(self.folder / self.card.file), map_location=self.device).eval()
        except Exception as exc:  # noqa: BLE001 - a file that matches its card but is not TorchScript
            raise ModelCardError(f"{self.folder / self.card.file}: not a loadable TorchScript network: "
                                 f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}") from exc
        self.input_names = [t.name for t in self.card.inputs]
        self.output_names = [t.name for t in self.card.outputs]

    def run(self, **inputs: np.ndarray) -> dict[str, np.ndarray]:
        import torch

        missing = [n for n in self.input_names if n not in inputs]
        unknown = [n for n in inputs if n not in self.input_names]
        if missing or unknown:
            raise ValueError(f"model {self.card.id}: inputs {sorted(inputs)} do not match {self.input_names}")
        if torch.get_num_threads() != self.threads:
            torch.set_num_threads(self.threads)
        args = [torch.from_numpy(np.ascontiguousarray(inputs[n], dtype=np.float32)).to(self.device)
                for n in self.input_names]
        with torch.no_grad():
            out = self.network(*args)
        if isinstance(out, torch.Tensor):
            values = [out]
        elif isinstance(out, (tuple, list)):
            values = list(out)
        elif isinstance(out, dict):
            absent = [n for n in self.output_names if n not in out]
            if absent:
                raise ValueError(f"model {self.card.id}: network gave {sorted(out)}, card names {self.output_names}")
            values = [out[n] for n in self.output_names]
        else:
            raise TypeError(f"model {self.card.id}: network returned {type(out).__name__}, not tensors")
        if len(values) != len(self.output_names):
            raise ValueError(f"model {self.card.id}: network gave {len(values)} outputs, card names {self.output_names}")
        return {n: v.detach().float().cpu().numpy() for n, v in zip(self.output_names, values, strict=True)}


def load_model(folder: Path, threads: int = 2, gpus: float = 0.0) -> Model:
    """The runner for what ``folder`` holds: ONNX file or MONAI bundle (card checked either way), on CUDA when
    the replica was given ``gpus`` > 0 (`choose_providers`), else on the CPU."""
    folder = Path(folder)
    card = load_card(folder)
    if card.file.endswith(".onnx"):
        model: Model = OnnxModel(folder, threads=threads, gpus=gpus)
    elif card.file.endswith(TORCHSCRIPT_SUFFIXES) and (folder / BUNDLE_INFERENCE).is_file():
        model = MonaiBundleModel(folder, threads=threads, gpus=gpus)
    else:
        raise ModelCardError(
            f"{folder}: cannot tell how to run {card.file}: expected an ONNX file (.onnx) or a MONAI bundle "
            f"(a TorchScript {'/'.join(TORCHSCRIPT_SUFFIXES)} file with {BUNDLE_INFERENCE})"
        )
    log.info("model %s %s on %s", card.id, card.version, model.provider)
    return model
