"""Fixed-point neurons: the integer arithmetic of a digital LIF unit, in torch.

Every neuron layer gets a :class:`NeuronFormat`: an ``N``-bit signed membrane
register (the synaptic-current register has the same width), counted in units
of one LSB (a power of two), and decay factors with ``F`` fraction bits stored,
as on Loihi, as a decrement ``d``: ``beta = 1 - d / 2**F`` (so IF neurons,
``beta = 1``, are exact). One step, all quantities integer codes::

    x = R(x_in / lsb)                           # input current onto the grid
    i = sat(R(i * alpha_code / 2**F) + x)       # only when alpha != 0
    v = sat(R(v * beta_code / 2**F) + i)        # sat: clamp to [-2**(N-1), 2**(N-1) - 1]
    s = v > thr_code                            # strict, as in deploy.core.ir
    v = v - s * thr_code   (reset "subtract")   or   v * (1 - s)  (reset "zero")

With ``reset_delay`` (snnTorch's default timing) the subtraction moves to the
next step, before the spike test: ``v = sat(R(v * beta_code / 2**F) + i - s_prev * thr_code)``.

``R`` is the layer's rounding mode (:mod:`quant.quantizers`): truncation is an
arithmetic shift right. Stochastic rounding in evaluation models a per-neuron
random source reset at the start of every inference: the generator is re-seeded
from the format's seed on every forward and one draw per neuron and step is
shared by all samples of the batch, so a sample's result does not depend on the
batch it runs in (training draws independent noise per element). The
arithmetic runs in float64 on integer values, which is exact for every product
(at most 32 + 16 bits). Rounding passes gradients
straight through and the spike uses the surrogate of :mod:`deploy.core.neurons`,
so the same module serves quantization-aware training.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np
import torch
from torch import nn

from deploy.core import ir
from deploy.core.neurons import NeuronKernel, broadcast_to_features, needs_grad, spike
from quant.quantizers import QuantError, check_bits, check_rounding, round_ste, round_values

MAX_DECAY_BITS = 16


def check_neuron_bits(bits: int) -> int:
    bits = check_bits(bits, "neuron bit width")
    if bits < 2:
        raise QuantError("neuron bit width must be at least 2 (a signed membrane needs a sign and a value bit)")
    return bits


@dataclass(frozen=True)
class NeuronFormat:
    """Fixed-point format of one neuron layer (membrane, current, threshold, decays)."""

    bits: int
    lsb: float
    decay_bits: int
    rounding: str = "nearest"
    seed: int = 0

    def __post_init__(self):
        check_neuron_bits(self.bits)
        check_bits(self.decay_bits, "decay bit width")
        check_rounding(self.rounding)
        if not self.lsb > 0:
            raise QuantError(f"membrane LSB must be positive, got {self.lsb}")

    @property
    def vmin(self) -> int:
        return -(2 ** (self.bits - 1))

    @property
    def vmax(self) -> int:
        return 2 ** (self.bits - 1) - 1

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> NeuronFormat:
        return cls(**{k: d[k] for k in ("bits", "lsb", "decay_bits", "rounding", "seed") if k in d})


def calibrate_format(bits: int, value_range: float, rounding: str = "nearest",
                     decay_bits: int | None = None, seed: int = 0) -> NeuronFormat:
    """The finest power-of-two LSB whose ``bits``-wide register holds ``+-value_range``.

    ``decay_bits`` defaults to ``min(bits, 16)``.
    """
    bits = check_neuron_bits(bits)
    value_range = float(value_range)
    int_bits = math.floor(math.log2(value_range)) + 1 if value_range > 0 else 0
    lsb = 2.0 ** (int_bits - (bits - 1))
    return NeuronFormat(bits, lsb, min(bits, MAX_DECAY_BITS) if decay_bits is None else decay_bits,
                        rounding, seed)


def decay_code(factor, fmt: NeuronFormat, rounding: str | None = None,
               generator: torch.Generator | None = None) -> torch.Tensor:
    """Integer ``2**F - d`` for a decay factor in [0, 1], ``d = clamp(R((1 - f) 2**F), 0, 2**F - 1)``."""
    one = 2 ** fmt.decay_bits
    f = torch.as_tensor(np.asarray(factor, dtype=np.float64))
    d = round_values((1 - f) * one, rounding or fmt.rounding, generator).clamp(0, one - 1)
    return one - d


def threshold_code(threshold, fmt: NeuronFormat, rounding: str | None = None,
                   generator: torch.Generator | None = None) -> torch.Tensor:
    """Threshold in membrane LSBs, at least 1 and at most the register maximum."""
    t = torch.as_tensor(np.asarray(threshold, dtype=np.float64))
    return round_values(t / fmt.lsb, rounding or fmt.rounding, generator).clamp(1, max(fmt.vmax, 1))


def _value(t: torch.Tensor) -> float | np.ndarray:
    a = t.detach().cpu().numpy().astype(np.float32)
    return float(a) if a.ndim == 0 else a


class _FixedPointBase(nn.Module):
    def __init__(self, fmt: NeuronFormat, beta, exact: bool, gen: torch.Generator):
        super().__init__()
        self.fmt = fmt
        self.register_buffer("beta_code", decay_code(beta, fmt, "nearest" if exact else None, gen))

    def _generator(self) -> torch.Generator | None:
        """Evaluation re-seeds every forward (reproducible batch by batch); training draws on."""
        if self.fmt.rounding != "stochastic":
            return None
        if not self.training:
            return torch.Generator().manual_seed(self.fmt.seed + 1)
        if getattr(self, "_train_gen", None) is None:
            self._train_gen = torch.Generator().manual_seed(self.fmt.seed + 2)
        return self._train_gen

    def _sat(self, v: torch.Tensor) -> torch.Tensor:
        return v.clamp(self.fmt.vmin, self.fmt.vmax)

    def _round(self, v: torch.Tensor, gen, batch_dim: int) -> torch.Tensor:
        """Round with the format's mode; evaluation shares stochastic draws across the batch."""
        if self.fmt.rounding == "stochastic" and not self.training:
            shape = list(v.shape)
            shape[batch_dim] = 1
            return torch.floor(v + torch.rand(shape, generator=gen, dtype=v.dtype).to(v.device))
        return round_ste(v, self.fmt.rounding, gen)

    def _decay(self, v: torch.Tensor, code: torch.Tensor, gen) -> torch.Tensor:
        return self._round(v * code / 2 ** self.fmt.decay_bits, gen, 0)

    def _input_codes(self, x: torch.Tensor, gen) -> torch.Tensor:
        return self._round(x.to(torch.float64) / self.fmt.lsb, gen, 1)

    def extra_repr(self) -> str:
        f = self.fmt
        return f"bits={f.bits}, lsb=2^{math.log2(f.lsb):g}, decay_bits={f.decay_bits}, rounding={f.rounding}"


class FixedPointKernel(NeuronKernel):
    """:class:`~deploy.core.neurons.NeuronKernel` in integer codes (the module docstring's step):
    decays rounded by the layer's mode, the membrane and current saturated to the register."""

    def __init__(self, unit: _FixedPointBase, gen, beta, thr=None, alpha=None, reset="subtract",
                 reset_delay=False, grad: bool = True, surrogate_alpha: float = 2.0):
        super().__init__(beta, thr, alpha, reset, reset_delay)
        self.unit, self.gen, self.grad, self.surrogate_alpha = unit, gen, grad, surrogate_alpha

    def decay(self, v, factor):
        return self.unit._decay(v, factor, self.gen)

    def integrate(self, v, x, r=None):
        return self.unit._sat(v + (x if r is None else x - r * self.thr))

    def fire(self, v):
        if self.grad:
            return spike((v - self.thr) * self.unit.fmt.lsb, self.surrogate_alpha)
        return torch.gt(v, self.thr).to(v.dtype)


class FixedPointLIF(_FixedPointBase):
    """LIF layer computed in integer arithmetic (see the module docstring).

    ``exact=True`` (used when rebuilding from a quantized graph) recovers the
    parameter codes with round-to-nearest, since the values already lie on the
    grid; otherwise the format's rounding mode quantizes them.
    """

    def __init__(self, fmt: NeuronFormat, beta=1.0, threshold=1.0, alpha=0.0, reset: str = "subtract",
                 surrogate_alpha: float = 2.0, exact: bool = False, reset_delay: bool = False):
        if reset not in ir.RESETS:
            raise QuantError(f"reset must be one of {ir.RESETS}, got {reset!r}")
        gen = torch.Generator().manual_seed(fmt.seed)
        super().__init__(fmt, beta, exact, gen)
        rnd = "nearest" if exact else None
        self.register_buffer("thr_code", threshold_code(threshold, fmt, rnd, gen))
        self.register_buffer("alpha_code", decay_code(alpha, fmt, rnd, gen))
        self.use_current = bool(np.any(np.asarray(alpha) != 0))
        self.reset, self.surrogate_alpha = reset, surrogate_alpha
        self.reset_delay = bool(reset_delay) and reset == "subtract"

    @classmethod
    def from_node(cls, node: ir.LIF, fmt: NeuronFormat, exact: bool = True) -> FixedPointLIF:
        return cls(fmt, node.beta, node.threshold, node.alpha, node.reset, exact=exact,
                   reset_delay=node.reset_delay)

    def forward(self, x: torch.Tensor, return_state: bool = False):
        """Spikes (T, B, ...); with ``return_state`` also the membrane codes after each step's reset."""
        gen = self._generator()
        xq = self._input_codes(x, gen)
        like = xq[0]
        kernel = FixedPointKernel(self, gen, broadcast_to_features(self.beta_code, like),
                                  broadcast_to_features(self.thr_code, like),
                                  broadcast_to_features(self.alpha_code, like) if self.use_current else None,
                                  self.reset, self.reset_delay, needs_grad(x), self.surrogate_alpha)
        res = kernel.run(xq, record_state=return_state)
        if return_state:
            return res[0].to(x.dtype), res[1]
        return res.to(x.dtype)

    def dequantized(self) -> dict[str, float | np.ndarray]:
        """beta, threshold and alpha as the values the integer unit realizes."""
        one = 2 ** self.fmt.decay_bits
        return {"beta": _value(self.beta_code / one), "threshold": _value(self.thr_code * self.fmt.lsb),
                "alpha": _value(self.alpha_code / one) if self.use_current else 0.0}


class FixedPointLI(_FixedPointBase):
    """Leaky-integrator readout in integer arithmetic; outputs ``v * lsb``."""

    def __init__(self, fmt: NeuronFormat, beta=1.0, exact: bool = False):
        super().__init__(fmt, beta, exact, torch.Generator().manual_seed(fmt.seed))

    @classmethod
    def from_node(cls, node: ir.LI, fmt: NeuronFormat, exact: bool = True) -> FixedPointLI:
        return cls(fmt, node.beta, exact=exact)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        gen = self._generator()
        xq = self._input_codes(x, gen)
        kernel = FixedPointKernel(self, gen, broadcast_to_features(self.beta_code, xq[0]), grad=needs_grad(x))
        return (kernel.run(xq, spiking=False) * self.fmt.lsb).to(x.dtype)

    def dequantized(self) -> dict[str, float | np.ndarray]:
        return {"beta": _value(self.beta_code / 2 ** self.fmt.decay_bits)}


def neuron_precision(node: ir.Node, fmt: NeuronFormat) -> dict[str, int]:
    """The ``node.precision`` entries of a neuron layer in format ``fmt``."""
    prec = {"membrane": fmt.bits, "current": fmt.bits, "beta": fmt.decay_bits}
    if isinstance(node, ir.LIF):
        prec.update(threshold=fmt.bits, alpha=fmt.decay_bits)
    return prec


def fixed_point_module(node: ir.Node, fmt: NeuronFormat, exact: bool = True) -> nn.Module:
    if isinstance(node, ir.LIF):
        return FixedPointLIF.from_node(node, fmt, exact)
    if isinstance(node, ir.LI):
        return FixedPointLI.from_node(node, fmt, exact)
    raise QuantError(f"layer '{node.name}': no fixed-point model for layer type '{node.kind}'")


def formats_of(graph: ir.Graph) -> dict[str, NeuronFormat]:
    """Neuron formats recorded in a quantized graph's ``meta["quant"]``."""
    quant = graph.meta.get("quant") or {}
    return {name: NeuronFormat.from_dict(d) for name, d in (quant.get("neurons") or {}).items()}


def quantized_net(graph: ir.Graph):
    """A SpikingNet of a quantized graph, its neurons replaced by fixed-point modules.

    Synapses keep plain float modules: their weights already lie on the grid.
    """
    from deploy.core.net import SpikingNet

    net = SpikingNet(graph)
    for name, fmt in formats_of(graph).items():
        net.layers[name] = fixed_point_module(net.graph[name], fmt)
    return net
