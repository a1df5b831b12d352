"""Functional crossbar simulation: drop-in replacements for a SpikingNet's synapses.

One synaptic layer applied to ``(T*B, ...)`` inputs, vectorized over arrays,
batch and time:

1. analog inputs become ``input_bits`` binary bit-planes (stacked on the batch axis);
2. the partial sums of every (row tile, column group, output) column are one
   grouped convolution (one group per row tile, channels-last) or one batched
   matmul with the bit-sliced digits and the row-tiled input;
3. each column's partial sum is converted: the 1-bit sense amplifier fires when
   it exceeds the reference ``step / 2``, an N-bit ADC outputs
   ``clamp(ceil(p / step - 1/2), 0, 2**N - 1)`` (flash references at
   ``(i - 1/2) * step``); the output is ``step * code``. The ``-step/2`` offset is
   the convolution's bias and the conversion runs in place. For conv layers
   with ideal (integer) cells and 1-bit sense amplifiers, the partial sums and
   the comparison are one int8 convolution instead: the integer partial sum
   ``acc`` fires when ``acc - floor(reference) >= 1``, which the convolution's
   requantization (bias ``-floor(reference)``, output scale 1/255, saturation
   at 0 and 255) turns into exactly 0 or 255 without storing the sums; the
   output bytes, summed over the row tiles, count the firing tiles of each
   (group, output) column. This path runs over chunks of frames, and analog
   frames repeated at every timestep (direct encoding) are computed once;
4. the digital periphery shift-adds the codes across slices, polarities and row
   tiles (one matmul with the coefficients ``+-L**k * step``; when every partial
   sum is exact in float32, as with power-of-two steps, the codes times each
   coefficient are added instead, the same bits), recombines bit-planes,
   subtracts the offset dummy, applies the per-output weight scale and the bias;
   the LIF layer that follows is the SpikingNet's own.

In training mode the same forward runs on float weights with straight-through
gradients (weight rounding, bit-slicing) and an LSQ-style gradient for the
conversion step, so hardware-aware retraining sees exactly the deployed
quantization.
"""

from __future__ import annotations

import math
from collections import defaultdict
from fractions import Fraction

import torch
import torch.nn.functional as F
from torch import nn

from deploy.core import ir
from deploy.core.errors import TargetError
from deploy.core.net import SpikingNet
from hwmodels.imc.config import ImcConfig
from hwmodels.imc.mapping import ImcMapping, LayerMap, _fanout
from hwmodels.imc.nonideal import add_read_noise, program
from hwmodels.imc.slicing import slice_codes

#: at most this many partial-sum values in one calibration pass (about 256 MB in float32)
PSUM_BUDGET = 2 ** 26
#: the int8 sense-amplifier path runs over chunks of frames of about this many firing counts (16 MB in float32)
SENSE_CHUNK = 2 ** 22


def _int8_conv_available() -> bool:
    return torch.backends.quantized.engine != "none"


def _columns(p: torch.Tensor) -> torch.Tensor:
    """A grouped-conv output (N, columns, H, W) as (N, columns, positions), without copying."""
    if p.is_contiguous():   # channels-first output (a single input channel): keep it so
        return p.view(p.shape[0], p.shape[1], -1)
    return p.permute(0, 2, 3, 1).reshape(p.shape[0], -1, p.shape[1]).transpose(1, 2)


def _raw_codes(q: torch.Tensor) -> torch.Tensor:
    """The uint8 codes of a quint8 tensor as a view of its storage (``int_repr`` copies)."""
    return torch.empty(0, dtype=torch.uint8, device=q.device).set_(q.untyped_storage(), q.storage_offset(),
                                                                    q.shape, q.stride())


def _count_fired(fired: torch.Tensor, tiles: int) -> torch.Tensor:
    """Sense-amplifier outputs (N, tiles*columns, H, W), 0 or 255 per (tile, column), as the number
    of firing tiles per column (N, columns, H, W), channels-last when ``fired`` is."""
    planes = fired.unflatten(1, (tiles, -1))
    if tiles >= 256:
        return torch.bitwise_right_shift(planes, 7).sum(1, dtype=torch.int32)
    # in uint8: 255 * k = -k (mod 256)
    if tiles > 3 and fired.is_contiguous(memory_format=torch.channels_last):   # one pass over the tiles
        n, _, h, w = fired.shape
        count = fired.permute(0, 2, 3, 1).reshape(n * h * w, tiles, -1).sum(1, dtype=torch.uint8)
        return count.neg_().view(n, h, w, -1).permute(0, 3, 1, 2)
    count = planes[:, 0].clone()                    # few tiles: a sum of byte planes
    for t in range(1, tiles):
        count.add_(planes[:, t])
    return count.neg_()


def _exact_terms(coef: torch.Tensor, top: int) -> list[float] | None:
    """``coef`` as floats when sums of up to ``top`` times each coefficient are exact in float32,
    whatever the order: all are integer multiples of one power of two, ``2**e``, and ``top`` times
    the sum of their magnitudes stays below ``2**24 * 2**e``. Otherwise None."""
    vals = coef.tolist()
    parts = [Fraction(v) for v in vals if v]
    if not parts:
        return vals
    e = min((f.numerator & -f.numerator).bit_length() - f.denominator.bit_length() for f in parts)
    if e < -100 or top * sum(abs(f) for f in parts) >= Fraction(2) ** (24 + e):
        return None
    return vals


class PsumQuant(torch.autograd.Function):
    """``step * clamp(ceil(p / step - 1/2), 0, qmax)``; straight-through for ``p`` inside
    the range, LSQ gradient for ``step`` (Esser et al., ICLR 2020). Written with few
    temporaries: the partial-sum tensors are the largest of the whole network."""

    @staticmethod
    def forward(ctx, p, step, qmax: int, gscale: float):
        ctx.save_for_backward(p, step)
        ctx.qmax, ctx.gscale = qmax, gscale
        return p.div(step).sub_(0.5).ceil_().clamp_(0, qmax).mul_(step)

    @staticmethod
    def backward(ctx, grad):
        p, step = ctx.saved_tensors
        x = p.div(step)
        inside = x.le(ctx.qmax).logical_and_(x.ge(0))
        g_p = grad.mul(inside)
        xc = x.clamp_(0, ctx.qmax)
        d = xc.sub(0.5).ceil_().clamp_(min=0).sub_(xc.mul_(inside))   # code - x inside, qmax above, 0 below
        g_step = d.mul_(grad).sum_to_size(step.shape) * ctx.gscale
        return g_p, g_step, None, None


def mse_step(p: torch.Tensor, qmax: int, samples: int = 20000, grid: int = 48) -> float:
    """The conversion step minimizing the squared error of ``p``'s conversion (a sample of it)."""
    flat = p.detach().reshape(-1)
    if flat.numel() > samples:
        idx = torch.randint(0, flat.numel(), (samples,), generator=torch.Generator().manual_seed(0))
        flat = flat[idx]
    top = float(flat.max()) if flat.numel() else 0.0
    if top <= 0:
        return 1.0
    cands = torch.logspace(math.log10(0.25), math.log10(2 * top / max(qmax, 1) + 1.0), grid, dtype=flat.dtype)
    q = torch.clamp(torch.ceil(flat[None] / cands[:, None] - 0.5), 0, qmax) * cands[:, None]
    return float(cands[((q - flat[None]) ** 2).mean(1).argmin()])


def _planes(x: torch.Tensor, bits: int, step: float) -> torch.Tensor:
    """Binary bit-planes (bits, *x.shape) of ``x`` rounded to multiples of ``step``."""
    xq = torch.round(x / step).clamp_(0, 2 ** bits - 1)
    pow2 = (2.0 ** torch.arange(bits, dtype=x.dtype, device=x.device)).view(-1, *[1] * x.dim())
    return torch.remainder(torch.floor(xq.unsqueeze(0) / pow2), 2)


class CrossbarSynapse(nn.Module):
    """A conv2d/linear layer computed by crossbar arrays (same call signature as the torch layer).

    ``mode``: "sim" (programmed cells, conversion, counters), "train" (float weights,
    straight-through gradients) or "floor" (the same tiled partial sums, no conversion:
    the ideal-ADC result and the speed floor).
    """

    def __init__(self, node: ir.Node, lm: LayerMap, cfg: ImcConfig, off_units: float, mode: str = "sim",
                 noise: bool = False, learn_steps: bool = False, generator: torch.Generator | None = None,
                 learn_scale: bool = False):
        super().__init__()
        self.lm, self.cfg, self.sl, self.mode = lm, cfg, lm.slicing, mode
        self.training_mode = mode == "train"
        self.conv = lm.kind == "conv2d"
        self.conv_args = (dict(stride=node.stride, padding=node.padding, dilation=node.dilation)
                          if self.conv else {})
        self.noise, self.off_units = noise, off_units
        self.adc_bits = cfg.adc_bits
        self.calibrate_next = False
        self.timesteps = 1          # frames are (timesteps * batch): set by CrossbarNet
        self.check_input = True     # check that spike inputs are binary (off for a LIF's output)
        self.counts: dict[str, float] = defaultdict(float)
        self._packed: tuple[torch.Tensor, object] | None = None     # (references, prepacked int8 conv)
        self._kron: tuple[tuple[int, torch.dtype], torch.Tensor, torch.Tensor] | None = None
        self.n_tiles, self.unit = lm.row_tiles, lm.tile_units
        self.pad = self.n_tiles * self.unit - lm.in_shape[0]
        self.register_buffer("coefs", self.sl.coefs())
        step = torch.from_numpy(lm.steps.copy())
        trim = (torch.zeros(lm.column_count) if lm.trims is None else torch.from_numpy(lm.trims.copy()))
        if learn_steps:
            self.step, self.trim = nn.Parameter(step), nn.Parameter(trim)
        else:
            self.register_buffer("step", step)
            self.register_buffer("trim", trim)
        bias = None if lm.bias is None else torch.from_numpy(lm.bias.copy())
        scale = torch.from_numpy(lm.scale.copy())
        if self.training_mode:
            shape = (-1,) + (1,) * (node.weight.ndim - 1)
            self.weight = nn.Parameter(torch.from_numpy(lm.codes.copy()) * scale.view(shape))
            self.bias = None if bias is None else nn.Parameter(bias)
            self.weight_scale = nn.Parameter(scale.clone()) if learn_scale else None
            self.register_buffer("scale_floor", 1e-3 * scale if learn_scale else None)  # learned scale stays above
            return
        self.register_buffer("bias", bias)
        self.register_buffer("scale", scale)
        g = slice_codes(torch.from_numpy(lm.codes), self.sl)
        if mode == "sim" and cfg.nonideal.programmed:
            g = program(g, cfg.nonideal, self.sl.levels, off_units, generator)
        self.register_buffer("g", g)
        self.register_buffer("w", self._layout(g))
        self.register_buffer("w_sq", self._layout(g * g) if mode == "sim" and cfg.nonideal.read_noise > 0
                             else None)
        # integer cells and no read noise: the SA conversion can run as int8 convolutions
        self.w_int8 = None
        if self.conv and mode == "sim" and not cfg.nonideal.any and _int8_conv_available():
            self.w_int8 = torch.quantize_per_tensor(self.w, 1.0, 0, torch.qint8)
        self.read_gen = generator
        # per input element (channels last): its fan-out and its summed cell digits over all reads
        col_digits = g.sum(dim=(0, 1)).unsqueeze(0)
        maps = torch.stack([_fanout(lm.kind, node, lm.in_shape, torch.ones_like(col_digits)),
                            _fanout(lm.kind, node, lm.in_shape, col_digits)])
        if self.conv:
            maps = maps.permute(0, 2, 3, 1)
        self.register_buffer("count_maps", maps.reshape(2, -1).t().contiguous())

    # -- layout ---------------------------------------------------------------------
    def g_outs(self) -> int:
        return self.lm.outputs + (1 if self.sl.dummy else 0)

    def _layout(self, g: torch.Tensor) -> torch.Tensor:
        """Digits (groups, out', C, ...) as grouped-conv weights (tiles*groups*out', unit, kh, kw),
        or batched-matmul weights (tiles, unit, groups*out') for linear layers."""
        grp, outs = g.shape[:2]
        if self.pad:
            g = F.pad(g, (0, 0, 0, 0, 0, self.pad) if self.conv else (0, self.pad))
        if self.conv:
            kh, kw = g.shape[-2:]
            w = (g.reshape(grp, outs, self.n_tiles, self.unit, kh, kw).permute(2, 0, 1, 3, 4, 5)
                 .reshape(self.n_tiles * grp * outs, self.unit, kh, kw))
            return w.contiguous(memory_format=torch.channels_last)
        return g.reshape(grp, outs, self.n_tiles, self.unit).permute(2, 3, 0, 1).reshape(
            self.n_tiles, self.unit, grp * outs).contiguous()

    def _tile_input(self, x: torch.Tensor) -> torch.Tensor:
        """The input padded to whole tiles: channels-last (N, tiles*unit, H, W) or (tiles, N, unit)."""
        if self.conv:
            if self.pad:
                out = torch.empty((x.shape[0], x.shape[1] + self.pad, *x.shape[2:]), dtype=x.dtype, device=x.device,
                                  memory_format=torch.channels_last)
                out[:, x.shape[1]:] = 0
                out[:, :x.shape[1]] = x
                return out
            return x.contiguous(memory_format=torch.channels_last)
        if self.pad:
            x = F.pad(x, (0, self.pad))
        return x.reshape(x.shape[0], self.n_tiles, self.unit).transpose(0, 1)

    def _psums(self, xt: torch.Tensor, w: torch.Tensor, bias: torch.Tensor | None = None) -> torch.Tensor:
        """Partial sums (+ bias) of every (tile, group, output) column: (N, tiles*groups*out', positions),
        stored positions-major for conv layers (a view of the channels-last conv output), or
        channels-major when the convolution returns channels-first (a single input channel)."""
        if self.conv:
            return _columns(F.conv2d(xt, w, bias, groups=self.n_tiles, **self.conv_args))
        p = torch.bmm(xt, w) if bias is None else torch.baddbmm(bias.view(self.n_tiles, 1, -1), xt, w)
        return p.transpose(0, 1).reshape(p.shape[1], -1, 1)

    def _sense_int8(self, xt: torch.Tensor, dtype: torch.dtype | None = torch.float32) -> torch.Tensor:
        """How many row tiles' sense amplifiers fire for every (group, output) column:
        (N, groups*out', positions), laid out as :meth:`_psums` with one tile, in ``dtype``
        (None: as counted, bytes up to 255 tiles). Integer arithmetic throughout (binary
        inputs, integer cell digits)."""
        ref = torch.floor(-self._thresholds())         # fires when acc > step/2 - trim
        if self._packed is None or not torch.equal(self._packed[0], ref):   # references changed: repack
            a = self.conv_args                          # pairs already (ir.Conv2d normalizes them)
            self._packed = (ref, torch.ops.quantized.conv2d_prepack(
                self.w_int8, -ref, list(a["stride"]), list(a["padding"]), list(a["dilation"]), self.n_tiles))
        fired = _raw_codes(torch.ops.quantized.conv2d(torch.quantize_per_tensor(xt, 1.0, 0, torch.quint8),
                                                      self._packed[1], 1.0 / 255, 0))      # 0 or 255 (= 1)
        counts = _count_fired(fired, self.n_tiles)
        return _columns(counts if dtype is None else counts.to(dtype))

    def _sense_shift_add(self, xt: torch.Tensor, terms: list[float]) -> torch.Tensor:
        """:meth:`_sense_int8` then the shift-add as :meth:`_exact_reduce` on the integer counts with
        the coefficients ``terms``: bit for bit the GEMM when they are exact (:func:`_exact_terms`);
        otherwise the same sum of a few products in another float32 order (bit-identical on the
        shipped DVSNet), at a third less time than the GEMM with its Kronecker matrix."""
        return self._exact_reduce(self._sense_int8(xt, None), terms, tiles=1)

    def _exact_reduce(self, c: torch.Tensor, exact: list[float], tiles: int) -> torch.Tensor:
        """:meth:`_reduce` of integer codes ``c`` (any dtype): the codes summed over the row tiles,
        then each column group's added times its coefficient. When the coefficients are exact
        (:func:`_exact_terms`) every partial sum is exact, so this equals the GEMM; the output has
        the GEMM's layout."""
        n, _, pos = c.shape
        outs = self.g_outs()
        y = (torch.zeros(n, outs, pos, device=c.device) if self.conv and c.stride(1) != 1 and pos > 1
             else torch.zeros(n, pos, outs, device=c.device).transpose(1, 2))
        if tiles > 1:
            c = c.unflatten(1, (tiles, -1)).sum(1)                 # small integers: exact in float
        for j, term in enumerate(exact):
            if term:
                y.add_(c[:, j * outs:(j + 1) * outs], alpha=term)
        return y

    def _sense_reduce(self, xt: torch.Tensor) -> torch.Tensor:
        """:meth:`_sense_shift_add` of the tiled input ``xt``. Analog frames that repeat at every
        timestep (direct encoding) are computed once; the rest runs over chunks of at most
        :data:`SENSE_CHUNK` counts (temporaries small enough to stay in cache and be reused by the
        allocator). The output is laid out as the one-call :meth:`_reduce` output."""
        t = self.timesteps
        if not self.lm.analog or t < 2 or xt.shape[0] % (t * self.lm.planes):
            return self._chunked_sense_reduce(xt)
        steps = xt.view(self.lm.planes, t, -1, *xt.shape[1:])
        if not torch.equal(steps[:, 1:], steps[:, :1].expand_as(steps[:, 1:])):
            return self._chunked_sense_reduce(xt)
        once = self._chunked_sense_reduce(
            steps[:, 0].reshape(-1, *xt.shape[1:]).contiguous(memory_format=torch.channels_last))
        y = once.new_empty_strided((xt.shape[0], *once.shape[1:]), once.stride())
        y.view(self.lm.planes, t, -1, *once.shape[1:]).copy_(once.view(self.lm.planes, 1, -1, *once.shape[1:]))
        return y

    def _chunked_sense_reduce(self, xt: torch.Tensor) -> torch.Tensor:
        """:meth:`_sense_shift_add` over chunks of frames of ``xt``, into one output."""
        terms, n = (self.coefs * self.step).tolist(), xt.shape[0]
        frames = max(1, SENSE_CHUNK // (self.sl.groups * self.g_outs() * self.lm.positions))
        if frames >= n:
            return self._sense_shift_add(xt, terms)
        y = None
        for i, part in enumerate(xt.split(frames)):
            yp = self._sense_shift_add(part, terms)
            if y is None:
                y = yp.new_empty_strided((n, *yp.shape[1:]), yp.stride())
            y[i * frames:i * frames + len(yp)] = yp
        return y

    def _reduce(self, c: torch.Tensor, coef: torch.Tensor, tiles: int | None = None) -> torch.Tensor:
        """Digital shift-add over tiles and column groups: (N, out', positions). ``tiles=1``:
        ``c`` is already summed over the row tiles."""
        n, _, pos = c.shape
        tiles = tiles or self.n_tiles
        k, outs = tiles * self.sl.groups, self.g_outs()
        kron = self._shift_add_matrix(coef, tiles, c.dtype)
        if self.conv and c.stride(1) != 1 and pos > 1:      # channels-first partial sums
            return torch.matmul(kron.t(), c)
        rows = c.transpose(1, 2).reshape(n * pos, k * outs) if self.conv else c.view(n, k * outs)
        y = rows @ kron
        return y.view(n, pos, outs).transpose(1, 2) if self.conv else y.unsqueeze(-1)

    def _shift_add_matrix(self, coef: torch.Tensor, tiles: int, dtype: torch.dtype) -> torch.Tensor:
        """``kron(coef repeated over tiles, I)``: the shift-add as one GEMM (faster than a batched
        vector product both ways); kept while ``coef`` is unchanged (it changes with the steps)."""
        cached = self._kron
        if (cached is None or cached[0] != (tiles, dtype) or coef.requires_grad
                or not torch.equal(cached[1], coef)):
            kron = torch.kron(coef.repeat(tiles).view(-1, 1), torch.eye(self.g_outs(), dtype=dtype, device=coef.device))
            if coef.requires_grad:
                return kron
            self._kron = cached = ((tiles, dtype), coef.clone(), kron)
        return cached[2]

    # -- forward --------------------------------------------------------------------
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        lm = self.lm
        n = x.shape[0]
        if lm.analog:
            xs = _planes(x, lm.planes, lm.input_step).reshape(lm.planes * n, *x.shape[1:])
        else:
            if self.mode == "sim" and self.check_input and bool(x.ne(0).logical_and_(x.ne(1)).any()):
                raise TargetError(f"layer '{lm.name}': expected binary spikes at its input")
            xs = x
        if self.training_mode:
            y, scale = self._train_forward(xs)
        else:
            y, scale = self._sim_forward(xs), self.scale
        y = y.reshape(y.shape[0], self.g_outs(), *lm.out_shape[1:])
        if lm.planes > 1:
            w = (2.0 ** torch.arange(lm.planes, dtype=y.dtype, device=y.device)) * lm.input_step
            y = torch.tensordot(w, y.view(lm.planes, n, *y.shape[1:]), dims=1)
        if self.sl.dummy:
            y = y[:, :-1] - y[:, -1:]
        shape = (1, -1) + (1,) * (y.dim() - 2)
        if y.requires_grad or scale.requires_grad:
            y = y * scale.view(shape)
            if self.bias is not None:
                y = y + self.bias.view(shape)
        else:                               # y is this call's own tensor: scaled in place
            y.mul_(scale.view(shape))
            if self.bias is not None:
                y.add_(self.bias.view(shape))
        if self.training_mode and lm.analog and x.requires_grad:
            ideal = self._ideal(x)
            y = y + (ideal - ideal.detach())
        return y

    def _thresholds(self) -> torch.Tensor:
        """Conv/matmul bias ``trim - step/2`` of every (tile, group, output) column: the
        partial sum minus the column's SA reference (the first flash reference)."""
        half = (-0.5 * self.step.detach()).view(1, -1, 1).expand(self.n_tiles, -1, self.g_outs())
        return (half.reshape(-1) + self.trim.detach()).contiguous()

    def _sim_forward(self, xs: torch.Tensor) -> torch.Tensor:
        xt = self._tile_input(xs)
        if self.mode == "sim":
            self._count(xt)
        if self.mode == "floor":
            return self._reduce(self._psums(xt, self.w), self.coefs)
        qmax = 2 ** self.adc_bits - 1
        if self.calibrate_next:
            self.calibrate(self._psums(xt, self.w), qmax)
        if qmax == 1 and self.w_int8 is not None and xt.device.type == "cpu":   # int8 kernels: CPU only
            return self._sense_reduce(xt)
        p = self._psums(xt, self.w, self._thresholds())             # p - step/2
        if self.w_sq is not None:
            p = add_read_noise(p, self._psums(xt, self.w_sq), self.cfg.nonideal.read_noise, self.read_gen)
        if qmax == 1:
            c = p.gt_(0)                                           # the sense amplifier, in place
        else:
            step = self.step.view(1, -1, 1).expand(self.n_tiles, -1, self.g_outs()).reshape(1, -1, 1)
            c = p.div_(step).ceil_().clamp_(0, qmax)               # flash ADC: thresholds (i - 1/2) * step
        coef = self.coefs * self.step
        exact = _exact_terms(coef, self.n_tiles * qmax)
        return self._reduce(c, coef) if exact is None else self._exact_reduce(c, exact, self.n_tiles)

    @torch.no_grad()
    def calibrate(self, p: torch.Tensor, qmax: int) -> None:
        """Set each column group's step to the MSE-optimal one for these partial sums."""
        n = p.shape[0]
        cols = p.reshape(n, self.n_tiles, self.sl.groups, -1) if not self.conv else \
            p.transpose(1, 2).reshape(-1, self.n_tiles, self.sl.groups, self.g_outs())
        for j in range(self.sl.groups):
            self.step.data[j] = mse_step(cols[:, :, j], qmax)
        self.calibrate_next = False

    def _count(self, xt: torch.Tensor) -> None:
        lm = self.lm
        n = xt.shape[0] if self.conv else xt.shape[1]
        flat = (xt.permute(0, 2, 3, 1)[..., :lm.in_shape[0]] if self.conv else
                xt.transpose(0, 1).reshape(n, -1)[:, :lm.in_shape[0]]).reshape(n, -1)
        sums = (flat @ self.count_maps).sum(0)
        reads = n * lm.positions
        c = self.counts
        c["reads"] += reads
        c["array_reads"] += reads * lm.arrays
        c["conversions"] += reads * lm.row_tiles * lm.columns
        c["row_activations"] += float(sums[0]) * lm.col_tiles
        c["active_cells"] += float(sums[0]) * lm.columns
        c["cell_current_units"] += float(sums[1])

    # -- training ------------------------------------------------------------------
    def quantized_weight(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(codes with a straight-through gradient, per-output scale) of the float weight.

        The scale is max(|w|) / qmax per output, or the learned ``weight_scale`` (kept
        above 1/1000 of its initial value) when there is one. The straight-through
        estimator spans rounding and clipping, so a clipped weight keeps its gradient
        and the scale's gradient is ``code - w / scale`` for every weight (LSQ's
        inside the range)."""
        w = self.weight
        dims = tuple(range(1, w.dim()))
        if self.weight_scale is None:
            scale = (w.detach().abs().amax(dim=dims) / self.sl.qmax).clamp(min=1e-12)
        else:
            g = 1.0 / (w[0].numel() * self.sl.qmax) ** 0.5
            s = torch.maximum(self.weight_scale, self.scale_floor)
            scale = s * g + (s - s * g).detach()
        wq = w / scale.view(-1, *[1] * (w.dim() - 1))
        codes = torch.round(wq.detach()).clamp_(self.sl.qmin, self.sl.qmax)
        return codes + (wq - wq.detach()), scale

    def _train_forward(self, xs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        q, scale = self.quantized_weight()
        g = slice_codes(q, self.sl, ste=True)
        ni = self.cfg.nonideal
        if self.noise and ni.programmed:
            g = program(g, ni, self.sl.levels, self.off_units, None)
        xt = self._tile_input(xs)
        p = self._psums(xt, self._layout(g))
        if self.noise and ni.read_noise > 0:
            p = add_read_noise(p, self._psums(xt, self._layout(g.detach() ** 2)), ni.read_noise, None)
        qmax = 2 ** self.adc_bits - 1
        if self.calibrate_next:
            self.calibrate(p.detach(), qmax)
        p = p + self.trim.view(1, -1, 1)
        step = self.step.clamp(min=1e-4).view(1, -1, 1).expand(self.n_tiles, -1, self.g_outs()).reshape(1, -1, 1)
        gscale = 1.0 / (p.numel() / self.sl.groups * qmax) ** 0.5
        return self._reduce(PsumQuant.apply(p, step, qmax, gscale), self.coefs), scale

    def _ideal(self, x: torch.Tensor) -> torch.Tensor:
        """The float layer with the (detached) quantized weights: a gradient path to analog inputs."""
        q, scale = self.quantized_weight()
        w = (q * scale.view(-1, *[1] * (q.dim() - 1))).detach()
        return F.conv2d(x, w, None, **self.conv_args) if self.conv else x @ w.t()

    def pop(self) -> dict[str, float]:
        out, self.counts = dict(self.counts), defaultdict(float)
        return out


class CrossbarNet(SpikingNet):
    """A SpikingNet whose synapses run on the crossbar model; ``pop_counters()``
    reports per-sample array reads, conversions and cell activity per layer."""

    def __init__(self, mapping: ImcMapping, off_units: float, mode: str = "sim", noise: bool = False,
                 learn_steps: bool = False, learn_scales: bool = False):
        super().__init__(mapping.graph)
        self.mapping = mapping
        gen = torch.Generator().manual_seed(int(mapping.config.seed))
        for node in self.graph.synapses():
            self.layers[node.name] = CrossbarSynapse(node, mapping.layers[node.name], mapping.config, off_units,
                                                     mode, noise, learn_steps, gen, learn_scales)
            self.layers[node.name].timesteps = self.graph.timesteps
            self.layers[node.name].check_input = ir.spike_source(self.graph, node.inputs[0]) is None
        self._samples = 0

    def synapses(self) -> list[CrossbarSynapse]:
        return [m for m in self.layers.values() if isinstance(m, CrossbarSynapse)]

    def set_resolution(self, bits: int) -> None:
        """Convert partial sums at ``bits`` (a stage of a progressive retraining schedule)."""
        for m in self.synapses():
            m.adc_bits = int(bits)

    def calibration_samples(self, wanted: int, budget: int = PSUM_BUDGET) -> int:
        """How many samples calibrate the steps: ``wanted``, fewer when the largest layer's partial
        sums (all columns, positions, timesteps and bit-planes) would exceed ``budget`` values."""
        per_sample = max((lm.planes * self.graph.timesteps * lm.row_tiles * lm.columns * lm.positions
                          for lm in self.mapping.layers.values()), default=1)
        return max(1, min(wanted, budget // per_sample))

    @torch.no_grad()
    def calibrate(self, x: torch.Tensor) -> dict[str, list[float]]:
        """Set every layer's conversion steps (SA references) from the partial sums of ``x``,
        layer by layer in one forward pass; returns them by layer."""
        for m in self.synapses():
            m.calibrate_next = True
        self.run(x)
        for m in self.synapses():
            m.pop()
        self._samples = 0
        return {name: m.step.detach().tolist() for name, m in self.layers.items()
                if isinstance(m, CrossbarSynapse)}

    def run(self, x, record=False, generator=None, encoded=False):
        self._samples += int(x.shape[1] if encoded else x.shape[0])
        return super().run(x, record=record, generator=generator, encoded=encoded)

    def pop_counters(self) -> dict[str, dict[str, float]]:
        samples, self._samples = max(self._samples, 1), 0
        out = {}
        for name, m in self.layers.items():
            if isinstance(m, CrossbarSynapse) and m.mode == "sim":
                out[name] = {k: v / samples for k, v in m.pop().items()}
        return out
