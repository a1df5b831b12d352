"""Real Lava vs the batched Loihi reference on a conv net with event input (binary spike
frames, no encoding on the host): every layer's spikes, every step, must agree."""

from __future__ import annotations

import numpy as np
import torch

from deploy.core import data, ir
from hwmodels.loihi import Loihi1Target, reference
from hwmodels.loihi.lava_backend import run_lava
from hwmodels.loihi.network import encode_input


def event_conv_net(size: int = 8, seed: int = 0) -> ir.Graph:
    """Two 3x3 convolutions (the second strided) and a classifier on 2-channel event frames."""
    rng = np.random.default_rng(seed)
    half = size // 2

    def w(*shape, scale=1.0):
        return (rng.standard_normal(shape) * scale).astype(np.float32)

    return ir.Graph((2, size, size), [
        ir.Conv2d("c1", ["input"], weight=w(4, 2, 3, 3, scale=0.7), bias=w(4, scale=0.05), padding=1),
        ir.LIF("l1", ["c1"], beta=0.9, threshold=1.0),
        ir.Conv2d("c2", ["l1"], weight=w(6, 4, 3, 3, scale=0.6), stride=2, padding=1),
        ir.LIF("l2", ["c2"], beta=0.8, threshold=1.0),
        ir.Flatten("f", ["l2"]),
        ir.Linear("fc", ["f"], weight=w(5, 6 * half * half, scale=0.5)),
        ir.LIF("out", ["fc"], beta=0.9, threshold=1.0),
    ], timesteps=5, encoding="events", name="event_conv")


def test_event_conv_net_agrees_with_lava_spike_for_spike():
    g = event_conv_net()
    x, _ = data.synthetic_events(2, 5, 8, 5, activity=0.3, seed=7)
    mapping = Loihi1Target().map(g)
    net = mapping.network
    assert not net.graded_input and [c.kind for c in net.connections] == ["conv", "conv", "dense"]
    xq = encode_input(net, x)
    assert torch.equal(xq[:5], x.transpose(0, 1).to(torch.int64))   # the events themselves, time-major
    ref = reference.run(net, xq)
    lava = run_lava(net, xq)
    for pop in net.populations:
        assert int(ref[pop.name].sum()) > 0, pop.name                 # every layer fires
        assert torch.equal(ref[pop.name], lava[pop.name]), f"layer {pop.name} differs"
    # the reference batches samples: each sample alone gives the same spikes
    alone = reference.run(net, xq[:, 1:])
    assert all(torch.equal(alone[p.name], ref[p.name][:, 1:]) for p in net.populations)
