"""Post-training quantization of a :class:`deploy.core.ir.Graph`.

``quantize(graph, config, calib=x)`` returns a new graph whose weights lie on
their integer grid (stored dequantized, ``node.weight_scale`` set), whose
neuron parameters are the values the fixed-point unit realizes, and whose
``node.precision`` names every stored width ("weight", "bias", "threshold",
"beta", "alpha", "membrane", "current"). ``graph.meta["quant"]`` records the
configuration and each neuron layer's :class:`~quant.neurons.NeuronFormat`,
from which :func:`quant.neurons.quantized_net` rebuilds the bit-true network.

Membrane formats are calibrated: the register must hold the threshold plus the
largest input current (a high quantile of it over ``calib``; without data the
worst case ``sum |w|`` for inputs in [0, 1]). Biases are stored on the grid of
the membrane they feed.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import torch

from deploy.core import ir
from quant.neurons import (
    NeuronFormat,
    calibrate_format,
    check_neuron_bits,
    fixed_point_module,
    neuron_precision,
)
from quant.quantizers import QuantError, QuantSpec, check_bits, check_rounding, dequantize
from quant.quantizers import quantize as quantize_tensor

SCHEMES = ("ptq", "qat")


@dataclass
class QConfig:
    """One point of the search space.

    ``weight_bits`` / ``neuron_bits`` apply to every synapse / neuron layer;
    ``layer_bits`` overrides them per layer (a synapse name maps to its weight
    bits, a neuron name to its neuron bits).
    """

    weight_bits: int = 8
    neuron_bits: int = 16
    rounding: str = "nearest"
    scheme: str = "ptq"
    per_channel: bool = True
    layer_bits: dict[str, int] = field(default_factory=dict)

    def __post_init__(self):
        check_bits(self.weight_bits, "weight bit width")
        check_neuron_bits(self.neuron_bits)
        check_rounding(self.rounding)
        if self.scheme not in SCHEMES:
            raise QuantError(f"unknown scheme {self.scheme!r} (choose from {', '.join(SCHEMES)})")
        for name, bits in self.layer_bits.items():
            check_bits(bits, f"bit width of layer '{name}'")

    def weight_bits_for(self, name: str) -> int:
        return int(self.layer_bits.get(name, self.weight_bits))

    def neuron_bits_for(self, name: str) -> int:
        return int(self.layer_bits.get(name, self.neuron_bits))

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> QConfig:
        return cls(**d)

    def key(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    def label(self) -> str:
        per_layer = "+layers" if self.layer_bits else ""
        return f"w{self.weight_bits}/n{self.neuron_bits}{per_layer} {self.rounding} {self.scheme}"


def quantize_weights(node: ir.Node, bits: int, rounding: str, per_channel: bool,
                     generator: torch.Generator | None = None) -> None:
    """Put a synapse's weight on a ``bits``-wide signed grid, in place."""
    spec = QuantSpec(bits, signed=True, per_channel=per_channel, rounding=rounding)
    codes, scale = quantize_tensor(torch.from_numpy(np.asarray(node.weight, dtype=np.float32)), spec,
                                   generator=generator)
    node.weight = dequantize(codes, scale).numpy().astype(np.float32)
    node.weight_scale = scale.reshape(-1).numpy().astype(np.float32)
    node.precision["weight"] = int(bits)


def quantize_bias(node: ir.Node, bits: int, rounding: str, fmt: NeuronFormat | None,
                  generator: torch.Generator | None = None) -> None:
    """Store a synapse's bias on the membrane grid it feeds (or a ``bits``-wide grid of its own)."""
    if node.bias is None:
        return
    b = torch.from_numpy(np.asarray(node.bias, dtype=np.float64))
    if fmt is not None:
        spec = QuantSpec(fmt.bits, rounding=rounding, narrow=False, scheme="fixed")
        codes, _ = quantize_tensor(b, spec, scale=torch.tensor(fmt.lsb, dtype=torch.float64),
                                   generator=generator)
        node.bias = (codes * fmt.lsb).numpy().astype(np.float32)
        node.precision["bias"] = fmt.bits
    else:
        codes, scale = quantize_tensor(b, QuantSpec(bits, rounding=rounding), generator=generator)
        node.bias = dequantize(codes, scale).numpy().astype(np.float32)
        node.precision["bias"] = int(bits)


def _quantile_abs(t: torch.Tensor, q: float, max_items: int = 1 << 22) -> float:
    flat = t.detach().abs().reshape(-1).float()
    if flat.numel() == 0:
        return 0.0
    if q >= 1.0:
        return float(flat.max())
    if flat.numel() > max_items:  # evenly strided subsample keeps this deterministic
        flat = flat[:: flat.numel() // max_items + 1]
    k = min(max(int(math.ceil(q * flat.numel())), 1), flat.numel())
    return float(torch.kthvalue(flat, k).values)


def _worst_case_input(graph: ir.Graph, node: ir.Node) -> float:
    """Largest input current for inputs in [0, 1]: ``max_out sum |w| + |b|`` of the feeding synapse."""
    total = 0.0
    for src in node.inputs:
        if src == "input" or graph[src].kind not in ir.SYNAPSE_KINDS:
            total += 1.0
            continue
        syn = graph[src]
        w = np.abs(syn.weight).reshape(syn.weight.shape[0], -1).sum(1)
        if syn.bias is not None:
            w = w + np.abs(syn.bias)
        total += float(w.max())
    return total


def _gain(alpha, timesteps: int) -> float:
    """Peak synaptic current per unit input: ``sum_k alpha**k`` over the run."""
    a = float(np.max(np.asarray(alpha, dtype=np.float64)))
    return float(sum(a ** k for k in range(timesteps))) if a > 0 else 1.0


@torch.no_grad()
def value_ranges(graph: ir.Graph, calib: torch.Tensor | None = None, quantile: float = 0.999,
                 batch_size: int = 256) -> dict[str, float]:
    """The value range each neuron layer's registers must hold (see the module docstring)."""
    from deploy.core.net import SpikingNet

    neurons = [n for n in graph.nodes if n.kind in ir.NEURON_KINDS]
    peaks: dict[str, float] = {}
    if calib is not None and len(calib):
        net = SpikingNet(graph).eval()
        per_batch: dict[str, list[float]] = {n.name: [] for n in neurons}
        for i in range(0, len(calib), batch_size):
            _, values = net.run(calib[i:i + batch_size], record=True)
            for n in neurons:
                src = values[n.name] if isinstance(n, ir.LI) else values[n.inputs[0]]
                per_batch[n.name].append(_quantile_abs(src, quantile))
        peaks = {k: float(np.max(v)) for k, v in per_batch.items()}
    out = {}
    for n in neurons:
        if isinstance(n, ir.LI):
            peak = peaks.get(n.name, _worst_case_input(graph, n) * graph.timesteps)
            out[n.name] = max(peak, 1e-6)
        else:
            x_peak = peaks.get(n.name, _worst_case_input(graph, n))
            thr = float(np.max(np.asarray(n.threshold, dtype=np.float64)))
            out[n.name] = thr + x_peak * _gain(n.alpha, graph.timesteps)
    return out


def _generator(seed: int, index: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed * 1000 + index)


def quantize_neurons(graph: ir.Graph, formats: dict[str, NeuronFormat], exact: bool = False) -> None:
    """Replace neuron parameters by their fixed-point values and fill precisions, in place."""
    for name, fmt in formats.items():
        node = graph[name]
        for key, val in fixed_point_module(node, fmt, exact=exact).dequantized().items():
            setattr(node, key, val)
        node.precision.update(neuron_precision(node, fmt))


def quantize(graph: ir.Graph, config: QConfig, calib: torch.Tensor | None = None, seed: int = 0,
             quantile: float = 0.999, ranges: dict[str, float] | None = None) -> ir.Graph:
    """Post-training quantization; ``calib`` are model-shaped inputs for the membrane ranges.

    ``ranges`` (from :func:`value_ranges` of the weight-quantized graph) skips the calibration run.
    """
    g = quantize_all_weights(graph, config, seed)
    ranges = value_ranges(g, calib, quantile) if ranges is None else ranges
    formats = {name: calibrate_format(config.neuron_bits_for(name), r, config.rounding, seed=seed + j)
               for j, (name, r) in enumerate(ranges.items())}
    finish(g, config, formats, seed)
    return g


def quantize_all_weights(graph: ir.Graph, config: QConfig, seed: int = 0) -> ir.Graph:
    """A copy of ``graph`` with every synapse's weights on its grid (biases and neurons untouched)."""
    g = graph.copy()
    for i, node in enumerate(g.synapses()):
        quantize_weights(node, config.weight_bits_for(node.name), config.rounding, config.per_channel,
                         _generator(seed, i))
    return g


def finish(g: ir.Graph, config: QConfig, formats: dict[str, NeuronFormat], seed: int = 0,
           exact_neurons: bool = False) -> ir.Graph:
    """Quantize biases and neuron parameters of a graph whose weights are on their grid; record meta."""
    for i, node in enumerate(g.synapses()):
        consumers = g.consumers(node.name)
        fmt = formats.get(consumers[0].name) if len(consumers) == 1 else None
        quantize_bias(node, config.neuron_bits if fmt is None else fmt.bits, config.rounding,
                      fmt, _generator(seed, 500 + i))
    quantize_neurons(g, formats, exact=exact_neurons)
    g.meta["quant"] = {"config": config.to_dict(), "seed": int(seed),
                       "neurons": {name: fmt.to_dict() for name, fmt in formats.items()}}
    return g.validate()


def is_quantized(graph: ir.Graph) -> bool:
    return bool((graph.meta.get("quant") or {}).get("neurons")) or any(n.precision for n in graph.nodes)
