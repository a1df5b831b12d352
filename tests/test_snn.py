import numpy as np
import torch

from deploy.core import ir
from deploy.core.encoding import encode
from deploy.core.net import SpikingNet, build
from deploy.core.neurons import LIF


def test_lif_trace_matches_hand_computation():
    # beta 0.5, threshold 1, subtract reset, input 0.8 every step:
    # v: 0.8 -> 1.2 (spike, 0.2) -> 0.9 -> 1.25 (spike, 0.25) -> 0.925
    lif = LIF(beta=0.5, threshold=1.0, reset="subtract")
    s = lif(torch.full((5, 1, 1), 0.8))
    assert s.flatten().tolist() == [0, 1, 0, 1, 0]


def test_lif_zero_reset_and_synaptic_current():
    # alpha 0.5: i = 1, 1.5, 1.75; beta 1 (IF), zero reset, threshold 2:
    # v = 1 -> 2.5 (spike, 0) -> 1.75
    lif = LIF(beta=1.0, threshold=2.0, reset="zero", alpha=0.5)
    s = lif(torch.ones(3, 1, 1))
    assert s.flatten().tolist() == [0, 1, 0]


def test_threshold_is_strict():
    lif = LIF(beta=1.0, threshold=1.0)
    assert lif(torch.ones(1, 1, 1)).item() == 0.0


def test_surrogate_gradient_flows():
    lif = LIF(beta=0.9, threshold=1.0)
    x = torch.full((4, 2, 3), 0.6, requires_grad=True)
    lif(x).sum().backward()
    assert x.grad is not None and torch.all(x.grad > 0)


def test_encoders():
    x = torch.tensor([[0.0, 0.5, 1.0]])
    assert encode(x, 3, "direct").shape == (3, 1, 3)
    lat = encode(x, 5, "latency")
    assert lat[:, 0, 0].sum() == 0                  # zero never spikes
    assert lat[:, 0, 2].tolist() == [1, 0, 0, 0, 0]  # brightest spikes first
    assert lat[:, 0, 1].tolist() == [0, 0, 1, 0, 0]
    g = torch.Generator().manual_seed(0)
    rate = encode(torch.full((1, 4000), 0.3), 10, "rate", g)
    assert abs(rate.mean().item() - 0.3) < 0.01


def test_network_matches_a_hand_written_forward():
    net = build({"input_shape": [4], "timesteps": 3, "layers": [
        {"type": "linear", "out_features": 5}, {"type": "lif", "beta": 0.8},
        {"type": "linear", "out_features": 2}, {"type": "lif", "beta": 0.8, "reset": "zero"}]}, seed=1)
    x = torch.rand(6, 4)
    w1, b1 = net.layers["linear0"].weight, net.layers["linear0"].bias
    w2, b2 = net.layers["linear2"].weight, net.layers["linear2"].bias
    v1, v2, outs = torch.zeros(6, 5), torch.zeros(6, 2), []
    for _ in range(3):
        v1 = 0.8 * v1 + x @ w1.T + b1
        s1 = (v1 > 1).float()
        v1 = v1 - s1
        v2 = 0.8 * v2 + s1 @ w2.T + b2
        s2 = (v2 > 1).float()
        v2 = v2 * (1 - s2)
        outs.append(s2)
    torch.testing.assert_close(net(x), torch.stack(outs))


def test_to_graph_round_trip_keeps_outputs():
    net = build({"input_shape": [1, 8, 8], "timesteps": 4, "layers": [
        {"type": "conv2d", "out_channels": 4, "kernel_size": 3, "padding": 1},
        {"type": "pool2d", "mode": "sum"}, {"type": "lif", "beta": 0.7},
        {"type": "flatten"}, {"type": "linear", "out_features": 3}, {"type": "li", "beta": 0.9}]})
    x = torch.rand(5, 1, 8, 8)
    again = SpikingNet(net.to_graph())
    torch.testing.assert_close(again(x), net(x))
    assert isinstance(net.to_graph()["li5"], ir.LI)
    assert np.isclose(net.to_graph()["lif2"].beta, 0.7)
