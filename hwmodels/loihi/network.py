"""The mapped network: Loihi populations (CUBA LIF) joined by Dense/Conv connections.

Everything here is integer and in Lava's units, so the two execution paths
(:mod:`hwmodels.loihi.reference` and :mod:`hwmodels.loihi.lava_backend`) and the
netx export read the same numbers:

- a population is one Lava ``LIF`` process (bit-accurate CUBA model): scalar
  ``du``, ``dv``, ``vth``, per-neuron ``bias_mant`` with one ``bias_exp``; it
  receives input from step ``start`` on (its depth: the number of synaptic hops
  from the input), and its bias is switched on at that step too;
- a connection is one Lava ``Dense`` (weights ``(out, in)`` in torch C-H-W
  order, ``weight_exp``, ``num_weight_bits``, ``sign_mode``), a ``DelayDense``
  when ``delay > 0`` (residual paths that skip layers), or a ``Conv`` (torch
  kernel layout ``(out, in/groups, kh, kw)``, exponent already folded into the
  integers because Lava's Conv model ignores ``weight_exp``).

:func:`lava_dense_weights` reproduces what ``PyDenseModelBitAcc`` does to the
weights on its first step (clip to 8 bits for the sign mode, then truncate to
``num_weight_bits``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

INPUT = "input"
#: Lava's ``SignMode`` values
MIXED, EXCITATORY, INHIBITORY = 1, 2, 3
SIGN_NAMES = {MIXED: "mixed", EXCITATORY: "excitatory", INHIBITORY: "inhibitory"}


def sign_mode_of(w: np.ndarray) -> int:
    """Lava's ``determine_sign_mode``: excitatory if no weight is negative,
    inhibitory if none is positive, mixed otherwise."""
    if w.size == 0 or np.min(w) >= 0:
        return EXCITATORY
    if np.max(w) <= 0:
        return INHIBITORY
    return MIXED


def weight_grid(num_weight_bits: int, sign_mode: int) -> tuple[int, int, int]:
    """(step, min, max) of the integer weights Lava keeps for a sign mode and width."""
    mixed = int(sign_mode == MIXED)
    step = 1 << (8 - num_weight_bits + mixed)
    if sign_mode == MIXED:
        return step, -256, 256 - step
    if sign_mode == EXCITATORY:
        return step, 0, 256 - step
    return step, -(256 - step), 0


def lava_dense_weights(w: np.ndarray, num_weight_bits: int, sign_mode: int) -> np.ndarray:
    """The weights ``PyDenseModelBitAcc`` uses: ``clip_weights`` (8 bits) then
    ``truncate_weights`` (``num_weight_bits``), as in ``lava.utils.weightutils``."""
    w = np.asarray(w).astype(np.int64)
    mixed = int(sign_mode == MIXED)
    inhib = sign_mode == INHIBITORY
    if inhib:
        w = -w
    w = np.clip(w, -256 * mixed, 255)
    n = 8 - num_weight_bits + mixed
    w = (w >> n) << n
    return -w if inhib else w


@dataclass
class Connection:
    """One synaptic layer (a Lava Dense, DelayDense or Conv process)."""

    name: str                       # graph node that owns its activity (last synapse node, or the add)
    nodes: list[str]                # graph nodes folded into it
    source: str                     # population name or INPUT
    target: str                     # population name
    kind: str                       # "dense" | "conv"
    weight: np.ndarray              # integers as handed to Lava (see module docstring)
    in_shape: tuple[int, ...]
    out_shape: tuple[int, ...]
    weight_exp: int = 0             # dense: Lava's weight_exp; conv: the exponent folded into ``weight``
    num_weight_bits: int = 8
    sign_mode: int = MIXED
    stride: tuple[int, int] = (1, 1)
    padding: tuple[int, int] = (0, 0)
    dilation: tuple[int, int] = (1, 1)
    groups: int = 1
    delay: int = 0                  # extra steps beyond the one every Lava connection adds
    graded: bool = False            # graded (integer-valued) input messages
    error: dict[str, float] = field(default_factory=dict)

    def effective_weight(self) -> np.ndarray:
        """Integer weights after Lava's own processing, in a_in units (dense exponent not applied)."""
        if self.kind == "conv":
            return np.asarray(self.weight, dtype=np.int64)
        return lava_dense_weights(self.weight, self.num_weight_bits, self.sign_mode)


@dataclass
class Population:
    """One Lava LIF process (bit-accurate CUBA)."""

    name: str
    shape: tuple[int, ...]          # torch layout: (C, H, W) or (n,)
    vth: int
    du: int
    dv: int
    bias_mant: np.ndarray           # int, per neuron, shape ``shape``
    bias_exp: int
    start: int                      # first step with input; the bias is on from here
    reset: str = "zero"             # what the graph asked for (Loihi always resets to zero)
    error: dict[str, float] = field(default_factory=dict)

    @property
    def size(self) -> int:
        return int(np.prod(self.shape))

    def effective_bias(self) -> np.ndarray:
        """``bias_mant << bias_exp`` as Lava's ``scale_bias`` computes it (int64)."""
        b = np.asarray(self.bias_mant, dtype=np.int64)
        return b << self.bias_exp if self.bias_exp >= 0 else b >> -self.bias_exp


@dataclass
class LoihiNetwork:
    """A graph converted to Loihi fixed point: populations in topological order."""

    input_shape: tuple[int, ...]
    timesteps: int
    encoding: str
    input_scale: int                # direct encoding: x_q = round(x * input_scale); spikes: 1
    populations: list[Population]
    connections: list[Connection]
    output: str
    notes: list[str] = field(default_factory=list)
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def steps(self) -> int:
        """Lava steps per sample: the input window plus the pipeline depth of the output."""
        return self.timesteps + self.population(self.output).start

    @property
    def graded_input(self) -> bool:
        return self.encoding == "direct"

    def population(self, name: str) -> Population:
        for p in self.populations:
            if p.name == name:
                return p
        raise KeyError(name)

    def incoming(self, name: str) -> list[Connection]:
        return [c for c in self.connections if c.target == name]

    def outgoing(self, name: str) -> list[Connection]:
        return [c for c in self.connections if c.source == name]

    def shape_of(self, name: str) -> tuple[int, ...]:
        return tuple(self.input_shape) if name == INPUT else self.population(name).shape

    def start_of(self, name: str) -> int:
        return 0 if name == INPUT else self.population(name).start


def encode_input(net: LoihiNetwork, x: Any, generator: Any = None) -> Any:
    """Integer input messages, time-major ``(steps, B, *input_shape)`` (int64 torch tensor).

    Direct encoding: the analog value is quantized to ``round(x * input_scale)``
    and sent as a graded message every step of the input window. Spike
    encodings (rate, latency, events) send their spikes. Steps past the input
    window carry zeros so that deeper layers finish their window.
    """
    import torch

    from deploy.core.encoding import encode
    from deploy.core.errors import DataError

    try:
        s = encode(x, net.timesteps, net.encoding, generator)
    except ValueError as exc:
        raise DataError(f"input does not fit the mapped network: {exc}") from None
    q = torch.round(s * net.input_scale).to(torch.int64) if net.graded_input else (s != 0).to(torch.int64)
    pad = torch.zeros(net.steps - net.timesteps, *q.shape[1:], dtype=torch.int64)
    return torch.cat([q, pad])

