"""Proxy learning (Kheradpisheh, Mirsadeghi & Masquelier 2022).

An IF spiking network and a ReLU ANN share every weight. Each step runs both forward
passes independently; at the loss the SNN's output replaces the ANN's, and the error is
backpropagated through the ANN:

    o = a + (s - a).detach()        # value: the SNN's spike counts s; gradient: the ANN's a
    loss = cross_entropy(o, y)      # dL/dW = (softmax(s) - onehot(y)) . da/dW

so the SNN is trained without a surrogate gradient. ``a`` is the ANN's output
pre-activation, ``s`` the spike counts of the SNN's IF output layer (direct input, T steps).
The ANN's ReLU is capped at 1, the most an IF neuron of threshold 1 fires (one spike per
step): its activations then approximate the SNN's firing rates; with an uncapped ReLU the
ANN's activations outgrow the rates and the substituted error stops training the SNN.
The baseline (``baseline=True``) trains the same weights as a plain, uncapped ReLU ANN.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from deploy.core.data import Split
from deploy.core.net import SpikingNet, build
from deploy.training.recipes.common import (
    RecipeResult,
    conv_spec,
    sample_shape,
    static_accuracy,
    static_forward,
)
from deploy.training.snn import evaluate, fit

TIMESTEPS = 8
EPOCHS = 10


def rate_relu(v: torch.Tensor) -> torch.Tensor:
    """ReLU capped at an IF neuron's maximum rate: ``clamp(v, 0, 1)``."""
    return v.clamp(0, 1)


def proxy_output(ann_out: torch.Tensor, snn_out: torch.Tensor) -> torch.Tensor:
    """The SNN's value with the ANN's gradient (the proxy substitution)."""
    return ann_out + (snn_out.detach() - ann_out).detach()


def proxy_loss(net: nn.Module, logits: torch.Tensor, y: torch.Tensor, out: torch.Tensor,
               x: torch.Tensor) -> torch.Tensor:
    """Loss of :func:`deploy.training.snn.fit`: cross-entropy of the SNN's spike counts (``logits``),
    backpropagated through the weight-sharing ANN."""
    return F.cross_entropy(proxy_output(static_forward(net, x, rate_relu), logits), y)


def ann_loss(net: nn.Module, logits: torch.Tensor, y: torch.Tensor, out: torch.Tensor,
             x: torch.Tensor) -> torch.Tensor:
    """Plain ANN training of the same weights (the baseline the proxy SNN is compared with)."""
    return F.cross_entropy(static_forward(net, x), y)


def network(split: Split, timesteps: int, seed: int) -> SpikingNet:
    """The conv IF network of the recipe, sized to the data."""
    shape = sample_shape(split)
    width = 8 if shape[-1] > 16 else 16
    return build(conv_spec(shape, timesteps, split.classes, width=width, name="proxy_cnn"), seed=seed)


class _ProxyNet(SpikingNet):
    """The SNN forward without autograd: only the ANN pass is differentiated."""

    def run(self, x, record=False, generator=None, encoded=False):
        with torch.no_grad():
            return super().run(x, record, generator, encoded)


def train(split: Split, *, seed: int = 0, epochs: int | None = None, timesteps: int | None = None,
          ann: nn.Module | None = None, progress: bool = False, lr: float = 3e-3,
          baseline: bool = False) -> RecipeResult:
    """Train the conv IF network by proxy (``baseline=True``: the same weights as a ReLU ANN)."""
    t_steps = timesteps or TIMESTEPS
    net = _ProxyNet(network(split, t_steps, seed).graph)
    history = fit(net, split, epochs=epochs or EPOCHS, lr=lr, seed=seed, progress=progress,
                  loss_fn=ann_loss if baseline else proxy_loss)
    graph = net.to_graph()
    meta = {"recipe_timesteps": t_steps, "epochs": len(history), "training": "ann" if baseline else "proxy",
            "test_accuracy": evaluate(SpikingNet(graph), split.x_test, split.y_test),
            "ann_test_accuracy": static_accuracy(net, split.x_test, split.y_test,
                                                 F.relu if baseline else rate_relu)}
    return RecipeResult(graph, meta)
