"""Float graph -> Loihi fixed point (Lava's bit-accurate CUBA LIF and Dense/Conv).

Units. Per population, one integer threshold ``vth`` stands for the float
threshold of every neuron ``n``, so neuron ``n`` has the scale
``s_n = vth / threshold_n`` (integer units of ``a_in`` per float unit of
current). A float weight ``W`` becomes ``w * 2**weight_exp ~= W * s_n / input_scale``,
a float bias ``b`` (added to ``v`` every step) becomes
``bias_mant << bias_exp ~= 64 * b * s_n`` (Lava shifts ``a_in`` and ``vth`` left by 6,
the bias not), ``beta`` becomes ``dv = round(4096 * (1 - beta))`` and ``alpha``
``du = round(4096 * (1 - alpha)) - 1`` (Lava adds 1 back).

Scale choice. With ``scale=None`` (default) ``vth`` is the largest integer for
which every format holds: ``vth`` in 17 bits, bias mantissas in 13 bits at the
chosen ``bias_exp``, weights in 8-bit mantissas with an exponent in the
allowed range, and the worst-case input of one step (every input at its
maximum, weights of one sign) inside the 24-bit current ``u``. A given
``scale`` fixes ``vth = round(scale * max threshold)``; then any of these can
overflow, which raises :class:`TargetError` naming the parameter and by how
much, or, with ``saturate=True``, clips it with a warning (the current ``u``
then wraps as on the chip).

Quantized graphs. A layer whose synapse node carries ``precision["weight"] <= 8``
and one per-tensor ``weight_scale`` keeps its integer codes exactly: Lava's
``num_weight_bits`` is set to that precision and the scale becomes a power of
two times ``input_scale / weight_scale``.

Direct encoding. Analog inputs in [0, 1] are sent as graded messages
``round(x * (2**input_bits - 1))`` to the first synaptic layer; its weights
absorb the ``1 / input_scale`` factor.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from deploy.core import ir
from deploy.core.errors import TargetError
from hwmodels.loihi.lower import FloatConnection, Lowered
from hwmodels.loihi.network import (
    INPUT,
    MIXED,
    Connection,
    LoihiNetwork,
    Population,
    sign_mode_of,
    weight_grid,
)
from hwmodels.spec import Spec

if TYPE_CHECKING:
    from hwmodels.loihi.options import LoihiOptions

ACT_SHIFT = 6      # Lava left-shifts a_in and vth by 6 (PyLifModelBitAcc.act_shift / vth_shift)
DECAY_UNITY = 4096  # 2**12, Lava's decay_unity


class LoihiOverflowWarning(UserWarning):
    """A parameter was clipped to its fixed-point format (``saturate=True``)."""


@dataclass
class Formats:
    """Fixed-point limits and mapping options."""

    weight_bits: int = 8
    weight_exp_min: int = -8
    weight_exp_max: int = 7
    decay_bits: int = 12
    vth_bits: int = 17
    bias_mant_bits: int = 13
    bias_exp_max: int = 7
    state_bits: int = 24
    max_delay: int = 63
    input_bits: int = 8
    bias_exp: int = 6               # netx convention (netx builds LIF with bias_exp = 6)
    scale: float | None = None      # None: automatic per population
    saturate: bool = False
    netx: bool = False              # dense weight_exp fixed at 0 (exactly exportable to netx)
    strict_reset: bool = False      # refuse reset "subtract" instead of approximating it

    @classmethod
    def from_spec(cls, spec: Spec, options: LoihiOptions) -> Formats:
        """The spec's fixed-point limits with the target's (validated) options applied."""
        f = cls(**{k: int(spec[k]) for k in ("weight_bits", "weight_exp_min", "weight_exp_max", "decay_bits",
                                             "vth_bits", "bias_mant_bits", "bias_exp_max", "state_bits",
                                             "max_delay", "input_bits")})
        if options.input_bits is not None:
            f.input_bits = options.input_bits
        f.bias_exp = options.bias_exp
        f.scale = None if options.scale in (None, "auto") else float(options.scale)
        f.saturate, f.netx, f.strict_reset = options.saturate, options.netx, options.strict_reset
        if f.bias_exp > f.bias_exp_max:
            raise TargetError(f"option 'bias_exp' must lie in 0..{f.bias_exp_max}, got {f.bias_exp}")
        return f

    @property
    def vth_max(self) -> int:
        return (1 << self.vth_bits) - 1

    @property
    def bias_mant_max(self) -> int:
        return (1 << (self.bias_mant_bits - 1)) - 1

    @property
    def decay_max(self) -> int:
        return (1 << self.decay_bits) - 1

    @property
    def u_max(self) -> int:
        return (1 << (self.state_bits - 1)) - 1


class _Overflow:
    """Collects clipped parameters (saturate) or raises on the first overflow."""

    def __init__(self, fmt: Formats, notes: list[str]):
        self.fmt, self.notes = fmt, notes

    def __call__(self, layer: str, what: str, need: float, limit: float, unit: str = "") -> None:
        ratio = abs(need) / limit if limit else math.inf
        msg = (f"layer '{layer}': {what} needs {need:.6g}{unit}, the Loihi format holds at most "
               f"{limit:.6g}{unit} (overflow by {ratio:.3g}x)")
        if not self.fmt.saturate:
            raise TargetError(msg + "; pass option saturate=True to clip it")
        warnings.warn(msg + "; clipped (saturate=True)", LoihiOverflowWarning, stacklevel=3)
        self.notes.append(msg + "; clipped")


def convert(lowered: Lowered, graph: ir.Graph, fmt: Formats) -> LoihiNetwork:
    """Quantize a lowered graph; populations keep the graph's LIF order."""
    notes: list[str] = []
    overflow = _Overflow(fmt, notes)
    graded = graph.encoding == "direct"
    input_scale = (1 << fmt.input_bits) - 1 if graded else 1
    starts: dict[str, int] = {INPUT: 0}
    pops, conns = [], []
    subtract = [lif.name for lif in lowered.lifs if lif.reset == "subtract"]
    if subtract and fmt.strict_reset:
        raise TargetError(f"layer '{subtract[0]}': reset 'subtract' is not available on Loihi (Lava's CUBA "
                          "LIF resets v to 0); retrain with reset 'zero' or drop strict_reset")
    if subtract:
        notes.append(f"Loihi's CUBA LIF resets v to 0 after a spike; layers {', '.join(subtract)} were "
                     "trained with reset 'subtract' and run with reset to zero")
    for lif in lowered.lifs:
        incoming = [fc for fc in lowered.connections if fc.target == lif.name]
        forward = [fc for fc in incoming if not fc.recurrent]
        if not forward:
            raise TargetError(f"layer '{lif.name}': only recurrent input reaches it; nothing drives it")
        start = max(starts[fc.source] + 1 for fc in forward)
        starts[lif.name] = start
        for fc in incoming:
            delay = start - starts[fc.source] - 1 + fc.recurrent  # a recurrent input arrives one step later
            if delay > fmt.max_delay:
                raise TargetError(f"layer '{fc.owner}': the path from '{fc.source}' needs a delay of {delay} "
                                  f"steps to stay aligned, Loihi synapses delay at most {fmt.max_delay}")
            if delay and fc.kind == "conv":
                _to_dense(fc)
        pop, pconns = _population(lif, incoming, lowered.shapes[lif.name], start, starts, input_scale,
                                  graded, fmt, overflow, notes)
        pops.append(pop)
        conns.extend(pconns)
    return LoihiNetwork(input_shape=tuple(graph.input_shape), timesteps=int(graph.timesteps),
                        encoding=graph.encoding, input_scale=input_scale, populations=pops,
                        connections=conns, output=graph.output.name, notes=notes,
                        meta={"graph": graph.name})


def _to_dense(fc: FloatConnection) -> None:
    fc.weight, fc.kind = fc.dense_matrix(), "dense"
    fc.stride, fc.padding, fc.dilation, fc.groups = (1, 1), (0, 0), (1, 1), 1


def _uniform(lif: ir.LIF, key: str, shape: tuple[int, ...]) -> float:
    val = np.asarray(getattr(lif, key), dtype=np.float64)
    if val.size > 1 and np.ptp(val) > 0:
        raise TargetError(f"layer '{lif.name}': {key} differs between neurons; Lava's LIF has one "
                          f"{'dv' if key == 'beta' else 'du'} per population")
    return float(val.reshape(-1)[0])


def _row_stats(fc: FloatConnection, xs: int, n_out: int) -> tuple[np.ndarray, ...]:
    """Per target neuron (integer-input units): sum |W| x max input, largest positive and
    largest negative weight magnitude; plus the scaled weights."""
    w = fc.weight / xs
    flat = w.reshape(w.shape[0], -1)
    stats = [np.abs(flat).sum(1) * xs, np.clip(flat, 0, None).max(1, initial=0),
             np.clip(-flat, 0, None).max(1, initial=0)]
    if fc.kind == "conv":
        stats = [np.repeat(v, n_out // w.shape[0]) for v in stats]
    return (*stats, w)


def _population(lif: ir.LIF, incoming: list[FloatConnection], shape: tuple[int, ...], start: int,
                starts: dict[str, int], input_scale: int, graded: bool, fmt: Formats, overflow: _Overflow,
                notes: list[str]) -> tuple[Population, list[Connection]]:
    n = int(np.prod(shape))
    theta = ir.per_neuron(lif.threshold, shape).astype(np.float64).reshape(-1)
    beta, alpha = _uniform(lif, "beta", shape), _uniform(lif, "alpha", shape)
    for fc in incoming:  # per-neuron thresholds cannot fold into a shared conv kernel
        if fc.kind == "conv" and np.ptp(theta.reshape(shape[0], -1), axis=1).max() > 0:
            _to_dense(fc)
    bias = np.sum([fc.bias for fc in incoming], axis=0)
    if alpha > 0 and np.any(bias != 0):
        bias = bias / (1 - alpha)
        notes.append(f"layer '{lif.name}': the bias enters v directly on Loihi, not through the synaptic "
                     f"current; scaled by 1/(1-alpha) to keep its steady state")
    dv = round(DECAY_UNITY * (1 - beta))
    du = round(DECAY_UNITY * (1 - alpha)) - 1
    if dv > fmt.decay_max:
        overflow(lif.name, f"dv (beta={beta:g})", dv, fmt.decay_max)
        dv = fmt.decay_max
    if du < 0:
        overflow(lif.name, f"1 - du (alpha={alpha:g}; du = {du})", 1 - du, 1)
        du = 0
    growth = DECAY_UNITY / (du + 1)        # steady state of u per unit of input: 1 / (1 - alpha)
    xs = [input_scale if (fc.source == INPUT and graded) else 1 for fc in incoming]
    stats = [_row_stats(fc, x, n) for fc, x in zip(incoming, xs, strict=True)]
    worst = np.sum([s[0] for s in stats], axis=0) * growth
    rel = {"bias": np.abs(bias) / theta, "worst": worst / theta}

    exact = _exact_scale(lif, incoming, theta, xs, fmt, notes)
    vth = _choose_vth(lif.name, incoming, stats, theta, rel, exact, fmt, overflow)
    for _ in range(40):  # rounding can push the worst case past u; shrink a little and retry
        conns, err = _quantize(lif.name, incoming, stats, xs, theta, vth, exact, fmt, overflow)
        u_need = _u_need(conns, n, xs) * growth
        if u_need <= fmt.u_max or fmt.scale is not None or exact is not None:
            break
        vth = max(1, int(vth * 0.98))
    if u_need > fmt.u_max:
        overflow(lif.name, "the worst-case synaptic current (24-bit u)", u_need, fmt.u_max)
    for c, fc in zip(conns, incoming, strict=True):
        c.delay = start - starts[fc.source] - 1 + fc.recurrent
        c.graded = fc.source == INPUT and graded

    s = vth / theta
    b_int = bias * s * (1 << ACT_SHIFT) / (1 << fmt.bias_exp)
    mant = np.round(b_int)
    if np.abs(mant).max(initial=0) > fmt.bias_mant_max:
        overflow(lif.name, f"bias mantissa (bias_exp {fmt.bias_exp})", float(np.abs(mant).max()),
                 fmt.bias_mant_max)
        mant = np.clip(mant, -fmt.bias_mant_max, fmt.bias_mant_max)
    err["bias"] = float(np.max(np.abs(mant * (1 << fmt.bias_exp) / (s * (1 << ACT_SHIFT)) - bias) / theta,
                               initial=0.0))
    err["beta"] = abs((DECAY_UNITY - dv) / DECAY_UNITY - beta)
    err["alpha"] = abs((DECAY_UNITY - du - 1) / DECAY_UNITY - alpha) if alpha > 0 else 0.0
    err["threshold_lsb"] = 1.0 / vth
    pop = Population(name=lif.name, shape=tuple(shape), vth=int(vth), du=int(du), dv=int(dv),
                     bias_mant=mant.astype(np.int64).reshape(shape), bias_exp=fmt.bias_exp, start=start,
                     reset=lif.reset, error=err)
    return pop, conns


def _exact_scale(lif: ir.LIF, incoming: list[FloatConnection], theta: np.ndarray, xs: list[int],
                 fmt: Formats, notes: list[str]) -> dict | None:
    """For a single quantized synapse node: the scale family that keeps its integer codes."""
    quantized = [fc for fc in incoming if fc.precision is not None]
    if not quantized:
        return None
    fc = quantized[0]
    bits, ws = fc.precision, fc.weight_scale
    why = None
    if len(incoming) != 1 or fmt.scale is not None:
        why = "it shares its neurons with other inputs" if len(incoming) != 1 else "a fixed scale was given"
    elif bits > fmt.weight_bits:
        why = f"{bits} bits exceed Loihi's {fmt.weight_bits}"
    elif ws is None or np.size(ws) != 1:
        why = "it has no single per-tensor weight_scale (Lava's LIF has one threshold per population)"
    elif np.ptp(theta) > 0:
        why = "its thresholds differ between neurons"
    else:
        ws = float(np.asarray(ws).reshape(-1)[0])
        codes = fc.weight / ws if ws > 0 else np.full(fc.weight.shape, np.nan)
        lim, ints = 1 << (bits - 1), np.round(codes)
        if not np.all(np.abs(codes - ints) <= 1e-3) or ints.min(initial=0) < -lim or ints.max(initial=0) > lim - 1:
            why = f"its weights are not {bits}-bit multiples of weight_scale"
        else:
            return {"bits": int(bits), "ws": ws, "codes": ints.astype(np.int64), "xs": xs[0], "owner": fc.owner}
    notes.append(f"layer '{fc.owner}': {bits}-bit weights re-quantized to 8 bits for Loihi because {why}")
    return None


def _exp_range(fc: FloatConnection, fmt: Formats) -> tuple[int, int]:
    if fmt.netx and fc.kind == "dense":
        return 0, 0     # netx re-derives the exponent and adds sum(w * s) unshifted: integer weights only
    lo = 0 if fc.kind == "conv" else fmt.weight_exp_min
    return lo, fmt.weight_exp_max


def _choose_vth(name: str, incoming: list[FloatConnection], stats: list, theta: np.ndarray, rel: dict,
                exact: dict | None, fmt: Formats, overflow: _Overflow) -> int:
    """The integer threshold: fixed by ``scale``, or the largest that fits every format."""
    if fmt.scale is not None:
        vth = round(float(theta.max()) * fmt.scale)
        if vth > fmt.vth_max:
            overflow(name, "threshold vth (17-bit)", vth, fmt.vth_max)
            vth = fmt.vth_max
        if vth < 1:
            raise TargetError(f"layer '{name}': threshold {theta.max():g} x scale {fmt.scale:g} rounds to "
                              "vth = 0; use a larger scale")
        return vth
    bounds = {"vth (17-bit)": float(fmt.vth_max)}
    if rel["bias"].max(initial=0) > 0:
        bounds["bias mantissa"] = fmt.bias_mant_max * (1 << fmt.bias_exp) / ((1 << ACT_SHIFT) * rel["bias"].max())
    if rel["worst"].max(initial=0) > 0:
        bounds["24-bit current u"] = 0.995 * fmt.u_max / ((1 << ACT_SHIFT) * rel["worst"].max())
    for fc, (_, pos, neg, _) in zip(incoming, stats, strict=True):
        _, lo, hi = weight_grid(fmt.weight_bits, sign_mode_of(fc.weight))
        room = 2.0 ** _exp_range(fc, fmt)[1]
        top_pos, top_neg = (pos / theta).max(initial=0), (neg / theta).max(initial=0)
        fit = min(hi * room / top_pos if top_pos > 0 else np.inf, -lo * room / top_neg if top_neg > 0 else np.inf)
        if np.isfinite(fit):
            bounds[f"weights of '{fc.owner}'"] = fit
    limit = min(bounds.values())
    if exact is not None:
        step = 2.0 ** (9 - exact["bits"]) * exact["xs"] / exact["ws"]
        lo, hi = _exp_range(incoming[0], fmt)
        fits = [e for e in range(lo, hi + 1) if theta[0] * step * 2.0 ** e <= limit]
        if fits:
            exact["exp"] = max(fits)
            return max(1, round(theta[0] * step * 2.0 ** exact["exp"]))
        overflow.notes.append(f"layer '{exact['owner']}': {exact['bits']}-bit weights re-quantized to 8 bits for Loihi "
                              "because no weight exponent keeps their codes inside the formats")
        exact.clear()
    if limit < 1:
        key = min(bounds, key=bounds.get)
        raise TargetError(f"layer '{name}': no threshold scale fits the Loihi formats ({key} allows "
                          f"vth <= {limit:.3g}, overflow by {1 / limit:.3g}x)")
    return int(math.floor(limit))


def _quantize(name: str, incoming: list[FloatConnection], stats: list, xs: list[int], theta: np.ndarray,
              vth: int, exact: dict | None, fmt: Formats, overflow: _Overflow) -> tuple[list[Connection], dict]:
    """Integer weights of every incoming connection at the threshold ``vth``."""
    s = vth / theta
    conns, err = [], {}
    for fc, x, (*_, w) in zip(incoming, xs, stats, strict=True):
        if exact:
            bits, e = exact["bits"], exact["exp"]
            q = exact["codes"] << (9 - bits)
            mode = MIXED
        else:
            bits = fmt.weight_bits          # re-quantized layers use the full 8-bit mantissa
            mode = sign_mode_of(fc.weight)
            w_int = _scale_rows(w, s, fc)
            q, e = _mantissa(name, fc, w_int, bits, mode, fmt, overflow)
        weight = q << e if fc.kind == "conv" else q
        back = (weight * (2.0 ** e if fc.kind == "dense" else 1.0))
        back = _scale_rows(back, 1 / s, fc) * x
        denom = np.linalg.norm(fc.weight)
        rel = float(np.linalg.norm(back - fc.weight) / denom) if denom else 0.0
        err[f"weight:{fc.owner}"] = rel
        conns.append(Connection(name=fc.owner, nodes=fc.nodes, source=fc.source, target=fc.target,
                                kind=fc.kind, weight=weight.astype(np.int64), in_shape=tuple(fc.in_shape),
                                out_shape=tuple(fc.out_shape), weight_exp=int(e), num_weight_bits=int(bits),
                                sign_mode=int(mode), stride=tuple(fc.stride), padding=tuple(fc.padding),
                                dilation=tuple(fc.dilation), groups=int(fc.groups), error={"weight": rel}))
    return conns, err


def _scale_rows(w: np.ndarray, s: np.ndarray, fc: FloatConnection) -> np.ndarray:
    if fc.kind == "conv":
        per_c = s.reshape(w.shape[0], -1)[:, 0]
        return w * per_c[:, None, None, None]
    return w * s[:, None]


def _mantissa(name: str, fc: FloatConnection, w_int: np.ndarray, bits: int, mode: int, fmt: Formats,
              overflow: _Overflow) -> tuple[np.ndarray, int]:
    """Round ``w_int`` to Lava's weight grid with the smallest exponent that holds it."""
    step, lo, hi = weight_grid(bits, mode)
    e_lo, e_hi = _exp_range(fc, fmt)
    top, bot = float(w_int.max(initial=0)), float(w_int.min(initial=0))

    def fits(e: int) -> bool:
        return top / 2.0 ** e <= hi + step / 2 and bot / 2.0 ** e >= lo - step / 2

    e = next((e for e in range(e_lo, e_hi + 1) if fits(e)), None)
    if e is None:
        e = e_hi
        pos = top / hi if hi > 0 else (np.inf if top > 0 else 0.0)
        neg = bot / lo if lo < 0 else (np.inf if bot < 0 else 0.0)
        need, lim = (top, hi) if pos >= neg else (-bot, -lo)
        overflow(name, f"a weight of '{fc.owner}' ({bits}-bit mantissa x 2^{e_hi})", need, lim * 2.0 ** e_hi,
                 " a_in units")
    q = np.clip(np.round(w_int / 2.0 ** e / step) * step, lo, hi).astype(np.int64)
    return q, e


def _u_need(conns: list[Connection], n: int, xs: list[int]) -> float:
    """Largest |a_in << 6| one step can bring (all inputs at their maximum, one sign)."""
    total_pos = np.zeros(n)
    total_neg = np.zeros(n)
    for c, x in zip(conns, xs, strict=True):
        w = c.effective_weight().astype(np.float64) * (2.0 ** c.weight_exp if c.kind == "dense" else 1.0)
        if c.kind == "conv":
            pos = np.clip(w, 0, None).reshape(w.shape[0], -1).sum(1)
            neg = np.clip(-w, 0, None).reshape(w.shape[0], -1).sum(1)
            reps = n // w.shape[0]
            pos, neg = np.repeat(pos, reps), np.repeat(neg, reps)
        else:
            pos, neg = np.clip(w, 0, None).sum(1), np.clip(-w, 0, None).sum(1)
        total_pos += pos * x
        total_neg += neg * x
    return float(max(total_pos.max(initial=0), total_neg.max(initial=0)) * (1 << ACT_SHIFT))
