"""The IMC targets' differentiable forward for hardware-aware retraining.

:func:`deploy.training.finetune.finetune` trains through the network this module
builds (:class:`hwmodels.imc.crossbar.CrossbarNet` in training mode): weights
rounded to the target's precision and bit-sliced with straight-through
gradients, every column's partial sum converted by the sense amplifier (or
ADC) with a straight-through gradient, the conversion step of every column
group learned with an LSQ gradient, and every column's reference trimmed by a
learned offset (its SA reference is ``step / 2 - trim``). With ``learn_scales``
every output's weight scale is learned too (LSQ-style gradient, straight through
the clipping) instead of following ``max|w| / qmax``: with 1-bit sense amplifiers
the scale is the output's gain, and the codes no longer jump when the largest
weight moves. Optionally the device non-idealities are sampled afresh at every
step (``noise``), and a progressive schedule (:func:`schedule`) lowers the
conversion resolution step by step down to the target's (e.g. 4 -> 3 -> 2 -> 1
bit for the ADC-less target).

:func:`export` turns the trained network into a Graph whose weights are exactly the
deployed codes (``weight = code * weight_scale``, ``precision["weight"]``) and whose
``meta["imc"]`` holds the learned steps and trims, which the target uses when mapping.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch

from deploy.core import ir
from hwmodels.imc.crossbar import CrossbarNet, CrossbarSynapse

if TYPE_CHECKING:
    from hwmodels.imc import ImcTarget

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
    """The trained network as a Graph with quantized weights, the learned conversion steps
    and the LIF thresholds (rescaled by :func:`deploy.training.finetune.match_rates` when it ran)."""
    graph = net.graph.copy()
    for node in graph.nodes:
        if isinstance(node, ir.LIF):
            t = net.layers[node.name].threshold.detach().numpy().astype("float32")
            node.threshold = float(t) if t.ndim == 0 else t
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
    net.set_resolution(target.config.adc_bits)
    cfg = target.config
    graph.meta["imc"] = {"target": target.name, "adc_bits": cfg.adc_bits, "rows": cfg.rows,
                         "bits_per_cell": cfg.bits_per_cell, "signed": cfg.signed, "steps": steps,
                         "trims": trims}
    return graph.validate()
