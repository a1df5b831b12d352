"""Uniform quantizers: rounding modes, integer grids, scales and straight-through estimators.

A value ``x`` is stored as an integer code ``q = clamp(R(x / scale), qmin, qmax)``
and read back as ``q * scale``. ``R`` is one of the rounding modes

- ``truncation``: drop the fraction bits, ``floor(x)`` (an arithmetic right
  shift in two's complement, so negative values move towards -inf);
- ``nearest``: ``floor(x + 1/2)`` (add half an LSB, then truncate; ties go up);
- ``stochastic``: ``floor(x + u)`` with ``u ~ U[0, 1)`` from a seeded generator,
  so ``E[R(x)] = x``.

Scales are either *scale-based* (``max|x| / qmax`` per tensor or per output
channel, symmetric narrow range as Brevitas' ``Int8Weight*Float``) or
*fixed-point* (a power of two ``2**-frac_bits``: integer + fraction bits).
Signed 1-bit codes are binary, ``{-1, +1}`` times ``mean|x|``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from deploy.core.errors import DeployError

ROUNDING = ("truncation", "nearest", "stochastic")
SCHEMES = ("scale", "fixed")
MAX_BITS = 32


class QuantError(DeployError):
    """Invalid quantization setting (bit width, rounding mode, empty search space, ...)."""


def check_bits(bits: int, what: str = "bit width") -> int:
    """``bits`` as an int in 1..32, or a :class:`QuantError` naming ``what``."""
    if isinstance(bits, bool) or not isinstance(bits, (int, float)) or int(bits) != bits:
        raise QuantError(f"{what} must be an integer, got {bits!r}")
    if not 1 <= int(bits) <= MAX_BITS:
        raise QuantError(f"{what} must lie in 1..{MAX_BITS}, got {int(bits)}")
    return int(bits)


def check_rounding(mode: str) -> str:
    if mode not in ROUNDING:
        raise QuantError(f"unknown rounding mode {mode!r} (choose from {', '.join(ROUNDING)})")
    return mode


def snap(x: torch.Tensor, rel: float = 1e-6) -> torch.Tensor:
    """Values within float32 noise (``rel`` of their size) of an integer, set to that integer.

    Applied to ``x / scale`` before rounding, so that a value already on the grid
    does not truncate to the code below. Not for exact integer arithmetic.
    """
    r = torch.round(x)
    return torch.where((x - r).abs() <= rel * r.abs().clamp(min=1), r, x)


def round_values(x: torch.Tensor, mode: str, generator: torch.Generator | None = None) -> torch.Tensor:
    """Round ``x`` to integers with ``mode`` (no gradient handling)."""
    if mode == "truncation":
        return torch.floor(x)
    if mode == "nearest":
        return torch.floor(x + 0.5)
    if mode == "stochastic":
        u = torch.rand(x.shape, generator=generator, dtype=x.dtype, device=x.device)
        return torch.floor(x + u)
    raise QuantError(f"unknown rounding mode {mode!r} (choose from {', '.join(ROUNDING)})")


class _RoundSTE(torch.autograd.Function):
    """Rounding forward, identity backward (the straight-through estimator)."""

    @staticmethod
    def forward(ctx, x, mode, generator):
        return round_values(x, mode, generator)

    @staticmethod
    def backward(ctx, grad):
        return grad, None, None


def round_ste(x: torch.Tensor, mode: str, generator: torch.Generator | None = None) -> torch.Tensor:
    """Round with ``mode``; the gradient passes straight through."""
    if not x.requires_grad:
        return round_values(x, mode, generator)
    return _RoundSTE.apply(x, mode, generator)


def int_range(bits: int, signed: bool = True, narrow: bool = True) -> tuple[int, int]:
    """(qmin, qmax) of a ``bits``-wide code. ``narrow`` drops -2**(b-1) so the grid is symmetric."""
    bits = check_bits(bits)
    if not signed:
        return 0, 2 ** bits - 1
    if bits == 1:
        return -1, 1
    top = 2 ** (bits - 1) - 1
    return (-top if narrow else -top - 1), top


def _reduce_dims(x: torch.Tensor, per_channel: bool) -> tuple[int, ...]:
    return tuple(range(1, x.dim())) if per_channel and x.dim() > 1 else tuple(range(x.dim()))


def _view(scale: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """Broadcast a per-tensor () or per-channel (C,) scale against ``x`` (C, ...)."""
    return scale.view(-1, *[1] * (x.dim() - 1)) if scale.dim() == 1 and x.dim() > 1 else scale


@dataclass(frozen=True)
class QuantSpec:
    """How one tensor is quantized.

    ``scheme="scale"``: float scale ``max|x| / qmax`` (per tensor or per output
    channel); ``scheme="fixed"``: power-of-two scale ``2**-frac_bits`` with
    ``frac_bits`` given or chosen as the largest that still holds ``max|x|``.
    """

    bits: int
    signed: bool = True
    per_channel: bool = False
    rounding: str = "nearest"
    scheme: str = "scale"
    frac_bits: int | None = None
    narrow: bool = True

    def __post_init__(self):
        check_bits(self.bits)
        check_rounding(self.rounding)
        if self.scheme not in SCHEMES:
            raise QuantError(f"unknown scale scheme {self.scheme!r} (choose from {', '.join(SCHEMES)})")

    @property
    def qrange(self) -> tuple[int, int]:
        return int_range(self.bits, self.signed, self.narrow and self.scheme == "scale")

    @property
    def binary(self) -> bool:
        return self.signed and self.bits == 1


def fixed_point_format(max_abs: float, bits: int, signed: bool = True) -> tuple[int, int]:
    """(integer bits, fraction bits) of the finest power-of-two grid holding ``max_abs``.

    ``integer + fraction (+ 1 sign bit) == bits``; either may be negative when the
    values are far from 1.
    """
    bits = check_bits(bits)
    qmax = int_range(bits, signed, narrow=False)[1]
    if max_abs <= 0 or qmax == 0:
        return bits - int(signed), 0
    frac = math.floor(math.log2(qmax / max_abs))
    return bits - int(signed) - frac, frac


def compute_scale(x: torch.Tensor, spec: QuantSpec) -> torch.Tensor:
    """Scale of ``x`` under ``spec``: shape () per tensor, (C,) per channel."""
    dims = _reduce_dims(x, spec.per_channel)
    xd = x.detach()
    if spec.binary:
        scale = xd.abs().mean(dim=dims)
        return torch.where(scale > 0, scale, torch.ones_like(scale))
    max_abs = xd.abs().amax(dim=dims) if spec.signed else xd.clamp(min=0).amax(dim=dims)
    qmax = spec.qrange[1]
    if spec.scheme == "fixed":
        if spec.frac_bits is not None:
            return torch.full_like(max_abs, 2.0 ** -spec.frac_bits)
        frac = torch.floor(torch.log2(qmax / max_abs.clamp(min=1e-30)))
        return torch.where(max_abs > 0, 2.0 ** -frac, torch.ones_like(max_abs))
    scale = max_abs / qmax
    return torch.where(scale > 0, scale, torch.ones_like(scale))


def quantize(x: torch.Tensor, spec: QuantSpec, scale: torch.Tensor | None = None,
             generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Integer codes (as a float tensor) and the scale: ``x ~ codes * scale``."""
    scale = compute_scale(x, spec) if scale is None else torch.as_tensor(scale, dtype=x.dtype)
    xs = x / _view(scale, x)
    if spec.binary:
        if spec.rounding == "stochastic":  # P(+1) = (1 + x/s) / 2, clipped
            p = ((xs + 1) / 2).clamp(0, 1)
            u = torch.rand(x.shape, generator=generator, dtype=x.dtype, device=x.device)
            return torch.where(u < p, 1.0, -1.0).to(x.dtype), scale
        return torch.where(xs >= 0, 1.0, -1.0).to(x.dtype), scale
    qmin, qmax = spec.qrange
    return round_values(snap(xs), spec.rounding, generator).clamp(qmin, qmax), scale


def dequantize(codes: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    return codes * _view(scale, codes)


def fake_quantize(x: torch.Tensor, spec: QuantSpec, scale: torch.Tensor | None = None,
                  generator: torch.Generator | None = None) -> torch.Tensor:
    """Quantize-dequantize with a clipped straight-through gradient.

    The gradient is 1 where ``x`` lies inside the representable range and 0 where
    it was clipped; the scale gets no gradient (statistics, not learned).
    """
    scale = compute_scale(x, spec) if scale is None else torch.as_tensor(scale, dtype=x.dtype)
    s = _view(scale.detach(), x)
    if spec.binary:
        codes, _ = quantize(x.detach(), spec, scale, generator)
        return x + (codes * s - x).detach()
    qmin, qmax = spec.qrange
    xs = x / s
    xs = xs + (snap(xs.detach()) - xs.detach())
    return round_ste(xs, spec.rounding, generator).clamp(qmin, qmax) * s


class Quantizer(torch.nn.Module):
    """Module form of :func:`fake_quantize` for building quantized layers; seeded when stochastic."""

    def __init__(self, spec: QuantSpec, seed: int = 0):
        super().__init__()
        self.spec, self.seed = spec, seed
        self.generator = torch.Generator().manual_seed(seed)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return fake_quantize(x, self.spec, generator=self.generator)

    def extra_repr(self) -> str:
        s = self.spec
        return (f"bits={s.bits}, signed={s.signed}, per_channel={s.per_channel}, "
                f"rounding={s.rounding}, scheme={s.scheme}")
