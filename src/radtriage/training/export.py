"""Export a trained network to ONNX and write its model card."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import torch

from radtriage.inference.card import MODEL_FILE, ModelCard, TensorSpec, file_sha256, write_card


def _specs(card_fields: dict[str, Any], key: str) -> list[Any]:
    """The card's ``inputs`` or ``outputs`` as `TensorSpec`s: their names, in order, are the network's."""
    return [TensorSpec.model_validate(t) if isinstance(t, dict) else t for t in card_fields[key]]


def export_model(folder: Path, net: torch.nn.Module, example: tuple[torch.Tensor, ...],
                 card_fields: dict[str, Any]) -> ModelCard:
    """Write ``model.onnx`` (one file, dynamic batch axis) and ``model.yaml``; the ONNX inputs and outputs
    are named as the card's ``inputs`` and ``outputs``."""
    input_names = [t.name for t in _specs(card_fields, "inputs")]
    output_names = [t.name for t in _specs(card_fields, "outputs")]
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / MODEL_FILE
    net = net.eval()
    with torch.no_grad():
        torch.onnx.export(
            net,
            example,
            str(path),
            dynamo=False,  # the TorchScript exporter writes weights inside the one file
            input_names=input_names,
            output_names=output_names,
            dynamic_axes={name: {0: "batch"} for name in input_names + output_names},
            opset_version=17,
        )
    card = ModelCard(sha256=file_sha256(path), size_bytes=path.stat().st_size, **card_fields)
    write_card(folder, card)
    return card


def _leaves(out: Any) -> list[torch.Tensor]:
    """The tensors of a network's output (a tensor, or tuples/lists/dicts of them), in order."""
    if isinstance(out, torch.Tensor):
        return [out]
    if isinstance(out, dict):
        return [t for k in sorted(out) for t in _leaves(out[k])]
    return [t for o in out for t in _leaves(o)]


def _tensor_format(spec: Any) -> dict[str, Any]:
    """A card `TensorSpec` as a MONAI ``network_data_format`` entry."""
    shape = list(spec.shape)
    entry: dict[str, Any] = {"type": "tensor", "format": "float", "dtype": spec.dtype, "shape": shape,
                             "description": spec.description}
    if len(shape) >= 2:
        entry["num_channels"] = shape[1]
    if len(shape) >= 3:
        entry["spatial_shape"] = shape[2:]
        entry["is_patch_data"] = False
    return entry


def export_bundle(folder: Path, net: torch.nn.Module, example: tuple[torch.Tensor, ...],
                  card_fields: dict[str, Any]) -> ModelCard:
    """Write a MONAI bundle: ``models/model.ts`` (traced), ``configs/{metadata,inference}.json``, ``model.yaml``.

    ``card_fields`` are those of `export_model`; the card's ``file`` is the TorchScript file, and the
    bundle runner calls the network with the card's inputs, positionally.
    """
    import json

    import monai
    import numpy as np

    from radtriage.inference.card import INTENDED_USE
    from radtriage.inference.model import BUNDLE_INFERENCE, BUNDLE_METADATA, BUNDLE_MODEL_FILE

    fields = {**card_fields, "file": BUNDLE_MODEL_FILE}
    inputs, outputs = _specs(fields, "inputs"), _specs(fields, "outputs")
    folder = Path(folder)
    (folder / "models").mkdir(parents=True, exist_ok=True)
    (folder / "configs").mkdir(parents=True, exist_ok=True)
    path = folder / BUNDLE_MODEL_FILE
    net = net.eval()
    with torch.no_grad(), warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=DeprecationWarning, message=r".*torch\.jit")
        # torch's own trace check re-traces the network (slow); one forward of each, compared, is enough
        traced = torch.jit.trace(net, example, check_trace=False)
        want, got = net(*example), traced(*example)
    for a, b in zip(_leaves(want), _leaves(got), strict=True):
        if not torch.allclose(a, b, rtol=1e-4, atol=1e-5):
            raise ValueError("the traced network does not reproduce the network's output on the example")
    traced.save(str(path))

    metadata = {
        "name": fields["id"],
        "version": fields["version"],
        "task": fields["task"],
        "description": fields.get("architecture", ""),
        "intended_use": fields.get("intended_use", INTENDED_USE),
        "monai_version": monai.__version__,
        "pytorch_version": torch.__version__.split("+")[0],
        "numpy_version": np.__version__,
        "required_packages_version": {},
        "authors": "radtriage",
        "copyright": "radtriage contributors",
        "network_data_format": {
            "inputs": {t.name: _tensor_format(t) for t in inputs},
            "outputs": {t.name: _tensor_format(t) for t in outputs},
        },
    }
    # A minimal MONAI inference config: the network is the TorchScript file, loaded on the
    # available device (`python -m monai.bundle run` / ConfigParser can instantiate it).
    inference = {
        "imports": ["$import torch"],
        "bundle_root": ".",
        "device": "$torch.device('cuda' if torch.cuda.is_available() else 'cpu')",
        "network_file": f"$@bundle_root + '/{BUNDLE_MODEL_FILE}'",
        "network_def": "$torch.jit.load(@network_file, map_location=@device)",
        "network": "$@network_def.eval()",
        "inferer": {"_target_": "SimpleInferer"},
    }
    (folder / BUNDLE_METADATA).write_text(json.dumps(metadata, indent=2) + "\n")
    (folder / BUNDLE_INFERENCE).write_text(json.dumps(inference, indent=2) + "\n")
    card = ModelCard(sha256=file_sha256(path), size_bytes=path.stat().st_size, **fields)
    write_card(folder, card)
    return card
