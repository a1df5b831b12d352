"""Hardware-aware retraining: training through a target's own differentiable forward.

A target that can be retrained for declares it by providing (see :class:`TrainableTarget`)
``trainable(graph, ...)``, a SpikingNet-like module that computes what the hardware
computes with straight-through gradients (the IMC targets: :mod:`hwmodels.imc.trainable`),
``training_stages(epochs, progressive)``, the resolutions to train at, and
``export_trained(net)``, the deployable Graph. This loop owns the schedule: for each stage
it sets the resolution, calibrates the conversion steps on training samples (optionally
rescaling the thresholds so every layer fires at its float rate, :func:`match_rates`),
then trains with :func:`deploy.training.snn.fit`.
"""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

import torch

from deploy.core import ir
from deploy.core.data import Split, augment_shifts, fit_to_model
from deploy.core.errors import DeployError
from deploy.core.net import SpikingNet
from deploy.training.snn import fit


class TrainableNet(Protocol):
    """The differentiable forward a target provides (a :class:`SpikingNet` subclass)."""

    graph: ir.Graph

    def set_resolution(self, bits: int) -> None: ...

    def calibrate(self, x: torch.Tensor) -> Any: ...

    def calibration_samples(self, wanted: int) -> int: ...


@runtime_checkable
class TrainableTarget(Protocol):
    """A target that supports hardware-aware retraining."""

    name: str

    def trainable(self, graph: ir.Graph, *, noise: bool, learn_steps: bool,
                  learn_scales: bool) -> TrainableNet: ...

    def training_stages(self, epochs: int, progressive: bool) -> list[tuple[int, int]]: ...

    def export_trained(self, net: TrainableNet) -> ir.Graph: ...


@torch.no_grad()
def match_rates(net: SpikingNet, reference: SpikingNet, x: torch.Tensor, iters: int = 14) -> dict[str, float]:
    """Scale every LIF layer's threshold, in layer order, so that it fires on ``x`` (through
    ``net``, e.g. the crossbar model) at the rate it fires in ``reference`` (the float model).

    With 1-bit sense amplifiers a layer's output is a sum of binary column decisions, whose gain
    differs from the float layer's; the difference compounds over depth until deep layers and
    the output fall silent, where the surrogate gradient is too weak to recover them. Returns
    the factor applied to each layer's threshold.
    """
    _, ref = reference.run(x, record=True)
    factors = {}
    for node in net.graph.nodes:
        want = float(ref[node.name].mean()) if node.kind == "lif" else 0.0
        if node.kind != "lif" or want <= 0:
            continue
        _, values = net.run(x, record=True)
        current, lif = values[node.inputs[0]], net.layers[node.name]
        base = lif.threshold.clone()
        lo, hi = -6.0, 6.0                                   # log2 of the factor
        for _ in range(iters):
            mid = (lo + hi) / 2
            lif.threshold.copy_(base * 2 ** mid)
            if float(lif(current).mean()) > want:
                lo = mid
            else:
                hi = mid
        factors[node.name] = 2 ** ((lo + hi) / 2)
        lif.threshold.copy_(base * factors[node.name])
    return factors


def finetune(graph: ir.Graph, target: TrainableTarget, split: Split, epochs: int = 25, lr: float = 2e-3,
             progressive: bool = False, noise: bool = False, seed: int = 0, batch_size: int = 64,
             learn_steps: bool = True, calib_samples: int = 256, augment: int = 0, learn_scales: bool = True,
             progress: bool = False, monitor_samples: int | None = None,
             match_rates_first: bool = False) -> tuple[ir.Graph, list[dict[str, Any]]]:
    """Retrain ``graph`` through ``target``'s differentiable forward (its conversion in the loop).

    ``augment``: one-pixel shifted copies of every training image added to the
    training set (0-8, :func:`deploy.core.data.augment_shifts`). ``learn_scales``: learn
    the per-output weight scales, ``learn_steps`` the conversion steps (see
    :mod:`hwmodels.imc.trainable`). The steps are calibrated on the first ``calib_samples``
    training samples, fewer for large layers (the net's ``calibration_samples``).
    ``monitor_samples``: the per-epoch test accuracy of the history is measured on the first
    that many test samples (None: all). ``match_rates_first``: after every calibration (each
    stage of a progressive schedule), rescale the LIF thresholds so that every layer fires at
    its float rate on the calibration samples (:func:`match_rates`).

    Returns the retrained graph (deployable on ``target``) and one history record
    per epoch (loss, train/test accuracy, conversion bits of the stage).
    """
    if not isinstance(target, TrainableTarget):
        raise DeployError(f"finetune needs a target with a trainable forward (imc, imc-adc), "
                          f"got '{getattr(target, 'name', target)}'")
    if epochs < 1:
        raise DeployError(f"--epochs must be >= 1, got {epochs}")
    train = augment_shifts(split, augment) if augment else split
    if monitor_samples is not None:
        train = Split(train.name, train.x_train, train.y_train, train.x_test[:monitor_samples],
                      train.y_test[:monitor_samples])
    torch.manual_seed(seed)
    net = target.trainable(graph, noise=noise, learn_steps=learn_steps, learn_scales=learn_scales)
    n_calib = net.calibration_samples(calib_samples)
    calib = fit_to_model(split.x_train[:n_calib], net.graph.input_shape, net.graph.encoding)
    history: list[dict[str, Any]] = []
    for bits, n_epochs in target.training_stages(epochs, progressive):
        net.set_resolution(bits)
        net.eval()
        with torch.no_grad():
            net.calibrate(calib)
            if match_rates_first:
                match_rates(net, SpikingNet(graph), calib)
        for rec in fit(net, train, epochs=n_epochs, lr=lr, batch_size=batch_size, seed=seed + len(history),
                       progress=progress, eval_batch_size=batch_size):
            history.append({**rec, "epoch": len(history) + 1, "adc_bits": bits})
    return target.export_trained(net), history
