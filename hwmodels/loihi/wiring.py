"""Who reaches whom in one connection, counted without listing its synapses.

Placement needs, per connection: the nonzero synapses of every target neuron
(synaptic memory) and of every source neuron (synaptic ops per spike), and,
for a split of the targets into contiguous blocks of ``k`` neurons (one block
per core), the distinct source neurons of every block (input axons, spike
messages, hops). A dense connection answers from its nonzero mask. A
convolution answers from its kernel: fan-in and fan-out are one convolution
and one transposed convolution of ones with the nonzero mask, and a block's
sources are the transposed convolution of the block's own output map, cropped
to the rows it covers. That costs about one pass of the layer per block split
instead of one entry per synapse, which is what lets a VGG-sized network
(hundreds of millions of synapses) be placed in seconds.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

from hwmodels.loihi.network import Connection, LoihiNetwork


class Wiring:
    """Synapse counts and block sources of one connection (torch flat order on both sides)."""

    def __init__(self, net: LoihiNetwork, conn: Connection):
        w = conn.effective_weight()
        self.n_src = int(math.prod(net.shape_of(conn.source)))
        self.n_out = int(math.prod(conn.out_shape)) if conn.kind == "conv" else int(w.shape[0])
        self.conv = conn.kind == "conv"
        if not self.conv:
            self.mask = w != 0                                   # (out, in)
            self.fan_in = self.mask.sum(1).astype(np.int64)
            self.fan_out = self.mask.sum(0).astype(np.int64)
            return
        self.in_shape = tuple(net.shape_of(conn.source))
        self.out_shape = tuple(conn.out_shape)
        self.stride, self.padding, self.dilation = conn.stride, conn.padding, conn.dilation
        c_out, in_g, kh, kw = w.shape
        c_in, per_group = self.in_shape[0], c_out // conn.groups
        full = np.zeros((c_out, c_in, kh, kw), dtype=np.float32)   # groups spread over all input channels
        for g in range(conn.groups):
            full[g * per_group:(g + 1) * per_group, g * in_g:(g + 1) * in_g] = w[g * per_group:(g + 1) * per_group] != 0
        self.kernel = torch.from_numpy(full)
        with torch.no_grad():
            ones_in = torch.ones(1, *self.in_shape)
            self.fan_in = F.conv2d(ones_in, self.kernel, None, self.stride, self.padding,
                                   self.dilation).round().to(torch.int64).reshape(-1).numpy()
            top, rows = self._reach(torch.ones(self.out_shape), 0)
            fan_out = torch.zeros(self.in_shape)
            fan_out[:, top:top + rows.shape[1]] = rows
            self.fan_out = fan_out.round().to(torch.int64).reshape(-1).numpy()

    @property
    def synapses(self) -> int:
        return int(self.fan_in.sum())

    def block_sources(self, k: int) -> tuple[np.ndarray, np.ndarray]:
        """(block, source) of every distinct pair: block ``j`` holds targets ``j*k .. j*k+k-1``."""
        if not self.conv:
            starts = np.arange(0, self.n_out, k)
            blk, src = np.nonzero(np.logical_or.reduceat(self.mask, starts, axis=0))
            return blk.astype(np.int64), src.astype(np.int64)
        blks, srcs = [], []
        _, h, w = self.in_shape
        for j, (top, reach) in self._blocks(k):
            c, r, x = np.nonzero(reach.numpy() > 0)
            blks.append(np.full(len(c), j, dtype=np.int64))
            srcs.append((c * h + top + r) * w + x)
        return np.concatenate(blks), np.concatenate(srcs).astype(np.int64)

    def block_counts(self, k: int) -> np.ndarray:
        """Distinct sources of every block of ``k`` targets."""
        if not self.conv:
            starts = np.arange(0, self.n_out, k)
            return np.logical_or.reduceat(self.mask, starts, axis=0).sum(1)
        return np.array([int(torch.count_nonzero(reach)) for _, (_, reach) in self._blocks(k)], dtype=np.int64)

    # -- convolution -------------------------------------------------------------------------
    def _blocks(self, k: int):
        """Yield (block, (first input row, synapse counts (C_in, rows, W))) for every block of ``k``
        targets; the rows are those the block reads."""
        c_out, ho, wo = self.out_shape
        plane = ho * wo
        with torch.no_grad():
            for j, a in enumerate(range(0, self.n_out, k)):
                b = min(a + k, self.n_out)
                c0, c1 = a // plane, (b - 1) // plane
                r0, r1 = ((a % plane) // wo, ((b - 1) % plane) // wo) if c0 == c1 else (0, ho - 1)
                t = torch.arange(a, b)
                out = torch.zeros(c1 - c0 + 1, r1 - r0 + 1, wo)
                out[t // plane - c0, (t % plane) // wo - r0, t % wo] = 1
                yield j, self._reach(out, r0, c0)

    def _reach(self, out: torch.Tensor, row0: int, ch0: int = 0) -> tuple[int, torch.Tensor]:
        """How many synapses of the output map ``out`` (channels from ``ch0``, rows from ``row0``) land
        on each source neuron: (first input row, counts (C_in, rows, W)), rows inside the input."""
        (sh, sw), (ph, pw), (dh, dw) = self.stride, self.padding, self.dilation
        kernel = self.kernel[ch0:ch0 + out.shape[0]]
        y = F.conv_transpose2d(out[None], kernel, None, (sh, sw), 0, 0, 1, (dh, dw))[0]
        c_in, h, w = self.in_shape
        top, left = row0 * sh - ph, -pw                              # input row/col of y[:, 0, 0]
        ys, ye = max(0, -top), min(y.shape[1], h - top)
        xs, xe = max(0, -left), min(y.shape[2], w - left)
        rows = torch.zeros(c_in, max(ye - ys, 0), w)
        if ye > ys and xe > xs:
            rows[:, :, left + xs:left + xe] = y[:, ys:ye, xs:xe]
        return top + ys, rows
