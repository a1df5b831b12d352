"""Hardware-aware retraining for the IMC targets.

The network is trained through the target's own crossbar forward
(:class:`hwmodels.imc.crossbar.CrossbarSynapse` in training mode): weights
rounded to the target's precision and bit-sliced with straight-through
gradients, every column's partial sum converted by the sense amplifier (or
ADC) with a straight-through gradient, the conversion step of every column
group learned with an LSQ gradient, and every column's reference trimmed by a
learned offset (its SA reference is ``step / 2 - trim``). With ``learn_scales``
(the default) every output's weight scale is learned too (LSQ-style gradient,
straight through the clipping) instead of following ``max|w| / qmax``: with
1-bit sense amplifiers the scale is the output's gain, and the codes no longer
jump when the largest weight moves. Optionally the device
non-idealities are sampled afresh at every step (``noise``), and a
progressive schedule lowers the conversion resolution step by step down to
the target's (e.g. 4 -> 3 -> 2 -> 1 bit for the ADC-less target), recalibrating
the steps at every stage.

The result is a Graph whose weights are exactly the deployed codes
(``weight = code * weight_scale``, ``precision["weight"]``) and whose
``meta["imc"]`` holds the learned steps and trims, which the target uses when mapping.
"""

from __future__ import annotations

from typing import Any

import torch

from deploy import ir
from deploy.data import Split, augment_shifts, fit_to_model
from deploy.errors import DeployError
from deploy.snn.train import fit
from hwmodels.imc import ImcTarget
from hwmodels.imc.crossbar import CrossbarNet, CrossbarSynapse


def schedule(target_bits: int, epochs: int, progressive: bool, stages: int = 4) -> list[tuple[int, int]]:
    """[(conversion bits, epochs)]: one stage at the target's bits, or ``stages`` stages
    from ``target_bits + stages - 1`` down to ``target_bits`` (later stages get the remainder)."""
    if not progressive or epochs < 2:
        return [(target_bits, epochs)]
    n = min(stages, epochs)
    per, extra = divmod(epochs, n)
    bits = list(range(target_bits + n - 1, target_bits - 1, -1))
    return [(b, per + (1 if i >= n - extra else 0)) for i, b in enumerate(bits)]


def export(net: CrossbarNet, target: ImcTarget) -> ir.Graph:
    """The trained network as a Graph with quantized weights and the learned conversion steps."""
    graph = net.graph.copy()
    steps, trims = {}, {}
    for node in graph.synapses():
        m: CrossbarSynapse = net.layers[node.name]
        with torch.no_grad():
            q, scale = m.quantized_weight()
        shape = (-1,) + (1,) * (q.dim() - 1)
        node.weight = (torch.round(q) * scale.view(shape)).numpy().astype("float32")
        node.weight_scale = scale.numpy().astype("float32")
        node.precision = {**node.precision, "weight": m.sl.bits}
        if m.bias is not None:
            node.bias = m.bias.detach().numpy().astype("float32")
        steps[node.name] = [float(v) for v in m.step.detach().clamp(min=1e-4)]
        trims[node.name] = [float(v) for v in m.trim.detach()]
    cfg = target.config
    graph.meta["imc"] = {"target": target.name, "adc_bits": cfg.adc_bits, "rows": cfg.rows,
                         "bits_per_cell": cfg.bits_per_cell, "signed": cfg.signed, "steps": steps,
                         "trims": trims}
    return graph.validate()


def finetune(graph: ir.Graph, target: ImcTarget, split: Split, epochs: int = 25, lr: float = 2e-3,
             progressive: bool = False, noise: bool = False, seed: int = 0, batch_size: int = 64,
             learn_steps: bool = True, calib_samples: int = 256, augment: int = 0, learn_scales: bool = True,
             progress: bool = False) -> tuple[ir.Graph, list[dict[str, Any]]]:
    """Retrain ``graph`` with ``target``'s partial-sum quantization in the forward pass.

    ``augment``: one-pixel shifted copies of every training image added to the
    training set (0-8, :func:`deploy.data.augment_shifts`). ``learn_scales``: learn
    the per-output weight scales (see the module docstring).

    Returns the retrained graph (deployable on ``target``) and one history record
    per epoch (loss, train/test accuracy, conversion bits of the stage).
    """
    if not isinstance(target, ImcTarget):
        raise DeployError(f"finetune needs an IMC target (imc or imc-adc), got '{getattr(target, 'name', target)}'")
    if epochs < 1:
        raise DeployError(f"--epochs must be >= 1, got {epochs}")
    train = augment_shifts(split, augment) if augment else split
    torch.manual_seed(seed)
    mapping = target.map(graph)
    net = CrossbarNet(mapping, target.off_units, mode="train", noise=noise, learn_steps=learn_steps,
                     learn_scales=learn_scales)
    calib = fit_to_model(split.x_train[:calib_samples], net.graph.input_shape, net.graph.encoding)
    history: list[dict[str, Any]] = []
    for bits, n_epochs in schedule(target.config.adc_bits, epochs, progressive):
        net.set_adc_bits(bits)
        net.eval()
        with torch.no_grad():
            net.calibrate(calib)
        for rec in fit(net, train, epochs=n_epochs, lr=lr, batch_size=batch_size, seed=seed + len(history),
                       progress=progress):
            history.append({**rec, "epoch": len(history) + 1, "adc_bits": bits})
    net.set_adc_bits(target.config.adc_bits)
    return export(net, target), history
