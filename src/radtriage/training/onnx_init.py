"""Start a torch network from an exported ONNX model's weights (fine-tuning a shipped reference model).

The ONNX export folds each BatchNorm that follows a convolution into the
convolution (weight and a bias, named ``onnx::Conv_<n>``); the others keep
their torch names. `load_onnx_weights` walks the graph's convolutions in
order beside the network's (the graph holds the network once per mirror
branch: the first pass is taken), copies the named weights as they are and
puts each folded pair back as the folded convolution followed by a BatchNorm
that adds the bias (mean 0, variance 1 - eps, scale 1). In eval mode the
network then gives the ONNX model's outputs; `freeze_batchnorm` keeps every
BatchNorm in eval mode while the rest trains, as the folded ones need.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch


def load_onnx_weights(net: torch.nn.Module, onnx_path: Path, prefix: str = "net.") -> None:
    """Copy the weights of ``onnx_path`` (exported from a wrapper holding ``net`` as ``prefix``, or from ``net``
    itself with ``prefix=""``) into ``net``."""
    import onnx
    from onnx import numpy_helper

    graph = onnx.load(str(onnx_path)).graph
    init = {t.name: numpy_helper.to_array(t) for t in graph.initializer}
    state = net.state_dict()
    with torch.no_grad():
        for name, value in init.items():
            if name.startswith(prefix) and name[len(prefix):] in state:
                state[name[len(prefix):]].copy_(torch.as_tensor(np.array(value)))
        modules = list(net.modules())
        convs = [m for m in modules if isinstance(m, torch.nn.Conv2d)]
        nodes = [n for n in graph.node if n.op_type == "Conv"][: len(convs)]
        for conv, node in zip(convs, nodes, strict=True):
            w = init[node.input[1]]
            if tuple(w.shape) != tuple(conv.weight.shape):
                raise ValueError(f"{onnx_path}: convolution {node.name} does not match the network")
            conv.weight.copy_(torch.as_tensor(np.array(w)))
            named = node.input[1].startswith(prefix) and node.input[1][len(prefix):] in state
            if len(node.input) > 2 and not named:  # a BatchNorm folded in (the bias is the folded one)
                if conv.bias is not None:
                    conv.bias.zero_()
                bn = modules[modules.index(conv) + 1]
                if not isinstance(bn, torch.nn.BatchNorm2d):
                    raise ValueError(f"{onnx_path}: no BatchNorm after the folded convolution {node.name}")
                bn.weight.fill_(1.0)
                bn.bias.copy_(torch.as_tensor(np.array(init[node.input[2]])))
                bn.running_mean.zero_()
                bn.running_var.fill_(1.0 - bn.eps)


def freeze_batchnorm(net: torch.nn.Module) -> None:
    """Every BatchNorm of ``net`` in eval mode (running statistics), the rest as it was."""
    for m in net.modules():
        if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
            m.eval()
