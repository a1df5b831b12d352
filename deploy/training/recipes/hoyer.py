"""One-time-step SNN with Hoyer-extremum thresholds (Datta, Liu & Beerel 2022).

Each spiking layer has a trainable clip ``v_th``; its membrane ``u`` is normalized and
clipped, ``z = clip(u / v_th, 0, 1)``, and a neuron fires when ``z`` exceeds the Hoyer
extremum ``E(z) = ||z||_2^2 / ||z||_1`` of the layer's activation map. The Hoyer regularizer
``||z||_1^2 / ||z||_2^2`` (per element) is added to the loss and trains the clip towards
sparse, near-binary activations. Gradients pass through the clip (straight-through). T = 1.

For deployment each layer's extremum is a running average taken in training (as BatchNorm
keeps its statistics), so the layer becomes a plain IF neuron with threshold ``v_th * E``:
with one timestep ``v = u`` and the spike is ``u > v_th * E`` exactly. The output layer
spikes too (the Loihi target reads spike counts): a plain IF layer (threshold 1, arctangent
surrogate gradient) whose spikes are the class scores.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from deploy.core.data import Split
from deploy.core.errors import DeployError
from deploy.core.net import SpikingNet, build
from deploy.training.recipes.common import RecipeResult, conv_spec, sample_shape
from deploy.training.snn import evaluate, fit

EPOCHS = 20
HOYER_WEIGHT = 1e-3


def hoyer_extremum(z: torch.Tensor) -> torch.Tensor:
    """``||z||_2^2 / ||z||_1`` of a (clipped, non-negative) activation map."""
    return (z ** 2).sum() / z.abs().sum().clamp_min(1e-12)


def hoyer_regularizer(z: torch.Tensor) -> torch.Tensor:
    """``||z||_1^2 / ||z||_2^2`` divided by the number of elements (in [0, 1])."""
    return z.abs().sum() ** 2 / (z ** 2).sum().clamp_min(1e-12) / z.numel()


class HoyerSpike(nn.Module):
    """Training stand-in for an IF layer at T=1; exposes ``beta``/``threshold``/``alpha`` for writeback."""

    def __init__(self, v_th: float = 1.0, momentum: float = 0.1):
        super().__init__()
        self.v_th = nn.Parameter(torch.tensor(float(v_th)))
        self.register_buffer("running_ext", torch.tensor(0.5))
        self.register_buffer("beta", torch.tensor(1.0))
        self.register_buffer("alpha", torch.tensor(0.0))
        self.momentum = momentum
        self.hoyer = torch.zeros(())   # regularizer of the last forward pass

    @property
    def threshold(self) -> torch.Tensor:
        """The deployed IF threshold: v_th times the running Hoyer extremum."""
        return (self.v_th.abs() * self.running_ext).detach()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[0] != 1:
            raise ValueError(f"HoyerSpike trains one-timestep networks, got T={x.shape[0]}")
        z = torch.clamp(x / self.v_th.abs(), 0, 1)
        if self.training:
            ext = hoyer_extremum(z).detach()
            with torch.no_grad():
                self.running_ext.lerp_(ext, self.momentum)
            self.hoyer = hoyer_regularizer(z)
        else:
            ext = self.running_ext
        s = (z > ext).to(z.dtype)
        return z + (s - z).detach()          # forward: spikes; backward: through the clip


def attach_hoyer(net: SpikingNet) -> SpikingNet:
    """Replace every hidden LIF module by a :class:`HoyerSpike` (in place); a spiking output
    layer keeps its surrogate-gradient IF neurons and threshold."""
    for node in net.graph.nodes:
        if node.kind == "lif" and node is not net.graph.output:
            net.layers[node.name] = HoyerSpike()
    return net


def hoyer_loss(weight: float):
    """Loss of :func:`deploy.training.snn.fit`: cross-entropy plus ``weight`` times the Hoyer regularizers."""
    def loss(net, logits, y, out, x):
        reg = sum(m.hoyer for m in net.layers.values() if isinstance(m, HoyerSpike))
        return F.cross_entropy(logits, y) + weight * reg
    return loss


def network(split: Split, seed: int, timesteps: int = 1) -> SpikingNet:
    """The recipe's conv network (IF layers, spiking output) sized to the data."""
    shape = sample_shape(split)
    width = 8 if shape[-1] > 16 else 16
    return build(conv_spec(shape, timesteps, split.classes, width=width, name="hoyer_one_step"), seed=seed)


def train(split: Split, *, seed: int = 0, epochs: int | None = None, timesteps: int | None = None,
          ann: nn.Module | None = None, progress: bool = False, lr: float = 1e-2,
          weight: float = HOYER_WEIGHT) -> RecipeResult:
    """Train the one-step network with Hoyer thresholds and regularizer; the graph is IF at T=1."""
    if timesteps not in (None, 1):
        raise DeployError(f"recipe 'hoyer' trains one-time-step networks: --timesteps must be 1, got {timesteps}")
    net = attach_hoyer(network(split, seed))
    history = fit(net, split, epochs=epochs or EPOCHS, lr=lr, seed=seed, progress=progress,
                  loss_fn=hoyer_loss(weight))
    graph = net.to_graph()                        # HoyerSpike -> IF with threshold v_th * E
    meta = {"recipe_timesteps": 1, "epochs": len(history), "hoyer_weight": weight,
            "training_accuracy_modules": history[-1]["test_acc"],
            "test_accuracy": evaluate(SpikingNet(graph), split.x_test, split.y_test)}
    return RecipeResult(graph, meta)
