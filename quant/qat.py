"""Quantization-aware training: Brevitas synapses and fixed-point neurons in the training loop.

The synaptic modules of a :class:`deploy.core.net.SpikingNet` are swapped for
Brevitas ``QuantLinear`` / ``QuantConv2d`` (signed narrow-range integer weights
of the chosen width, max-statistics scale per tensor or per output channel,
rounding ``ROUND`` / ``FLOOR`` / ``STOCHASTIC_ROUND``), the neurons for the
fixed-point modules of :mod:`quant.neurons` (formats calibrated as in PTQ), and
the network is fine-tuned with :func:`deploy.training.snn.fit`. Brevitas rounds
stochastically only while training; the deployed weights are its inference-time
codes.
"""

from __future__ import annotations

import logging
import warnings

import numpy as np
import torch
from torch import nn

from deploy.core import ir
from deploy.core.data import Split, fit_to_model
from quant import ptq
from quant.neurons import fixed_point_module, formats_of
from quant.quantizers import QuantError

_BREVITAS_ROUNDING = {"nearest": "ROUND", "truncation": "FLOOR", "stochastic": "STOCHASTIC_ROUND"}


def import_brevitas():
    """Import brevitas quietly (it warns about optional CUDA kernels at import time)."""
    logging.getLogger("torch.utils.cpp_extension").setLevel(logging.ERROR)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import brevitas.nn as qnn
        from brevitas import quant as bq
        from brevitas.core.scaling import ScalingImplType
        from brevitas.inject.enum import FloatToIntImplType
    return qnn, bq, FloatToIntImplType, ScalingImplType


def brevitas_layer(node: ir.Node, bits: int, rounding: str = "nearest", per_channel: bool = True,
                   seed: int = 0, scale: np.ndarray | None = None) -> nn.Module:
    """A Brevitas QuantLinear/QuantConv2d with ``node``'s shape and float weights.

    ``scale`` (per tensor (1,) or per channel (out,)) fixes the scale instead of
    taking it from weight statistics, e.g. to reproduce an already quantized graph.
    """
    if bits < 2:
        raise QuantError(f"layer '{node.name}': Brevitas integer weights need at least 2 bits, got {bits}")
    qnn, bq, to_int, scaling = import_brevitas()
    per_channel = per_channel if scale is None else np.asarray(scale).size > 1
    kw = {"weight_quant": bq.Int8WeightPerChannelFloat if per_channel else bq.Int8WeightPerTensorFloat,
          "weight_bit_width": int(bits), "bias": node.bias is not None, "return_quant_tensor": False,
          "weight_float_to_int_impl_type": getattr(to_int, _BREVITAS_ROUNDING[rounding])}
    if rounding == "stochastic":
        kw["weight_seed"] = int(seed)
    if scale is not None:
        qmax = 2 ** (bits - 1) - 1
        init = torch.as_tensor(np.asarray(scale, dtype=np.float32) * qmax)
        kw["weight_scaling_impl_type"] = scaling.PARAMETER
        kw["weight_scaling_init"] = init.view(-1, *[1] * (node.weight.ndim - 1)) if per_channel else init.reshape(())
    w = node.weight
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if isinstance(node, ir.Linear):
            layer = qnn.QuantLinear(w.shape[1], w.shape[0], **kw)
        elif isinstance(node, ir.Conv2d):
            layer = qnn.QuantConv2d(w.shape[1] * node.groups, w.shape[0], tuple(w.shape[2:]), stride=node.stride,
                                    padding=node.padding, dilation=node.dilation, groups=node.groups, **kw)
        else:
            raise QuantError(f"layer '{node.name}': no Brevitas layer for type '{node.kind}'")
    layer.weight.data = torch.from_numpy(np.array(w, dtype=np.float32))
    if node.bias is not None:
        layer.bias.data = torch.from_numpy(np.array(node.bias, dtype=np.float32))
    return layer


def qat_net(graph: ir.Graph, config: ptq.QConfig, formats: dict, seed: int = 0):
    """A SpikingNet of ``graph`` with Brevitas synapses and fixed-point neurons (not yet trained)."""
    from deploy.core.net import SpikingNet

    net = SpikingNet(graph)
    for i, node in enumerate(net.graph.synapses()):
        net.layers[node.name] = brevitas_layer(node, config.weight_bits_for(node.name), config.rounding,
                                               config.per_channel, seed + i)
    for name, fmt in formats.items():
        net.layers[name] = fixed_point_module(net.graph[name], fmt, exact=False)
    return net


@torch.no_grad()
def export_graph(net, graph: ir.Graph, config: ptq.QConfig, formats: dict, seed: int = 0) -> ir.Graph:
    """The quantized graph of a trained QAT net: Brevitas' integer weights, biases and neurons on grid."""
    g = graph.copy()
    for node in g.synapses():
        layer = net.layers[node.name].eval()
        qw = layer.quant_weight()
        node.weight = qw.value.detach().numpy().astype(np.float32)
        node.weight_scale = qw.scale.detach().reshape(-1).numpy().astype(np.float32)
        node.precision["weight"] = config.weight_bits_for(node.name)
        if node.bias is not None:
            node.bias = layer.bias.detach().numpy().astype(np.float32)
    return ptq.finish(g, config, formats, seed)


def qat(graph: ir.Graph, config: ptq.QConfig, split: Split, epochs: int = 3, lr: float = 5e-4,
        batch_size: int = 64, calib_samples: int = 256, seed: int = 0, progress: bool = False) -> ir.Graph:
    """Quantization-aware fine-tuning of ``graph`` on ``split``; returns the quantized graph."""
    if epochs < 1:
        raise QuantError(f"QAT needs at least one epoch, got {epochs}")
    if len(split.x_train) == 0:
        raise QuantError("QAT needs training data, the training split is empty")
    config = ptq.QConfig(**{**config.to_dict(), "scheme": "qat"})
    calib = fit_to_model(split.x_train[:calib_samples], graph.input_shape, graph.encoding)
    formats = formats_of(ptq.quantize(graph, config, calib, seed))
    net = qat_net(graph, config, formats, seed)
    from deploy.training.snn import fit

    torch.manual_seed(seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        history = fit(net, split, epochs=epochs, lr=lr, batch_size=batch_size, seed=seed, progress=progress)
    g = export_graph(net, graph, config, formats, seed)
    g.meta["quant"]["qat"] = {"epochs": epochs, "lr": lr, "batch_size": batch_size,
                              "final_loss": history[-1]["loss"] if history else None}
    return g
