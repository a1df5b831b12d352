"""Vectorized bit-exact reference of Lava's fixed-point models, batched over samples.

Reproduces, step for step, what Lava's ``Loihi2SimCfg(select_tag="fixed_pt")``
runs for a :class:`~hwmodels.loihi.network.LoihiNetwork`:

- ``PyDenseModelBitAcc`` / ``PyDelayDenseModelBitAcc``: weights clipped and
  truncated once, ``a = sum(w * s)`` (bool spikes, or graded integers), shifted
  by ``weight_exp`` (arithmetic), sent one step later (plus ``delay``), int32;
- ``PyConvModelFixed``: true integer convolution wrapped to 24 bits, one step later;
- ``PyLifModelBitAcc``: ``u = sign(p)(|p| >> 12) + (a_in << 6)``, ``p = u (4096 - du - 1)``,
  ``u`` wrapped once at +-2^23; ``v = clip(sign(q)(|q| >> 12) + u + (bias_mant << bias_exp))``,
  ``q = v (4096 - dv)``; spike ``v > vth << 6``; ``v = 0`` after a spike; int32
  intermediate arithmetic wraps as numpy's does.

Synaptic layers are stateless, so each runs once on all steps and samples
(one matmul or conv in float64, exact for these integer ranges); only the
neurons loop over time. A population's recurrent Dense (source = target) runs
inside that loop: its spikes of step ``t`` reach its own ``a_in`` at step
``t + 1 + delay``, as the Dense's one-step buffer delivers them in Lava.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import torch
import torch.nn.functional as F

from deploy.core.neurons import NeuronKernel
from hwmodels.loihi.network import INPUT, Connection, LoihiNetwork, Population, lava_dense_weights

DECAY_SHIFT, ACT_SHIFT, UV_BITS = 12, 6, 24
_MAX_UV = 1 << (UV_BITS - 1)


def wrap32(x: torch.Tensor) -> torch.Tensor:
    """Two's-complement int32 wrap-around of int64 values (numpy's silent overflow)."""
    return ((x + (1 << 31)) & 0xFFFFFFFF) - (1 << 31)


def wrap24(x: torch.Tensor) -> torch.Tensor:
    """Lava's ``signed_clamp(x, bits=24)``: modulo wrap into [-2^23, 2^23)."""
    return torch.remainder(x + _MAX_UV, 1 << UV_BITS) - _MAX_UV


def shift_right_toward_zero(x: torch.Tensor, bits: int) -> torch.Tensor:
    """``sign(x) * (|x| >> bits)``, the decay rounding of PyLifModelBitAcc (truncating division)."""
    return torch.div(x, 1 << bits, rounding_mode="trunc")


def _max_sum(conn: Connection, weight: np.ndarray, msg_max: int) -> int:
    """Largest |sum of w * s| any output can receive in one step."""
    per_out = np.abs(weight).reshape(weight.shape[0], -1).sum(1)
    return int(per_out.max(initial=0)) * msg_max


def connection_output(net: LoihiNetwork, conn: Connection, src: torch.Tensor) -> torch.Tensor:
    """What ``conn`` delivers to its target at every step: (steps, B, n_out) int64.

    ``src`` holds the source messages, (steps, B, *source_shape) or flat. The
    sums run in float32 when every partial sum stays below 2^24 (exact), else
    in float64; wrap-arounds are applied only when the bound says they can occur.
    """
    steps, batch = src.shape[:2]
    flat = src.reshape(steps, -1)
    if flat.dtype == torch.bool:
        flat = flat.view(torch.uint8)
    # only the steps that carry a message and arrive within the run are summed
    live = ((flat.amax(1) != 0) | (flat.amin(1) != 0)).nonzero().view(-1) if flat.numel() else flat.new_zeros(0)
    lag = 1 + conn.delay
    lo = int(live[0]) if len(live) else 0
    hi = min(int(live[-1]) + 1 if len(live) else 0, steps - lag)
    if conn.graded:
        part = src[lo:max(hi, lo + 1)]
        msg_max = _abs_max(part)
    else:                                          # spikes: 0/1, converted once to the sum's type below
        part, msg_max = src[lo:max(hi, lo + 1)] != 0, 1
    if conn.kind == "conv":
        weight = conn.weight
    else:
        weight = lava_dense_weights(conn.weight, conn.num_weight_bits, conn.sign_mode)
    bound = _max_sum(conn, weight, msg_max)
    ftype = torch.float32 if bound < 2 ** 24 else torch.float64
    w = torch.from_numpy(np.asarray(weight, dtype=np.float64)).to(ftype)
    n = part.shape[0]
    if conn.kind == "conv":
        x = part.reshape(n * batch, *net.shape_of(conn.source)).to(ftype)
        y = F.conv2d(x, w, None, conn.stride, conn.padding, conn.dilation, conn.groups).reshape(n, batch, -1)
        out = _zeros_outside(steps, batch, y.shape[-1], lo + lag, hi + lag)
        if hi <= lo:
            return out
        if bound < _MAX_UV:                        # exact integer sums (see the bound), cast once
            out[lo + lag:hi + lag].copy_(y[:hi - lo])
            return out
        a = wrap24(y.to(torch.int64))
    else:
        a = torch.round(part.reshape(n, batch, -1).to(ftype) @ w.T).to(torch.int64)
        out = _zeros_outside(steps, batch, a.shape[-1], lo + lag, hi + lag)
        if hi <= lo:
            return out
        if conn.graded and bound >= 2 ** 31:
            a = wrap32(a)
        a = a << conn.weight_exp if conn.weight_exp > 0 else a >> -conn.weight_exp
        bound <<= max(conn.weight_exp, 0)
    if bound >= 2 ** 31:
        a = wrap32(a)
    out[lo + lag:hi + lag] = a[:hi - lo]
    return out


def _zeros_outside(steps: int, batch: int, n: int, lo: int, hi: int) -> torch.Tensor:
    """An int64 (steps, batch, n) tensor, zero outside steps [lo, hi) (the caller fills those)."""
    out = torch.empty(steps, batch, n, dtype=torch.int64)
    if hi <= lo:
        return out.zero_()
    out[:lo] = 0
    out[hi:] = 0
    return out


def synaptic_input(net: LoihiNetwork, pop: Population, messages: dict[str, torch.Tensor],
                   skip: str | None = None) -> torch.Tensor:
    """``a_in`` of a population at every step: the int32 sum of its connections (but those
    from ``skip``)."""
    total = None
    for conn in net.incoming(pop.name):
        if conn.source == skip:
            continue
        a = connection_output(net, conn, messages[conn.source])
        total = a if total is None else wrap32(total + a)
    return total


class LoihiKernel(NeuronKernel):
    """:class:`~deploy.core.neurons.NeuronKernel` in PyLifModelBitAcc's integers: decays
    ``sign(x)(|x| * k >> 12)`` with ``k = 4096 - du - 1`` (current, ``alpha``) and ``4096 - dv``
    (voltage, ``beta``); ``u`` wraps once at +-2^23, ``v`` adds the bias once its layer is live
    (``bias_on``), wraps as int32 and is clipped to 24 bits; reset to zero.

    The int32 wrap-arounds are applied only when ``wraps`` says the range can reach them. The
    state (int64) is updated in place; ``k = 0`` (no memory: ``u`` is the step's input, not a
    copy of it) and ``k = 4096`` (no leak) skip the multiplication, which they leave exact.
    """

    inplace = True

    def __init__(self, ku: int, kv: int, vth: int, bias: torch.Tensor, u_wraps: bool, sum_wraps: bool,
                 v_wraps: bool):
        super().__init__(kv, vth, ku, reset="zero")
        self.bias, self.bias_on = bias, False
        self.has_bias = bool(bias.ne(0).any())
        self.u_wraps, self.sum_wraps, self.v_wraps = u_wraps, sum_wraps, v_wraps

    def decay(self, x, factor):
        if factor == 0:
            return None                     # no memory: integrate_current takes the input as it is
        if factor == 1 << DECAY_SHIFT:
            return x
        return x.mul_(factor).div_(1 << DECAY_SHIFT, rounding_mode="trunc")

    def integrate_current(self, i, x):
        cur = x if i is None else i.add_(x)
        if self.sum_wraps:
            cur = wrap32(cur)
        if not self.u_wraps:
            return cur
        u = torch.where(cur > _MAX_UV, cur - 2 * _MAX_UV, cur)
        return torch.where(u <= -_MAX_UV, cur + 2 * _MAX_UV, u)

    def integrate(self, v, x, r=None):
        v = v.add_(x)
        if self.bias_on and self.has_bias:
            v = v.add_(self.bias)
        if self.v_wraps:
            v = wrap32(v)
        return v.clamp_(-_MAX_UV + 1, _MAX_UV - 1)

    def reset(self, v, s):
        return v.masked_fill_(s, 0)


def lif_run(pop: Population, a_in: torch.Tensor, record_state: bool = False,
            loops: list[Connection] | tuple = ()) -> dict[str, torch.Tensor]:
    """Bit-accurate CUBA LIF over all steps; a_in (steps, B, n) int64 -> spikes (steps, B, n) uint8.

    ``loops``: the population's recurrent dense connections to itself, added to
    ``a_in`` step by step. The int32 wrap-arounds and the 24-bit wrap of ``u`` are
    applied only when the input's range can reach them (checked once, up front;
    always with loops, where wrapping an in-range value changes nothing). Steps before
    the population's ``start`` carry no input and no bias: its state stays zero there.
    """
    steps, batch, n = a_in.shape
    bias = torch.from_numpy(pop.effective_bias().reshape(-1))
    a_max = _abs_max(a_in)
    drive = a_in << ACT_SHIFT
    if a_max << ACT_SHIFT >= 2 ** 31:
        drive = wrap32(drive)
        a_max = _abs_max(drive)
    else:
        a_max <<= ACT_SHIFT
    # |u| < 2^23 holds for ever when the steady state of the largest drive stays inside;
    # otherwise u may wrap (once per step, as in Lava) and grow to the int32 limits
    u_wraps = a_max * (1 << DECAY_SHIFT) / (pop.du + 1) >= _MAX_UV
    sum_wraps = u_wraps or a_max + _MAX_UV >= 2 ** 31
    v_wraps = u_wraps or 3 * _MAX_UV + int(np.abs(pop.effective_bias()).max(initial=0)) >= 2 ** 31
    rec = [(torch.from_numpy(lava_dense_weights(c.weight, c.num_weight_bits, c.sign_mode).astype(np.float64)),
            c.weight_exp, 1 + c.delay) for c in loops]
    if rec:
        u_wraps = sum_wraps = v_wraps = True
    kernel = LoihiKernel((1 << DECAY_SHIFT) - (pop.du + 1), (1 << DECAY_SHIFT) - pop.dv, pop.vth << ACT_SHIFT,
                         bias, u_wraps, sum_wraps, v_wraps)
    state = kernel.init_state(drive[0])
    spikes = torch.zeros(steps, batch, n, dtype=torch.uint8)
    states = {"u": [], "v": []}
    quiet = min(max(pop.start, 0), steps) if not (rec or _abs_max(a_in[:pop.start])) else 0
    for t in range(steps):
        if t < quiet:                       # nothing arrives and the bias is off: u = v = 0, no spike
            if record_state:
                states["u"].append(state["i"].clone())
                states["v"].append(state["v"].clone())
            continue
        d_t = drive[t]
        if rec:
            a_t = a_in[t]
            for w, e, lag in rec:
                if t >= lag:
                    r = torch.round(spikes[t - lag].to(torch.float64) @ w.T).to(torch.int64)
                    a_t = wrap32(a_t + wrap32(r << e if e > 0 else r >> -e))
            d_t = wrap32(a_t << ACT_SHIFT)
        kernel.bias_on = t >= pop.start
        spikes[t] = kernel.step(state, d_t)
        if record_state:
            states["u"].append(state["i"].clone())
            states["v"].append(state["v"].clone())
    out = {"spikes": spikes}
    if record_state:
        out.update({k: torch.stack(val) for k, val in states.items()})
    return out


def _abs_max(x: torch.Tensor) -> int:
    """max |x| (0 for an empty tensor), in one pass."""
    if not x.numel():
        return 0
    lo, hi = torch.aminmax(x)
    return max(-int(lo), int(hi))


def run(net: LoihiNetwork, xq: torch.Tensor, record_state: bool = False,
        timing: str = "layer") -> dict[str, torch.Tensor]:
    """Run all populations on integer inputs ``xq`` (steps, B, *input_shape).

    ``timing`` says when a population's bias switches on: ``"layer"`` (default,
    the mapping's own timing and :func:`~hwmodels.loihi.lava_backend.run_lava`'s)
    at its ``start``, the step its first input arrives; ``"netx"`` at step 0 for
    every population, as the LIFs lava-dl's netx builds from an exported file
    (bias set at construction) run. Input arrival is the same in both: one step
    per synaptic layer.

    Returns ``{name: (steps, B, n) uint8 spikes}`` for every population, plus
    ``"input"`` (the messages, flattened) and, with ``record_state``,
    ``"<name>.u"`` / ``"<name>.v"``.
    """
    if timing not in ("layer", "netx"):
        raise ValueError(f"timing must be 'layer' or 'netx', got {timing!r}")
    if xq.shape[0] != net.steps:
        raise ValueError(f"expected {net.steps} steps of input, got {xq.shape[0]}")
    out: dict[str, torch.Tensor] = {INPUT: xq.reshape(xq.shape[0], xq.shape[1], -1)}
    with torch.no_grad():
        for pop in net.populations:
            loops = [c for c in net.incoming(pop.name) if c.source == pop.name]
            neuron = pop if timing == "layer" else replace(pop, start=0)
            res = lif_run(neuron, synaptic_input(net, pop, out, skip=pop.name), record_state, loops)
            out[pop.name] = res["spikes"]
            if record_state:
                out[f"{pop.name}.u"], out[f"{pop.name}.v"] = res["u"], res["v"]
    return out
