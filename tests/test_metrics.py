import numpy as np
import torch

from deploy.core import ir
from deploy.core.metrics import activity_from_record, assumed_activity, effective_synops
from deploy.core.net import SpikingNet


def test_effective_conv_synops_count_border_fanout():
    # one 3x3 input with a single spike in the corner, 3x3 kernel, padding 1, 2 out channels:
    # the corner pixel reaches 4 output positions -> 4 * 2 operations
    node = ir.Conv2d("c", ["input"], weight=np.ones((2, 1, 3, 3), np.float32), padding=1)
    x = torch.zeros(1, 1, 1, 3, 3)
    x[0, 0, 0, 0, 0] = 1
    assert effective_synops(node, x) == 8
    x[0, 0, 0, 1, 1] = 1   # centre pixel reaches all 9 positions
    assert effective_synops(node, x) == 8 + 18


def test_activity_counts_spikes_and_synops():
    g = ir.Graph(input_shape=(3,), timesteps=2, encoding="direct", nodes=[
        ir.Linear("fc", ["input"], weight=np.array([[2.0, 0, 0], [0, 0, 0.5]], np.float32)),
        ir.LIF("n", ["fc"], beta=1.0, threshold=1.0)])
    net = SpikingNet(g)
    x = torch.tensor([[1.0, 0.0, 1.0]])
    out, values = net.run(x, record=True)
    act = activity_from_record(g, values, out)
    fc, n = act.layers["fc"], act.layers["n"]
    assert fc.synops_dense == 6 * 2            # 2x3 weights, 2 steps
    assert fc.synops_effective == 2 * 2 * 2    # 2 non-zero inputs x 2 outputs x 2 steps
    assert fc.binary_input and fc.op_type == "AC"
    # neuron 0 gets 2 per step -> spikes both steps; neuron 1 gets 0.5, 1.0 -> never above 1
    assert n.spikes == 2 and np.isclose(n.spike_rate, 0.5)
    assert act.sparsity() == 0.5


def test_assumed_activity_worst_case_equals_dense():
    g = ir.Graph(input_shape=(4,), timesteps=3, encoding="rate", nodes=[
        ir.Linear("fc", ["input"], weight=np.ones((2, 4), np.float32)), ir.LIF("n", ["fc"])])
    act = assumed_activity(g, 1.0)
    assert act.layers["fc"].synops_effective == act.layers["fc"].synops_dense == 24
    assert act.layers["n"].spikes == 6
