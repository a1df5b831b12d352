"""Run a mapped network in Lava: real LIF, Dense/DelayDense, Conv and RingBuffer processes.

The only module of the project that imports Lava, and only inside
:func:`run_lava`. The network is built once and compiled by its first
``run``; samples then run one after another (``Loihi2SimCfg(select_tag="fixed_pt")``,
so Lava picks ``PyLifModelBitAcc``, ``PyDenseModelBitAcc``, ``PyConvModelFixed``
and the fixed-point ring buffers). Between samples every state (``u``, ``v``,
connection buffers) is reset and the source data replaced. Biases are
switched on per population at its ``start`` step, so a layer's bias begins
with its first input, as in the float network. Layouts: Lava keeps images as
(W, H, C); dense connections see torch's C-H-W order through a transpose and
flatten of the port, as lava-dl netx does.
"""

from __future__ import annotations

import numpy as np
import torch
from tqdm.auto import tqdm

from hwmodels.loihi.network import INPUT, LoihiNetwork


def lava_shape(shape: tuple[int, ...]) -> tuple[int, ...]:
    """Torch (C, H, W) -> Lava (W, H, C); 1-D shapes unchanged."""
    return tuple(shape[::-1]) if len(shape) == 3 else tuple(shape)


def to_lava(a: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """(steps, *shape) torch layout -> (*lava_shape, steps)."""
    a = a.reshape(a.shape[0], *shape)
    if len(shape) == 3:
        a = a.transpose(0, 3, 2, 1)
    return np.moveaxis(a, 0, -1)


def from_lava(a: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """(*lava_shape, steps) -> (steps, n) in torch flat order."""
    a = np.moveaxis(a, -1, 0)
    if len(shape) == 3:
        a = a.transpose(0, 3, 2, 1)
    return a.reshape(a.shape[0], -1)


def conv_kernel(weight: np.ndarray) -> np.ndarray:
    """Torch cross-correlation kernel (out, in, kh, kw) -> Lava's convolution kernel (out, kw, kh, in)."""
    return np.ascontiguousarray(np.flip(weight, (2, 3)).transpose(0, 3, 2, 1))


def _prepare_import() -> None:
    """Let Lava set its 'fork' start method: importing its runtime calls
    ``multiprocessing.set_start_method('fork')``, which fails once anything
    (e.g. tqdm's lock) has fixed the default context."""
    import multiprocessing as mp
    import sys

    if ("lava.magma.runtime.message_infrastructure.multiprocessing" not in sys.modules
            and mp.get_start_method(allow_none=True) is not None):
        mp.set_start_method(None, force=True)


def _build(net: LoihiNetwork, first: np.ndarray):
    from lava.proc.conv.process import Conv
    from lava.proc.dense.process import DelayDense, Dense
    from lava.proc.io.sink import RingBuffer as Sink
    from lava.proc.io.source import RingBuffer as Source
    from lava.proc.lif.process import LIF
    from lava.utils.weightutils import SignMode

    source = Source(data=first.astype(np.int32))
    lifs, sinks, conns = {}, {}, []
    for pop in net.populations:
        shape = lava_shape(pop.shape)
        lifs[pop.name] = LIF(shape=shape, du=pop.du, dv=pop.dv, vth=pop.vth, bias_mant=np.zeros(shape, np.int32),
                             bias_exp=pop.bias_exp, name=pop.name)
        sinks[pop.name] = Sink(shape=shape, buffer=net.steps)
        lifs[pop.name].s_out.connect(sinks[pop.name].a_in)
    for c in net.connections:
        out_port = source.s_out if c.source == INPUT else lifs[c.source].s_out
        src_shape, dst = net.shape_of(c.source), lifs[c.target]
        bits = 16 if c.graded else 0
        if c.kind == "conv":
            proc = Conv(weight=conv_kernel(c.weight).astype(np.int32), input_shape=lava_shape(src_shape),
                        padding=c.padding[::-1], stride=c.stride[::-1], dilation=c.dilation[::-1],
                        groups=c.groups, num_message_bits=bits, name=c.name)
            out_port.connect(proc.s_in)
            proc.a_out.connect(dst.a_in)
        else:
            kwargs = {"weights": c.weight.astype(np.int32), "weight_exp": c.weight_exp,
                      "num_weight_bits": c.num_weight_bits, "sign_mode": SignMode(c.sign_mode),
                      "num_message_bits": bits, "name": c.name}
            proc = DelayDense(delays=c.delay, **kwargs) if c.delay else Dense(**kwargs)
            (out_port.transpose([2, 1, 0]).flatten() if len(src_shape) == 3 else out_port).connect(proc.s_in)
            tgt = net.population(c.target).shape
            a_out = proc.a_out.reshape(tgt).transpose([2, 1, 0]) if len(tgt) == 3 else proc.a_out
            a_out.connect(dst.a_in)
        conns.append((c, proc))
    return source, lifs, sinks, conns


def run_lava(net: LoihiNetwork, xq: torch.Tensor, progress: bool = False) -> dict[str, torch.Tensor]:
    """Run every sample of ``xq`` (steps, B, *input_shape) in Lava; same output as
    :func:`hwmodels.loihi.reference.run` (spikes per population, (steps, B, n) uint8)."""
    _prepare_import()
    from lava.magma.core.run_conditions import RunSteps
    from lava.magma.core.run_configs import Loihi2SimCfg

    steps, batch = xq.shape[:2]
    if steps != net.steps:
        raise ValueError(f"expected {net.steps} steps of input, got {steps}")
    data = xq.numpy().astype(np.int64)
    source, lifs, sinks, conns = _build(net, to_lava(data[:, 0], net.input_shape))
    cfg = Loihi2SimCfg(select_tag="fixed_pt")
    anchor = next(iter(lifs.values()))
    starts = sorted({p.start for p in net.populations})
    out = {p.name: torch.zeros(steps, batch, p.size, dtype=torch.uint8) for p in net.populations}
    try:
        for i in tqdm(range(batch), desc="lava", disable=not progress, leave=False):
            if i:
                _reset(net, source, lifs, conns, to_lava(data[:, i], net.input_shape))
            done = 0
            for start in starts:
                if start > done:
                    anchor.run(condition=RunSteps(num_steps=start - done), run_cfg=cfg)
                    done = start
                for p in net.populations:
                    if p.start == start:
                        lifs[p.name].bias_mant.set(to_lava(p.bias_mant.reshape(1, -1), p.shape)[..., 0])
            if steps > done:
                anchor.run(condition=RunSteps(num_steps=steps - done), run_cfg=cfg)
            for p in net.populations:
                spikes = from_lava(sinks[p.name].data.get(), p.shape)
                out[p.name][:, i] = torch.from_numpy(spikes != 0)
    finally:
        anchor.stop()
    out[INPUT] = xq.reshape(steps, batch, -1)
    return out


def _reset(net: LoihiNetwork, source, lifs: dict, conns: list, data: np.ndarray) -> None:
    source.data.set(data.astype(np.int32))
    for pop in net.populations:
        shape = lava_shape(pop.shape)
        for var in (lifs[pop.name].u, lifs[pop.name].v, lifs[pop.name].bias_mant):
            var.set(np.zeros(shape))
    for c, proc in conns:
        buf = proc.a_buf if c.kind == "conv" else proc.a_buff
        buf.set(np.zeros(buf.shape))


def run_netx(path: str, xq: torch.Tensor, input_message_bits: int = 0,
             progress: bool = False) -> list[torch.Tensor]:
    """Run a netx file with the network lava-dl builds from it (``netx.hdf5.Network``) in Lava.

    ``xq``: input messages (steps, B, *input_shape), torch layout, fed to
    ``Network.inp`` (graded when ``input_message_bits > 0``) from one ring buffer
    holding all samples. Samples run one after another; between them every
    LIF's ``u``, ``v`` and every synapse's buffer are reset, the biases netx set
    stay; the sinks are read once at the end. Returns the spikes of each netx
    block, in order, as (steps, B, n) uint8 in torch C-H-W flat order (the
    layout :func:`hwmodels.loihi.reference.run` uses). Needs lava-dl.
    """
    _prepare_import()
    from lava.lib.dl.netx import hdf5
    from lava.magma.core.run_conditions import RunSteps
    from lava.magma.core.run_configs import Loihi2SimCfg
    from lava.proc.io.sink import RingBuffer as Sink
    from lava.proc.io.source import RingBuffer as Source

    steps, batch = xq.shape[:2]
    net = hdf5.Network(net_config=str(path), input_message_bits=input_message_bits)
    in_shape = lava_shape(tuple(int(s) for s in net.inp.shape))    # (W, H, C) -> torch (C, H, W)
    data = xq.reshape(steps, batch, *in_shape).numpy().astype(np.int64)
    seq = np.swapaxes(data, 0, 1).reshape(batch * steps, *in_shape)   # sample i at steps i*steps ...
    source = Source(data=to_lava(seq, in_shape).astype(np.int32))
    source.s_out.connect(net.inp)
    shapes = [tuple(int(s) for s in layer.shape) for layer in net.layers]   # Lava (W, H, C) or (n,)
    sinks = []
    for layer, shape in zip(net.layers, shapes, strict=True):
        sinks.append(Sink(shape=shape, buffer=batch * steps))
        layer.out.connect(sinks[-1].a_in)
    cfg = Loihi2SimCfg(select_tag="fixed_pt")
    try:
        for i in tqdm(range(batch), desc="lava-dl netx", disable=not progress, leave=False):
            if i:
                for layer in net.layers:
                    for var in (layer.neuron.u, layer.neuron.v):
                        var.set(np.zeros(var.shape))
                    buf = layer.synapse.a_buf if hasattr(layer.synapse, "a_buf") else layer.synapse.a_buff
                    buf.set(np.zeros(buf.shape))
            net.run(condition=RunSteps(num_steps=steps), run_cfg=cfg)
        out = []
        for sink, shape in zip(sinks, shapes, strict=True):
            spikes = from_lava(sink.data.get(), lava_shape(shape)) != 0          # (batch * steps, n)
            out.append(torch.from_numpy(np.ascontiguousarray(spikes.reshape(batch, steps, -1).swapaxes(0, 1),
                                                             dtype=np.uint8)))
    finally:
        net.stop()
    return out
