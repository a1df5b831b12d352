"""Noisy single-step training, converted to T steps (the noise-augmented membrane-potential method).

A multi-step IF neuron with subtractive reset carries a residual membrane from step to step,
spread over ``[0, theta)`` (started at ``theta / 2``: mean ``theta / 2``, standard deviation
``theta / sqrt(12)`` for a uniform spread). Averaged over that distribution, the chance that
one step fires is ``clip(u / theta, 0, 1)``: the multi-step rate. The recipe trains a
single-step (T = 1) network whose hidden IF neurons see that distribution as Gaussian noise
on the membrane, ``v = u + theta * (1/2 + sigma * n)``, ``n ~ N(0, 1)``, so each layer learns
the function its multi-step version computes (arctangent surrogate gradient, one step: no
backpropagation through time). Without noise (evaluation) the membrane gets the mean
``theta / 2``.

Conversion to T steps keeps every weight and threshold and moves the mean into the bias,
``theta / (2T)`` per step (the initial half-threshold membrane spread over the steps): the
converted network at T = 1 computes exactly the noise-free single-step network, and larger
T replaces the noise by the neurons' own residual membrane.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from deploy.core import ir
from deploy.core.data import Split
from deploy.core.net import SpikingNet, build
from deploy.core.neurons import LIF
from deploy.training.recipes.common import RecipeResult, conv_spec, sample_shape
from deploy.training.snn import evaluate, fit

EPOCHS = 20
TIMESTEPS = 4
SIGMA = 1 / 12 ** 0.5


class NoisyIF(LIF):
    """IF neuron at T = 1 whose membrane gets ``theta / 2`` plus, while training, Gaussian
    noise of standard deviation ``sigma * theta``."""

    def __init__(self, threshold=1.0, sigma: float = SIGMA):
        super().__init__(beta=1.0, threshold=threshold, reset="subtract")
        self.sigma = float(sigma)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[0] != 1:
            raise ValueError(f"NoisyIF trains single-step networks, got T={x.shape[0]}")
        thr = self.threshold
        x = x + thr / 2
        if self.training and self.sigma > 0:
            x = x + self.sigma * thr * torch.randn_like(x)
        return super().forward(x)


def attach_noise(net: SpikingNet, sigma: float) -> SpikingNet:
    """Give every hidden IF layer membrane noise (in place); the output layer stays noise-free."""
    for node in net.graph.nodes:
        if node.kind == "lif" and node is not net.graph.output:
            net.layers[node.name] = NoisyIF(node.threshold, sigma)
    return net


def to_timesteps(graph: ir.Graph, timesteps: int) -> ir.Graph:
    """The trained single-step graph (as written by ``to_graph``, no mean in the biases) for
    ``timesteps`` steps: weights and thresholds kept, ``theta / (2T)`` added to the bias of the
    synapse feeding each hidden IF layer."""
    g = graph.copy()
    t_steps = int(timesteps)
    for node in g.nodes:
        if node.kind == "lif" and node is not g.output:
            syn = g[node.inputs[0]]
            if not isinstance(syn, (ir.Linear, ir.Conv2d)):
                raise ir.ModelError(f"layer '{node.name}': the conversion needs a synapse right before it")
            shift = np.asarray(node.threshold, dtype=np.float32) / (2 * t_steps)
            base = syn.bias if syn.bias is not None else np.zeros(syn.weight.shape[0], np.float32)
            syn.bias = (base + shift).astype(np.float32)
    g.timesteps = t_steps
    g.meta["timesteps_trained"] = graph.timesteps
    return g.validate()


def network(split: Split, seed: int, timesteps: int = 1) -> SpikingNet:
    """The recipe's conv IF network sized to the data."""
    shape = sample_shape(split)
    width = 8 if shape[-1] > 16 else 16
    return build(conv_spec(shape, timesteps, split.classes, width=width, name="noisy_single_step"), seed=seed)


def train(split: Split, *, seed: int = 0, epochs: int | None = None, timesteps: int | None = None,
          ann: nn.Module | None = None, progress: bool = False, lr: float = 1e-2,
          sigma: float = SIGMA) -> RecipeResult:
    """Train at T = 1 with membrane noise ``sigma``; the graph is converted to ``timesteps`` steps."""
    t_steps = timesteps or TIMESTEPS
    net = attach_noise(network(split, seed), sigma)
    history = fit(net, split, epochs=epochs or EPOCHS, lr=lr, seed=seed, progress=progress)
    single = net.to_graph()
    graph = to_timesteps(single, t_steps)
    meta = {"recipe_timesteps": t_steps, "timesteps_trained": 1, "epochs": len(history), "sigma": sigma,
            "single_step_test_accuracy": evaluate(net, split.x_test, split.y_test),
            "test_accuracy": evaluate(SpikingNet(graph), split.x_test, split.y_test)}
    return RecipeResult(graph, meta, extras={"single_step": single})
