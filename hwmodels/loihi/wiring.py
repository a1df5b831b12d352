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
        self._sources: dict[int, tuple[np.ndarray, np.ndarray]] = {}
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
            y = self._transpose(torch.ones(1, *self.out_shape), self.kernel[None])
            c, r, x = np.nonzero(self._inside(y, -np.array(self.padding[:1]), -np.array(self.padding[1:]))[0].numpy())
            fan_out = np.zeros(self.in_shape, np.int64)
            fan_out[c, r - self.padding[0], x - self.padding[1]] = y[0, c, r, x].round().to(torch.int64).numpy()
            self.fan_out = fan_out.reshape(-1)

    @property
    def synapses(self) -> int:
        return int(self.fan_in.sum())

    def block_sources(self, k: int) -> tuple[np.ndarray, np.ndarray]:
        """(block, source) of every distinct pair, int32: block ``j`` holds targets ``j*k .. j*k+k-1``.
        The last split asked for is kept (placement asks again) until :meth:`release`."""
        if k not in self._sources:
            self._sources = {k: tuple(a.astype(np.int32) for a in self._block_sources(k))}
        return self._sources[k]

    def release(self) -> None:
        """Forget the kept block sources (tens of millions of pairs for a VGG-sized layer)."""
        self._sources = {}

    def _block_sources(self, k: int) -> tuple[np.ndarray, np.ndarray]:
        if not self.conv:
            starts = np.arange(0, self.n_out, k)
            blk, src = np.nonzero(np.logical_or.reduceat(self.mask, starts, axis=0))
            return blk.astype(np.int64), src.astype(np.int64)
        _, h, w = self.in_shape
        blks, srcs = [], []
        for js, top, left, y in self._chunks(k):
            i, c, r, x = np.nonzero(self._inside(y, top, left).numpy())
            blks.append(js[i])
            srcs.append((c * h + top[i] + r) * w + left[i] + x)
        return np.concatenate(blks).astype(np.int64), np.concatenate(srcs).astype(np.int64)

    def block_counts(self, k: int) -> np.ndarray:
        """Distinct sources of every block of ``k`` targets."""
        if not self.conv:
            starts = np.arange(0, self.n_out, k)
            return np.logical_or.reduceat(self.mask, starts, axis=0).sum(1)
        counts = np.zeros(-(-self.n_out // k), np.int64)
        for js, top, left, y in self._chunks(k):
            counts[js] = self._inside(y, top, left).sum((1, 2, 3)).numpy()
        return counts

    # -- convolution -------------------------------------------------------------------------
    def _transpose(self, out: torch.Tensor, kernel: torch.Tensor) -> torch.Tensor:
        """Synapses landing on each input position from the output maps ``out`` (n, C, R, X), each with
        its own kernel slice ``kernel`` (n, C, C_in, kh, kw): (n, C_in, rows, cols), local coordinates."""
        n, c = out.shape[:2]
        y = F.conv_transpose2d(out.reshape(1, n * c, *out.shape[2:]), kernel.reshape(n * c, *kernel.shape[2:]),
                               None, self.stride, 0, 0, n, self.dilation)
        return y.reshape(n, -1, *y.shape[2:])

    def _inside(self, y: torch.Tensor, top: np.ndarray, left: np.ndarray) -> torch.Tensor:
        """Nonzero entries of ``y`` (n, C_in, rows, cols) whose input position (row ``top + r``, column
        ``left + x`` of each block) lies inside the input map."""
        _, h, w = self.in_shape
        rows = torch.from_numpy(top[:, None] + np.arange(y.shape[2])[None])
        cols = torch.from_numpy(left[:, None] + np.arange(y.shape[3])[None])
        keep = ((rows >= 0) & (rows < h))[:, None, :, None] & ((cols >= 0) & (cols < w))[:, None, None, :]
        return (y > 0) & keep

    def _chunks(self, k: int):
        """Yield (blocks, first input row, first input column, synapse counts (n, C_in, rows, cols))
        covering every block of ``k`` targets. A block inside one channel is cut to the output rows (and,
        within one row, the columns) it holds; such blocks are batched, one kernel each, as a grouped
        transposed convolution. A block spanning channels is done alone, over whole maps."""
        _, ho, wo = self.out_shape
        (sh, sw), (ph, pw), (dh, dw) = self.stride, self.padding, self.dilation
        plane, kh, kw = ho * wo, self.kernel.shape[2], self.kernel.shape[3]
        a = np.arange(0, self.n_out, k)
        b = np.minimum(a + k, self.n_out)
        c0, c1 = a // plane, (b - 1) // plane
        r0, r1 = (a % plane) // wo, ((b - 1) % plane) // wo
        one = np.zeros(1, np.int64)
        with torch.no_grad():
            for j in np.flatnonzero(c0 != c1):
                t = torch.arange(a[j], b[j])
                out = torch.zeros(1, c1[j] - c0[j] + 1, ho, wo)
                out[0, t // plane - c0[j], (t % plane) // wo, t % wo] = 1
                yield np.array([j]), one - ph, one - pw, self._transpose(out, self.kernel[None, c0[j]:c1[j] + 1])
            single = c0 == c1
            span = r1 - r0 + 1
            for rows in np.unique(span[single]):
                js = np.flatnonzero(single & (span == rows))
                x0 = a[js] % wo if rows == 1 else np.zeros(len(js), np.int64)
                cols = int(((b[js] - 1) % wo - x0).max()) + 1 if rows == 1 else wo
                size = self.in_shape[0] * (rows * sh + dh * kh) * (cols * sw + dw * kw)
                for part in np.array_split(js, max(1, -(-len(js) * size // 4_000_000))):
                    p = np.searchsorted(js, part)
                    lens = b[part] - a[part]
                    first = np.repeat(np.cumsum(lens) - lens, lens)
                    t = np.repeat(a[part], lens) + np.arange(lens.sum()) - first
                    i = np.repeat(np.arange(len(part)), lens)
                    out = torch.zeros(len(part), 1, rows, cols)
                    out[i, 0, (t % plane) // wo - r0[part][i], t % wo - x0[p][i]] = 1
                    y = self._transpose(out, self.kernel[c0[part]][:, None])
                    yield part, r0[part] * sh - ph, x0[p] * sw - pw, y
