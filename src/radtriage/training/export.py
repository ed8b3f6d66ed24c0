"""Export a trained network to ONNX and write its model card."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from radtriage.inference.card import MODEL_FILE, ModelCard, file_sha256, write_card


def export_model(
    folder: Path,
    net: torch.nn.Module,
    example: tuple[torch.Tensor, ...],
    input_names: list[str],
    output_names: list[str],
    card_fields: dict[str, Any],
) -> ModelCard:
    """Write ``model.onnx`` (one file, dynamic batch axis) and ``model.yaml``."""
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
