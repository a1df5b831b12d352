"""Integer weight codes and their bit-slices across crossbar columns.

A signed weight code ``q`` (``weight = q * scale``, one scale per output) is
stored either as a *differential* pair of unsigned magnitudes (``q+ - q-``,
``bits - 1`` magnitude bits each) or with an *offset* (``q + 2**(bits-1)``,
``bits`` unsigned bits, minus a dummy column holding the offset in each row
tile). Each unsigned value is cut into digits of ``bits_per_cell`` bits, one
digit per column; slice ``k`` carries weight ``L**k`` (``L = 2**bits_per_cell``)
in the digital shift-add.

Column groups are ordered (polarity, slice): index ``j = pol * n_slices + k``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from deploy.core import ir
from deploy.core.errors import TargetError


@dataclass(frozen=True)
class Slicing:
    """How one layer's weight codes are spread over columns."""

    bits: int
    bits_per_cell: int
    signed: str = "differential"

    @property
    def levels(self) -> int:
        return 2 ** self.bits_per_cell

    @property
    def unsigned_bits(self) -> int:
        return self.bits - 1 if self.signed == "differential" else self.bits

    @property
    def n_slices(self) -> int:
        return math.ceil(self.unsigned_bits / self.bits_per_cell)

    @property
    def n_pol(self) -> int:
        return 2 if self.signed == "differential" else 1

    @property
    def groups(self) -> int:
        """Column groups per output: polarities times slices."""
        return self.n_pol * self.n_slices

    @property
    def qmin(self) -> int:
        return -(2 ** (self.bits - 1) - 1) if self.signed == "differential" else -(2 ** (self.bits - 1))

    @property
    def qmax(self) -> int:
        return 2 ** (self.bits - 1) - 1

    @property
    def offset(self) -> int:
        return 2 ** (self.bits - 1) if self.signed == "offset" else 0

    @property
    def dummy(self) -> bool:
        return self.signed == "offset"

    def coefs(self) -> torch.Tensor:
        """Shift-add weight of every column group: ``+-L**k``."""
        k = torch.arange(self.n_slices, dtype=torch.float64)
        mag = self.levels ** k
        sign = torch.tensor([1.0, -1.0][: self.n_pol], dtype=torch.float64)
        return (sign[:, None] * mag[None, :]).reshape(-1).float()

    def offset_digits(self) -> list[int]:
        """Digits of the offset constant held by the dummy column of each slice."""
        return [(self.offset // self.levels ** k) % self.levels for k in range(self.n_slices)]

    def dummy_columns(self) -> int:
        """Dummy columns per row tile (slices whose offset digit is non-zero)."""
        return sum(d != 0 for d in self.offset_digits()) if self.dummy else 0

    def ste_coefs(self) -> torch.Tensor:
        """Straight-through share of each slice: ``L**k / sum_j L**(2j)``, so that
        sum_k L**k * share_k = 1 (the ideal gradient when no slice saturates)."""
        k = torch.arange(self.n_slices, dtype=torch.float64)
        mag = self.levels ** k
        return (mag / (mag ** 2).sum()).float()


def weight_codes(node: ir.Node, sl: Slicing, from_graph: bool) -> tuple[np.ndarray, np.ndarray]:
    """Integer codes (out, ...) and per-output scales (out,) of a synaptic node.

    ``from_graph``: the node carries a quantization (``precision["weight"]`` and
    ``weight_scale``); its codes are checked, not recomputed. Otherwise the
    weights are quantized symmetrically per output channel to ``sl.bits``.
    """
    w = np.asarray(node.weight, dtype=np.float64)
    out = w.shape[0]
    if from_graph:
        scale = np.broadcast_to(np.asarray(node.weight_scale, dtype=np.float64).reshape(-1), (out,)).copy()
        if np.any(scale <= 0):
            raise TargetError(f"layer '{node.name}': weight_scale must be positive")
        codes = w / scale.reshape(-1, *[1] * (w.ndim - 1))
        if np.max(np.abs(codes - np.round(codes)), initial=0.0) > 1e-3:
            raise TargetError(f"layer '{node.name}': weights are not integer multiples of weight_scale")
        codes = np.round(codes)
        lo, hi = codes.min(initial=0), codes.max(initial=0)
        if lo < sl.qmin or hi > sl.qmax:
            raise TargetError(f"layer '{node.name}': weight codes {lo:g}..{hi:g} do not fit {sl.bits}-bit "
                              f"{sl.signed} weights ({sl.qmin}..{sl.qmax})")
        return codes.astype(np.float32), scale.astype(np.float32)
    peak = np.abs(w.reshape(out, -1)).max(axis=1)
    scale = np.where(peak > 0, peak / sl.qmax, 1.0)
    codes = np.clip(np.round(w / scale.reshape(-1, *[1] * (w.ndim - 1))), sl.qmin, sl.qmax)
    return codes.astype(np.float32), scale.astype(np.float32)


def _digits_of(u: torch.Tensor, sl: Slicing) -> torch.Tensor:
    """(n_slices, *u.shape) digits of non-negative integer-valued ``u``."""
    base = torch.tensor([float(sl.levels ** k) for k in range(sl.n_slices)], dtype=u.dtype)
    base = base.view(-1, *[1] * u.dim())
    return torch.remainder(torch.floor(u.unsqueeze(0) / base), sl.levels)


def slice_codes(q: torch.Tensor, sl: Slicing, ste: bool = False) -> torch.Tensor:
    """Digits of the codes ``q`` (out, ...) as (groups, out', ...), ``out' = out + 1``
    with the offset dummy. With ``ste`` the digits carry a straight-through
    gradient to ``q`` (see :meth:`Slicing.ste_coefs`)."""
    qd = q.detach()
    share = sl.ste_coefs().view(-1, *[1] * q.dim()) if ste else None
    if sl.signed == "differential":
        pos, neg = _digits_of(qd.clamp(min=0), sl), _digits_of((-qd).clamp(min=0), sl)
        if ste:
            delta = (q - qd).unsqueeze(0)
            half = 0.5 * (qd == 0).to(q.dtype)
            pos = pos + share * delta * ((qd > 0).to(q.dtype) + half)
            neg = neg - share * delta * ((qd < 0).to(q.dtype) + half)
        return torch.cat([pos, neg], 0)
    digits = _digits_of(qd + sl.offset, sl)
    if ste:
        digits = digits + share * (q - qd).unsqueeze(0)
    dummy = torch.tensor(sl.offset_digits(), dtype=q.dtype).view(-1, 1, *[1] * (q.dim() - 1))
    dummy = dummy.expand(sl.n_slices, 1, *q.shape[1:])
    return torch.cat([digits, dummy], 1)
