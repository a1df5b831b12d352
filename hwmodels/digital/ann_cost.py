"""A frame-based (non-spiking) ANN priced on the ``digital`` target's arithmetic and SRAM
constants, once per inference: adder layers (:mod:`deploy.training.adder`) as additions
only, conv/linear layers as multiply-accumulates."""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn

from deploy.training.adder import AdderConv2d, AdderLinear
from hwmodels.digital import DigitalTarget


def digital_cost(net: nn.Sequential, input_shape: tuple[int, ...], bits: int = 32) -> dict[str, Any]:
    """Energy, latency and memory per inference of ``net`` on the ``digital`` target's constants.

    Adder layers: two additions per weight operand; conv/linear: one multiply and one add;
    BatchNorm (inference): one multiply and one add per value; ReLU and max pooling: one
    comparison (an add) per input value. One SRAM weight read per weight operand; ``pe_count``
    operations per cycle, layers in sequence (the digital target's latency model).
    """
    tgt = DigitalTarget()
    s = tgt.spec
    add, mult = tgt._arith(bits)
    sram, pes, cycle = s["e_sram_read_pj_per_bit"], s["pe_count"], 1.0 / s["clock_hz"]
    rows, x = [], torch.zeros(1, *input_shape)
    net = net.eval()
    for i, layer in enumerate(net):
        y = layer(x)
        n_out, n_in = y[0].numel(), x[0].numel()
        adds = mults = weight_ops = 0
        if isinstance(layer, (AdderConv2d, AdderLinear, nn.Conv2d, nn.Linear)):
            fan_in = layer.weight[0].numel()
            weight_ops = n_out * fan_in
            if isinstance(layer, (AdderConv2d, AdderLinear)):
                adds = 2 * weight_ops
            else:
                adds, mults = weight_ops, weight_ops
        elif isinstance(layer, (nn.BatchNorm1d, nn.BatchNorm2d)):
            adds, mults = n_out, n_out
        elif isinstance(layer, (nn.ReLU, nn.MaxPool2d)):
            adds = n_in
        params = sum(p.numel() for p in layer.parameters())
        energy = (adds * add + mults * mult + weight_ops * bits * sram) * 1e-12
        ops = adds + mults
        rows.append({"layer": f"{i}:{type(layer).__name__}", "adds": adds, "mults": mults,
                     "weight_reads": weight_ops, "energy_j": energy,
                     "latency_s": math.ceil(ops / pes) * cycle, "memory_bytes": params * bits / 8})
        x = y
    totals = {k: sum(r[k] for r in rows) for k in ("adds", "mults", "weight_reads", "energy_j",
                                                   "latency_s", "memory_bytes")}
    adder_layers = sum(isinstance(m, (AdderConv2d, AdderLinear)) for m in net)
    return {"target": "digital", "spiking": False,
            "note": ("not a spiking network: a frame-based ANN costed once per inference on the digital "
                     "target's arithmetic and SRAM constants; "
                     + ("adder layers priced as additions only (no multiplies); the multiplies counted are "
                        "BatchNorm's and the classifier's"
                        if adder_layers else "conv/linear layers priced as multiply-accumulates")),
            "bits": bits, "totals": totals, "layers": rows, "constants": s.used_constants()}
