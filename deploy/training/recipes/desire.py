"""Desire backpropagation (Gerlinghoff, Luo, Goh & Wong 2023).

A three-layer IF network (input, hidden, output; spike-count readout) trained without
gradients. Per sample:

1. the output error sets each output neuron's *desire*: +1 (should spike) for the label's
   neuron, -1 (should stay silent) for the others;
2. desires travel backwards through the weights as ternary values: a hidden neuron sums
   the weights to the output neurons signed by their desires, ``y_i = sum_j d_j w_ji``
   (additions and subtractions only), and takes the desire ``sign(y_i)`` when
   ``|y_i|`` exceeds ``theta_hidden`` times the layer's mean ``|y|``, else 0 (no update);
3. every neuron with a desire has a local loss: its spike rate ``r`` against the rate its
   desire asks for (1 or 0), error ``e = target - r``;
4. the weights follow an STDP-style local rule: ``dw_ij = lr * e_i * p_j``, ``p_j`` the
   presynaptic activity (spike rate, or the input current of a direct-encoded pixel) that
   coincided with the postsynaptic window, i.e. the rate form of the STDP pairing; the
   desire sets the sign (potentiate towards spiking, depress towards silence).
"""

from __future__ import annotations

import torch
from torch import nn

from deploy.core.data import Split, fit_to_model
from deploy.core.net import SpikingNet, build
from deploy.core.progress import bar as progress_bar
from deploy.core.repro import reproducible
from deploy.training.recipes.common import RecipeResult, mlp_spec, sample_shape
from deploy.training.snn import evaluate

EPOCHS = 20
TIMESTEPS = 8
THETA_HIDDEN = 0.5


def network(split: Split, timesteps: int, seed: int, hidden: int | None = None) -> SpikingNet:
    """input -> hidden IF -> output IF, sized to the data (hidden 128 on digits, 512 on MNIST)."""
    features = int(torch.tensor(sample_shape(split)).prod())
    width = hidden or (512 if features > 256 else 128)
    return build(mlp_spec(features, [width], timesteps, split.classes, name="desire_mlp"), seed=seed)


def desires(w_next: torch.Tensor, d_next: torch.Tensor, theta: float) -> torch.Tensor:
    """Ternary desires (B, N) of a layer from the next layer's desires (B, M) and weights (M, N)."""
    y = d_next @ w_next
    level = theta * y.abs().mean(dim=1, keepdim=True)
    return torch.sign(y) * (y.abs() > level)


def local_errors(rates: torch.Tensor, desire: torch.Tensor) -> torch.Tensor:
    """Per-neuron error of the local loss: target rate (1 for desire +1, 0 for -1) minus rate;
    0 where the neuron has no desire."""
    return ((desire > 0).to(rates.dtype) - rates) * (desire != 0)


@torch.no_grad()
def step(net: SpikingNet, x: torch.Tensor, y: torch.Tensor, lr: float, theta: float) -> torch.Tensor:
    """One desire-backpropagation update on a batch; returns the output spike counts."""
    fcs = [n for n in net.graph.nodes if n.kind == "linear"]
    ifs = [n for n in net.graph.nodes if n.kind == "lif"]
    out, rec = net.run(x, record=True)
    pre = [x.reshape(len(x), -1)] + [rec[n.name].mean(0) for n in ifs[:-1]]
    rates = [rec[n.name].mean(0) for n in ifs]
    classes = rates[-1].shape[1]
    d = [2 * nn.functional.one_hot(y, classes).to(x.dtype) - 1]
    for k in range(len(fcs) - 1, 0, -1):
        d.insert(0, desires(net.layers[fcs[k].name].weight, d[0], theta))
    for fc, r, dk, p in zip(fcs, rates, d, pre, strict=True):
        e = local_errors(r, dk)
        layer = net.layers[fc.name]
        layer.weight += lr * e.T @ p / len(x)
        if layer.bias is not None:
            layer.bias += lr * e.mean(0)
    return out.sum(0)


@reproducible
def fit_desire(net: SpikingNet, split: Split, epochs: int, lr: float = 0.1, batch_size: int = 32,
               theta: float = THETA_HIDDEN, seed: int = 0, progress: bool = False) -> list[dict[str, float]]:
    """Train ``net`` with desire backpropagation; one record per epoch (train/test accuracy)."""
    g = torch.Generator().manual_seed(seed)
    x = fit_to_model(split.x_train, net.graph.input_shape)
    history = []
    for epoch in progress_bar(range(epochs), desc="desire", disable=not progress):
        net.train()
        perm = torch.randperm(len(x), generator=g)
        correct = 0
        for i in range(0, len(x), batch_size):
            idx = perm[i:i + batch_size]
            counts = step(net, x[idx], split.y_train[idx], lr, theta)
            correct += int((counts.argmax(-1) == split.y_train[idx]).sum())
        history.append({"epoch": epoch + 1, "train_acc": correct / len(x),
                        "test_acc": evaluate(net, split.x_test, split.y_test)})
    return history


def train(split: Split, *, seed: int = 0, epochs: int | None = None, timesteps: int | None = None,
          ann: nn.Module | None = None, progress: bool = False, lr: float = 0.1,
          theta: float = THETA_HIDDEN) -> RecipeResult:
    """Train the three-layer IF network with desire backpropagation."""
    t_steps = timesteps or TIMESTEPS
    net = network(split, t_steps, seed)
    history = fit_desire(net, split, epochs or EPOCHS, lr=lr, theta=theta, seed=seed, progress=progress)
    graph = net.to_graph()
    meta = {"recipe_timesteps": t_steps, "epochs": len(history), "theta_hidden": theta,
            "test_accuracy": history[-1]["test_acc"]}
    return RecipeResult(graph, meta)
