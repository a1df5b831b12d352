"""What the recipes share: the result type, network shapes sized to the data, and the
static (one-pass, ReLU) view of a spiking network's synapses.

Every recipe writes a network with a spiking output layer read by spike counts, since the
Loihi target reads predictions from output spikes only.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F

from deploy.core import ir
from deploy.core.data import Split
from deploy.core.net import SpikingNet


@dataclass
class RecipeResult:
    """A trained graph, what the recipe measured on the way (stored as checkpoint meta) and
    intermediate objects a caller may study (``extras``: not written)."""

    graph: ir.Graph
    meta: dict[str, Any] = field(default_factory=dict)
    extras: dict[str, Any] = field(default_factory=dict)


def sample_shape(split: Split) -> tuple[int, ...]:
    """Per-sample image shape of a split, e.g. (1, 8, 8)."""
    return tuple(int(s) for s in split.x_train.shape[1:])


def conv_spec(input_shape: tuple[int, ...], timesteps: int, classes: int, width: int = 16,
              name: str = "recipe_cnn") -> dict[str, Any]:
    """Three stride-1/2/2 3x3 conv layers of IF neurons and a spiking linear output layer
    (no pooling, so every synapse receives binary spikes)."""
    return {"input_shape": list(input_shape), "timesteps": int(timesteps), "encoding": "direct", "name": name,
            "layers": [
                {"type": "conv2d", "name": "conv1", "out_channels": width, "kernel_size": 3, "padding": 1},
                {"type": "if", "name": "if1"},
                {"type": "conv2d", "name": "conv2", "out_channels": 2 * width, "kernel_size": 3, "stride": 2,
                 "padding": 1},
                {"type": "if", "name": "if2"},
                {"type": "conv2d", "name": "conv3", "out_channels": 2 * width, "kernel_size": 3, "stride": 2,
                 "padding": 1},
                {"type": "if", "name": "if3"},
                {"type": "flatten", "name": "flatten"},
                {"type": "linear", "name": "fc", "out_features": classes},
                {"type": "if", "name": "out"}]}


def mlp_spec(features: int, hidden: list[int], timesteps: int, classes: int, bias: bool = True,
             name: str = "recipe_mlp") -> dict[str, Any]:
    """A fully connected IF network ``features -> hidden... -> classes`` (spiking output)."""
    layers: list[dict[str, Any]] = []
    for i, h in enumerate([*hidden, classes]):
        last = i == len(hidden)
        layers += [{"type": "linear", "name": "fc_out" if last else f"fc{i + 1}", "out_features": int(h),
                    "bias": bias},
                   {"type": "if", "name": "out" if last else f"if{i + 1}"}]
    return {"input_shape": [int(features)], "timesteps": int(timesteps), "encoding": "direct", "name": name,
            "layers": layers}


def static_forward(net: SpikingNet, x: torch.Tensor,
                   act: Callable[[torch.Tensor], torch.Tensor] = F.relu) -> torch.Tensor:
    """The network as a plain ANN: its synapse modules applied once to ``x`` (B, ...), every
    neuron layer replaced by ``act`` except the output layer, whose pre-activation is returned.
    The weights are the spiking network's own (shared, gradients reach them)."""
    nodes = net.graph.nodes
    values: dict[str, torch.Tensor] = {"input": x.reshape(len(x), *net.graph.input_shape)}
    for i, node in enumerate(nodes):
        if len(node.inputs) != 1:
            raise ir.ModelError(f"layer '{node.name}': the static view takes chains of single-input layers")
        v = values[node.inputs[0]]
        if node.kind in ir.NEURON_KINDS:
            values[node.name] = v if i == len(nodes) - 1 else act(v)
        else:
            values[node.name] = net.layers[node.name](v)
    return values[nodes[-1].name]


def accuracy(logits: torch.Tensor, y: torch.Tensor) -> float:
    """Top-1 accuracy (exact fraction)."""
    return float((logits.argmax(-1) == y).float().mean()) if len(y) else 0.0


@torch.no_grad()
def static_accuracy(net: SpikingNet, x: torch.Tensor, y: torch.Tensor,
                    act: Callable[[torch.Tensor], torch.Tensor] = F.relu, batch_size: int = 512) -> float:
    """Accuracy of :func:`static_forward` (the ANN with activation ``act`` sharing the network's weights)."""
    preds = [static_forward(net, x[i:i + batch_size], act).argmax(-1) for i in range(0, len(x), batch_size)]
    return float((torch.cat(preds) == y).float().mean()) if len(y) else 0.0
